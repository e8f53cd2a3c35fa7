"""Per-process clients for the stage tasks, created lazily after fork."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from shared.job_store import JobStore
from shared.retry import RetryPolicy
from shared.settings import Settings, get_settings
from shared.tenancy import loki_tenant
from workers.llm.client import LlamaClient
from workers.sources import LogSource
from workers.sources.files import FileSource
from workers.sources.loki import LokiSource

_redis: redis.Redis | None = None
_http: httpx.Client | None = None
_llama: LlamaClient | None = None


def reset() -> None:
    """Forget clients inherited from a parent process (called in each new worker child)."""
    global _redis, _http, _llama
    _redis = None
    _http = None
    _llama = None


def settings() -> Settings:
    return get_settings()


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings().redis_url.get_secret_value(),
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


def llama_client() -> LlamaClient:
    """One client per process, so token counts and /props are cached across jobs."""
    global _llama
    if _llama is None:
        cfg = settings()
        _llama = LlamaClient(
            http_client(),
            cfg.llama_url,
            model=cfg.model_name,
            connect_timeout_s=cfg.llm_connect_timeout_s,
            first_token_timeout_s=cfg.llm_first_token_timeout_s,
            first_token_base_s=cfg.llm_first_token_base_s,
            prompt_tokens_per_s=cfg.llm_prompt_tokens_per_s,
            progress_interval_s=cfg.llm_progress_interval_s,
            idle_timeout_s=cfg.llm_idle_timeout_s,
            loading_wait_s=cfg.llm_loading_wait_s,
            max_retries=cfg.llm_max_retries,
            cache_prompt=cfg.llm_cache_prompt,
            context_tokens=cfg.llm_context_tokens,
            concurrency=cfg.llm_concurrency,
            api_key=cfg.llm_api_key.get_secret_value(),
            allow_remote=cfg.llm_allow_remote,
        )
    return _llama


def log_source(tenant: str = "") -> LogSource:
    """Loki (queried as `tenant` when one is given), or the pod log files of this node
    (LOG_SOURCE; the files of a node have no tenants)."""
    cfg = settings()
    if cfg.log_source == "files":
        return FileSource(Path(cfg.log_files_root), node_name=cfg.node_name or None)
    return LokiSource(
        http_client(),
        cfg.loki_url,
        page_size=cfg.loki_page_size,
        retry=RetryPolicy(attempts=cfg.loki_max_retries, base_s=0.5, cap_s=30.0),
        timeout_s=cfg.loki_timeout_s,
        parallelism=cfg.loki_parallelism,
        tenant=loki_tenant(tenant, cfg),
    )
