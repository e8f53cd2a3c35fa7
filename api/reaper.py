"""Keep no job `running` without a live worker: run a lost stage again, or fail the job.

A running stage stamps its job every JOB_HEARTBEAT_S (`shared.liveness`). Every
REAPER_INTERVAL_S one API replica (a Redis lock) sweeps:

- a job whose stage has not beaten for JOB_LIVENESS_TIMEOUT_S lost its run (worker killed,
  or its task terminated by Celery when the broker connection dropped, its message left
  unacked until the visibility timeout, an hour): it is taken over once and its stage is
  sent again under a new dispatch, from the stage data already committed; the old message,
  when the broker hands it back, is refused as stale. A stage that keeps losing its worker
  fails the job after MAX_ATTEMPTS starts (`too_many_attempts`), and a stage whose input is
  gone fails it with `stage_data_lost`.
- a job without any beat for STUCK_JOB_TIMEOUT_S (its message lost, no worker left to take
  the stage sent again) ends `failed` with code `worker_lost`, visibly, through the same
  terminal transition as any failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

import redis.asyncio as aredis
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from shared import liveness, redis_keys
from shared.job_store import AsyncJobStore
from shared.schemas import JobError, JobStatus, Stage

logger = logging.getLogger(__name__)

# Sends a job's chain again from a stage: (job id, stage, dispatch, backfill id); blocking.
Rerun = Callable[[str, Stage, int, str], None]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def sweep(client: aredis.Redis, store: AsyncJobStore, stuck_after_s: float) -> list[str]:
    """Fail every active job with a stale heartbeat; return their ids."""
    cutoff = time.time() - stuck_after_s
    stale = [_text(j) for j in await client.zrangebyscore(redis_keys.ACTIVE_JOBS, "-inf", cutoff)]
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


async def rerun_lost(
    client: aredis.Redis, rerun: Rerun, *, lost_after_s: float, send_timeout_s: float
) -> list[str]:
    """Send the stage of every job whose run stopped beating again, once; return their ids."""
    cutoff = time.time() - lost_after_s
    lost = cast(
        list[tuple[bytes, float]],
        await client.zrangebyscore(redis_keys.RUNNING_STAGES, "-inf", cutoff, withscores=True),
    )
    rerun_ids = []
    for member, score in lost:
        job_id = _text(member)
        keys = [redis_keys.job(job_id), redis_keys.RUNNING_STAGES]
        claimed = await client.eval(
            liveness.CLAIM_LUA, len(keys), *keys, job_id, cutoff, liveness.TERMINAL_ARG
        )
        if not claimed:
            continue  # it beat meanwhile, ended, or is gone
        stage, dispatch, backfill_id = Stage(_text(claimed[0])), int(claimed[1]), _text(claimed[2])
        try:
            await asyncio.wait_for(
                asyncio.to_thread(rerun, job_id, stage, dispatch, backfill_id), send_timeout_s
            )
        except (RedisError, KombuError, OSError, TimeoutError) as exc:
            # Watched again from its last beat: the next sweep tries once more.
            await client.zadd(redis_keys.RUNNING_STAGES, {job_id: score})
            logger.warning(
                "lost stage not sent again",
                extra={"job_id": job_id, "stage": stage.value, "error": str(exc)},
            )
            continue
        rerun_ids.append(job_id)
        logger.warning(
            "lost stage sent again",
            extra={
                "job_id": job_id,
                "stage": stage.value,
                "dispatch": dispatch,
                "silent_s": round(time.time() - score, 1),
            },
        )
    return rerun_ids


async def run_reaper(
    client: aredis.Redis,
    store: AsyncJobStore,
    *,
    stuck_after_s: float,
    interval_s: float,
    rerun: Rerun | None = None,
    lost_after_s: float = 30.0,
    send_timeout_s: float = 3.0,
) -> None:
    """Sweep forever; a Redis lock keeps concurrent API replicas from sweeping twice.
    Without `rerun` (an app that does not publish to Celery) lost stages are not sent again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await client.set(redis_keys.REAPER_LOCK, "1", nx=True, px=int(interval_s * 900)):
                await sweep(client, store, stuck_after_s)
                if rerun is not None:
                    await rerun_lost(
                        client, rerun, lost_after_s=lost_after_s, send_timeout_s=send_timeout_s
                    )
        except (RedisError, OSError) as exc:
            logger.warning("reaper sweep failed", extra={"error": str(exc)})
