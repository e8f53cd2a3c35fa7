"""While a stage runs, stamp the job so the reaper can tell a live run from a lost one
(`shared.liveness`): a job without a beat for JOB_LIVENESS_TIMEOUT_S is run again from this
stage, one without a beat for STUCK_JOB_TIMEOUT_S is failed."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import redis

from shared import liveness, redis_keys
from shared.schemas import Stage
from workers.periodic import periodically
from workers.runner import StageRun

logger = logging.getLogger(__name__)


def beat(client: redis.Redis, job_id: str, stage: Stage, token: str, attempt: int = 0) -> bool:
    """Stamp the job's heartbeat as running `stage` (this run: `token`, under `attempt`);
    False when the job is gone or terminal, this run already ended or is fenced out."""
    keys = [redis_keys.job(job_id), redis_keys.ACTIVE_JOBS, redis_keys.RUNNING_STAGES]
    args: list[str | float] = [
        time.time(),
        job_id,
        stage.value,
        token,
        liveness.TERMINAL_ARG,
        str(attempt),
    ]
    return bool(client.eval(liveness.BEAT_LUA, len(keys), *keys, *args))


def stage_ended(client: redis.Redis, job_id: str, token: str) -> None:
    """The run ended normally: its job no longer counts as running a stage."""
    keys = [redis_keys.job(job_id), redis_keys.RUNNING_STAGES]
    client.eval(liveness.ENDED_LUA, len(keys), *keys, job_id, token)


def job_heartbeat(run: StageRun, call_next: Callable[[], None]) -> None:
    """Beat now and every JOB_HEARTBEAT_S until the stage ends. A run that dies (killed, or
    terminated by Celery when the broker connection dropped) stops beating and stays marked
    as running: that is what the reaper looks for."""
    client = run.store.redis
    token = uuid.uuid4().hex
    name = f"heartbeat-{run.job_id[:8]}"
    with periodically(
        name,
        run.settings.job_heartbeat_s,
        lambda: beat(client, run.job_id, run.stage, token, run.attempt),
    ):
        call_next()
    try:
        stage_ended(client, run.job_id, token)
    except redis.RedisError as exc:
        # The stage's work is done and the next stage must still be sent; at worst the reaper
        # later sends this stage again, and the next one's message is refused as stale.
        logger.warning("stage end not recorded", extra={"error": str(exc)})
