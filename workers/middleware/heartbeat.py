"""While a stage runs, stamp the job so the reaper can tell a live job from a lost one."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from shared import redis_keys
from workers.periodic import periodically
from workers.runner import StageRun


def beat(client: redis.Redis, job_id: str) -> None:
    """Stamp the job's heartbeat and keep it in the set of active jobs the reaper sweeps."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(redis_keys.job(job_id), "heartbeat", now)
        pipe.zadd(redis_keys.ACTIVE_JOBS, {job_id: now})
        pipe.execute()


def job_heartbeat(run: StageRun, call_next: Callable[[], None]) -> None:
    """Beat now and every JOB_HEARTBEAT_S until the stage ends."""
    client = run.store.redis
    name = f"heartbeat-{run.job_id[:8]}"
    with periodically(name, run.settings.job_heartbeat_s, lambda: beat(client, run.job_id)):
        call_next()
