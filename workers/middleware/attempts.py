"""A stage that starts again fences out its earlier run and tells clients to discard it.

Every write of a stage (events, counts, the result) is fenced by the job's `attempt`. When
a stage starts for the second time (the broker redelivered it: its worker died, or the
visibility timeout passed while it still ran), the attempt goes up, so anything the earlier
run still writes is refused, and a `retry` event tells clients to drop what that run
streamed (for `call_llm`, the partial answer).
"""

from __future__ import annotations

from collections.abc import Callable

from shared import redis_keys
from shared.schemas import EventType, RetryData
from workers.runner import StageRun, StageSkipped


def attempt_fence(run: StageRun, call_next: Callable[[], None]) -> None:
    if run.starts > 1:
        run.attempt = int(run.store.redis.hincrby(redis_keys.job(run.job_id), "attempt", 1))
        retry = RetryData(
            stage=run.stage,
            reason=f"stage {run.stage.value} started again; discard what it sent before",
        )
        if not run.emit(EventType.RETRY, retry):
            raise StageSkipped("job ended")
    call_next()
