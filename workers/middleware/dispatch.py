"""Refuse a stage message from before the job was taken over: only the latest dispatch runs.

When a stage's run stops beating, the reaper sends the stage again under a new `dispatch`
(`shared.liveness`). The old message is still in the broker (unacked, its worker gone) and
comes back after the visibility timeout; by then it is stale, and it ends here, before it
counts as a start of the stage (admission) or touches the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared import liveness, redis_keys
from workers.runner import StageRun, StageSkipped

logger = logging.getLogger(__name__)


def dispatch_fence(run: StageRun, call_next: Callable[[], None]) -> None:
    current = run.store.redis.hget(redis_keys.job(run.job_id), liveness.DISPATCH)
    if run.dispatch != int(current or 0):
        logger.info(
            "stale stage message refused",
            extra={"dispatch": run.dispatch, "current_dispatch": int(current or 0)},
        )
        raise StageSkipped("stale dispatch: the job was taken over")
    call_next()
