"""While a stage runs, stamp the job so the reaper can tell a live job from a lost one."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import redis

from shared import redis_keys

logger = logging.getLogger(__name__)


def beat(client: redis.Redis, job_id: str) -> None:
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(redis_keys.job(job_id), "heartbeat", now)
        pipe.zadd(redis_keys.ACTIVE_JOBS, {job_id: now})
        pipe.execute()


@contextlib.contextmanager
def job_heartbeat(client: redis.Redis, job_id: str, interval_s: float) -> Iterator[None]:
    """Beat now and every `interval_s` until the block ends (a daemon thread; dies with us)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                beat(client, job_id)
            except redis.RedisError as exc:
                logger.warning("job heartbeat failed", extra={"error": str(exc)})

    beat(client, job_id)
    thread = threading.Thread(target=loop, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
