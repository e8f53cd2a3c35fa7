"""Fail jobs whose worker stopped reporting, so no job stays `running` forever.

A stage stamps its job every JOB_HEARTBEAT_S (workers/heartbeat.py). A job whose last stamp
is older than STUCK_JOB_TIMEOUT_S had its worker killed and its message not redelivered in
time (or lost): it ends `failed` with code `worker_lost`, visibly, through the same
terminal transition as any failure. The timeout should exceed the broker's visibility
timeout so a redelivery gets its chance first. One API replica at a time runs the sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aredis
from redis.exceptions import RedisError

from shared import redis_keys
from shared.job_store import AsyncJobStore
from shared.schemas import JobError, JobStatus

logger = logging.getLogger(__name__)


async def sweep(client: aredis.Redis, store: AsyncJobStore, stuck_after_s: float) -> list[str]:
    """Fail every active job with a stale heartbeat; return their ids."""
    cutoff = time.time() - stuck_after_s
    stale = [
        j.decode() if isinstance(j, bytes) else str(j)
        for j in await client.zrangebyscore(redis_keys.ACTIVE_JOBS, "-inf", cutoff)
    ]
    reaped = []
    for job_id in stale:
        error = JobError(
            code="worker_lost",
            message=f"no worker reported on this job for {stuck_after_s:g} s "
            "(worker killed or message lost); it was given up",
        )
        if await store.finish(job_id, JobStatus.FAILED, error=error):
            reaped.append(job_id)
            logger.warning("stuck job failed", extra={"job_id": job_id})
        await client.zrem(redis_keys.ACTIVE_JOBS, job_id)
    return reaped


async def run_reaper(
    client: aredis.Redis, store: AsyncJobStore, *, stuck_after_s: float, interval_s: float
) -> None:
    """Sweep forever; a Redis lock keeps concurrent API replicas from sweeping twice."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await client.set(redis_keys.REAPER_LOCK, "1", nx=True, px=int(interval_s * 900)):
                await sweep(client, store, stuck_after_s)
        except (RedisError, OSError) as exc:
            logger.warning("reaper sweep failed", extra={"error": str(exc)})
