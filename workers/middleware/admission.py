"""Count every start of a stage; fail the job when a stage keeps killing its worker.

A task whose worker dies is handed back by the broker (late acks, reject on worker lost)
and starts again. A stage that kills its worker every time (a poison job) would loop
forever: after MAX_ATTEMPTS starts the job fails with `too_many_attempts` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from shared import redis_keys
from shared.schemas import JobError, JobStatus
from workers.runner import StageRun, StageSkipped

logger = logging.getLogger(__name__)


def admit(run: StageRun, call_next: Callable[[], None]) -> None:
    key = redis_keys.job(run.job_id)
    run.starts = int(run.store.redis.hincrby(key, f"runs:{run.stage.value}", 1))
    limit = run.settings.max_attempts
    if run.starts > limit:
        error = JobError(
            code="too_many_attempts",
            stage=run.stage,
            message=f"stage {run.stage.value} was started {run.starts - 1} times without "
            "finishing (its worker died each time); giving up",
        )
        logger.error("poison job stopped", extra={"runs": run.starts})
        run.store.finish(run.job_id, JobStatus.FAILED, error=error)
        raise StageSkipped("too many attempts")
    run.store.redis.hsetnx(key, "started_at", datetime.now(UTC).isoformat())
    call_next()
