"""Per-key limits: submissions per minute, active jobs, open streams; 429 with Retry-After."""

from __future__ import annotations

import time
from collections import Counter

import redis.asyncio as aredis

from api.access import Limits
from shared import redis_keys
from shared.errors import RateLimitedError
from shared.settings import Settings

TERMINAL = {b"succeeded", b"failed", b"cancelled"}
HISTORY_KEPT = 100


async def check_submission(client: aredis.Redis, limits: Limits, principal: str) -> None:
    """Raise RateLimitedError when `principal` may not submit another job now."""
    now = time.time()
    window = redis_keys.rate_window(principal, int(now // 60))
    async with client.pipeline(transaction=True) as pipe:
        pipe.incr(window)
        pipe.expire(window, 120)
        count, _ = await pipe.execute()
    if int(count) > limits.jobs_per_minute:
        raise RateLimitedError(
            f"more than {limits.jobs_per_minute} jobs a minute for this key",
            retry_after=max(1, 60 - int(now % 60)),
        )
    active_key = redis_keys.principal_jobs(principal)
    members = await client.zrange(active_key, 0, -1)
    job_ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    if len(job_ids) < limits.max_active_jobs:
        return
    async with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(redis_keys.job(job_id), "status")
        statuses = await pipe.execute()
    finished = [j for j, s in zip(job_ids, statuses, strict=True) if s is None or s in TERMINAL]
    if finished:
        await client.zrem(active_key, *finished)
    if len(job_ids) - len(finished) >= limits.max_active_jobs:
        raise RateLimitedError(
            f"this key already has {limits.max_active_jobs} jobs queued or running",
            retry_after=5,
        )


async def record_submission(
    client: aredis.Redis, settings: Settings, principal: str, tenant: str, job_id: str
) -> None:
    """Count the job as active for `principal` and add it to the key's history in `tenant`."""
    key = redis_keys.principal_jobs(principal)
    history = redis_keys.principal_history(tenant, principal)
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {job_id: now})
        pipe.expire(key, settings.job_ttl_s)
        pipe.zadd(history, {job_id: now})
        pipe.zremrangebyrank(history, 0, -HISTORY_KEPT - 1)
        pipe.expire(history, settings.job_ttl_s)
        await pipe.execute()


class StreamLimiter:
    """Open streams per key in this API process."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()

    def acquire(self, principal: str, limit: int) -> None:
        """Count one more stream, or raise RateLimitedError before the response starts."""
        if self.open[principal] >= limit:
            raise RateLimitedError(f"this key already has {limit} streams open", retry_after=5)
        self.open[principal] += 1

    def release(self, principal: str) -> None:
        self.open[principal] -= 1
        if self.open[principal] <= 0:
            del self.open[principal]
