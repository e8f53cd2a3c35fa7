"""Per-process clients for the stage tasks, created lazily after fork."""

from __future__ import annotations

import httpx
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from shared.job_store import JobStore
from shared.settings import Settings, get_settings

_redis: redis.Redis | None = None
_http: httpx.Client | None = None


def reset() -> None:
    """Forget clients inherited from a parent process (called in each new worker child)."""
    global _redis, _http
    _redis = None
    _http = None


def settings() -> Settings:
    return get_settings()


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings().redis_url,
            socket_timeout=10,
            socket_connect_timeout=3,
            health_check_interval=15,
            # Ride out a Redis restart (a few seconds) instead of failing the job.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=10),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    return _redis


def http_client() -> httpx.Client:
    global _http
    if _http is None:
        _http = httpx.Client(follow_redirects=False)
    return _http


def job_store() -> JobStore:
    cfg = settings()
    return JobStore(redis_client(), ttl_s=cfg.job_ttl_s, backlog_max=cfg.event_backlog_max)
