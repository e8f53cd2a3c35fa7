"""Service configuration, read once from environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SCAN_LIMIT = 20_000
# Error-or-warning lines: all the original single-process service ever read (the held-out
# eval's seed filter). The read plan now reads by severity tier: workers/sources/severity.py.
SEVERE_LINE_FILTER = '|~ "(?i)(error|warn|failed|exception|panic|fatal)"'


class Settings(BaseSettings):
    """Every knob of the API and the workers; names are the environment variables."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Upstreams (defaults are the in-cluster names of the seed deployment). The Redis URL
    # carries the Redis password: a secret, shown by no repr or log line.
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # Connections one API process may open to Redis; requests wait for a free one.
    redis_max_connections: int = Field(default=64, ge=4)
    loki_url: str = "http://loki.monitoring.svc.cluster.local:3100"
    # Any OpenAI-compatible server (llama.cpp, vLLM, Ollama, ...); one outside the cluster
    # is refused unless LLM_ALLOW_REMOTE (workers.llm.endpoint has the rule).
    llama_url: str = "http://llama-cpp.llm.svc.cluster.local:8080"
    # The `model` of every request (llama.cpp takes any name; vLLM and Ollama want theirs).
    model_name: str = "SmolLM2-135M-Instruct"
    # Sent as `Authorization: Bearer <key>` when set; shown by no repr or log line.
    llm_api_key: SecretStr = SecretStr("")
    # Allow a server outside the cluster: the prompt (redacted templates and examples) goes there.
    llm_allow_remote: bool = False
    otel_exporter_otlp_endpoint: str = "http://tempo.monitoring.svc.cluster.local:4317"
    otel_exporter_otlp_protocol: Literal["grpc", "http/protobuf"] = "grpc"
    otel_sdk_disabled: bool = False
    deployment_environment: str = "development"
    log_level: str = "INFO"

    # Log source: Loki over HTTP, or kubelet-layout files on this node.
    log_source: Literal["loki", "files"] = "loki"
    log_files_root: str = "/var/log/pods"
    # This node's name (downward API `spec.nodeName`): with LOG_SOURCE=files, a request's
    # `node` filter matches only this node's files.
    node_name: str = ""

    # Request limits.
    max_time_range_hours: float = Field(default=24.0, gt=0)
    max_limit: int = 200
    max_scan_limit: int = Field(default=1_000_000, ge=1, le=1_000_000)
    loki_page_size: int = Field(default=5000, ge=1, le=5000)
    # X-Scope-OrgID for keys whose entry names no tenant ("" sends none: single-tenant Loki).
    loki_tenant: str = Field(default="", pattern=r"^[A-Za-z0-9_.|-]{0,150}$")
    # Lines read from the window before the requested one (same length), to tell new
    # templates from steady ones; 0 turns that read off.
    previous_window_scan_limit: int = Field(default=20_000, ge=0)
    loki_timeout_s: float = 30.0
    # Ranges of a window fetched from Loki at once (Loki's frontend splits the same way).
    loki_parallelism: int = Field(default=4, ge=1, le=32)
    loki_max_retries: int = 4

    # LLM.
    llm_max_tokens: int = Field(default=512, ge=1, le=4096)
    llm_temperature: float = Field(default=0.2, ge=0, le=2)
    # An answer whose share of claims found in the evidence is below this is `unverified`.
    llm_grounding_threshold: float = Field(default=0.6, ge=0, le=1)
    llm_connect_timeout_s: float = 5.0
    # The first token is due within base + prompt tokens / rate, at most the timeout: a
    # conservative prompt-processing rate, so a slow CPU is not cut off, a dead server is.
    llm_first_token_timeout_s: float = Field(default=120.0, gt=0)
    llm_first_token_base_s: float = Field(default=15.0, ge=0)
    llm_prompt_tokens_per_s: float = Field(default=25.0, gt=0)
    # A `progress` event at least this often while the model is still on the prompt.
    llm_progress_interval_s: float = Field(default=5.0, gt=0)
    llm_idle_timeout_s: float = 30.0
    llm_loading_wait_s: float = 120.0
    llm_max_retries: int = 2
    llm_slot_wait_s: float = 600.0
    # Reuse the server's KV cache for a shared prompt prefix (llama.cpp `cache_prompt`).
    llm_cache_prompt: bool = True
    # The model's context in tokens; 0: ask the server (llama.cpp `/props`, vLLM `/v1/models`,
    # Ollama `/api/show`), and one that does not say gets a conservative 4096
    # (workers.llm.client.FALLBACK_CONTEXT_TOKENS).
    llm_context_tokens: int = Field(default=0, ge=0)
    # Requests all workers together send the server at once; 0: what it says (llama.cpp
    # `total_slots`), 1 for a server that does not say.
    llm_concurrency: int = Field(default=0, ge=0)
    # The answer's form: `json` holds the model to a bounded JSON schema (summary, cause among
    # the findings' candidates, explanation, next steps), rendered as Markdown; `text` is free
    # Markdown; `auto` is JSON for the bundled model and any context of at most
    # LLM_STRUCTURED_MAX_CONTEXT tokens.
    llm_answer_format: Literal["auto", "json", "text"] = "auto"
    llm_structured_max_context: int = Field(default=8192, ge=0)
    # Repetition controls of llama-server's sampler (DRY off when the multiplier is 0).
    llm_dry_multiplier: float = Field(default=0.8, ge=0)
    llm_dry_base: float = Field(default=1.75, ge=1)
    llm_dry_allowed_length: int = Field(default=2, ge=1)
    llm_repeat_penalty: float = Field(default=1.1, ge=1)

    def llm_sampling(self) -> dict[str, float]:
        """The sampler fields sent with every chat request."""
        return {
            "dry_multiplier": self.llm_dry_multiplier,
            "dry_base": self.llm_dry_base,
            "dry_allowed_length": self.llm_dry_allowed_length,
            "repeat_penalty": self.llm_repeat_penalty,
        }

    # Jobs, events and queues.
    job_ttl_s: int = 7 * 24 * 3600
    findings_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)
    # POSTed once per new finding (JSON, HMAC-SHA256 of the body with the secret in the
    # X-Log-Analyzer-Signature header); "" sends nothing.
    notify_webhook_url: str = ""
    notify_webhook_secret: SecretStr = SecretStr("")
    max_backfill_items: int = Field(default=1000, ge=1, le=100_000)
    backfill_reserved_llm_slots: int = Field(default=1, ge=0)
    event_backlog_max: int = 50_000
    sse_ping_s: float = 15.0
    sse_client_buffer: int = 1000
    sse_send_timeout_s: float = 30.0
    sse_slow_after_s: float = Field(default=10.0, gt=0)
    sse_coalesce_tick_s: float = Field(default=0.05, ge=0)
    enqueue_timeout_s: float = 3.0
    stage_soft_time_limit_s: int = 600
    stage_time_limit_s: int = 660
    visibility_timeout_s: int = 3600
    max_attempts: int = Field(default=3, ge=1)
    worker_heartbeat_s: float = 5.0
    # On SIGTERM (with REMAP_SIGTERM=SIGQUIT) a worker lets its task run this long, then hands
    # it back to the queue: keep it below the pod's terminationGracePeriodSeconds.
    worker_soft_shutdown_timeout_s: float = Field(default=10.0, ge=0)

    # Access: sha256 hex digests of the accepted keys, from the environment and/or a file
    # (a mounted Secret, re-read when it changes: keys rotate without a restart).
    api_keys: list[str] = Field(default_factory=list)
    api_keys_file: str = ""
    # The API's address as clients reach it (e.g. https://logs.example.org/analyzer): the base
    # of status_url, events_url and Location. Empty: paths from the root, never the Host header.
    public_url: str = Field(default="", pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")
    # Serve without keys, every request as one local admin, when no key is configured: for
    # local development only; the API refuses to start with it unless it binds loopback.
    api_no_auth: bool = False
    max_body_bytes: int = Field(default=65_536, ge=1024)
    max_active_jobs_per_key: int = Field(default=20, ge=1)
    max_streams_per_key: int = Field(default=50, ge=1)
    rate_limit_per_minute: int = Field(default=120, ge=1)

    # Crash safety: a running job whose heartbeat is older than this is failed by the reaper.
    stuck_job_timeout_s: float = Field(default=3700.0, gt=0)
    reaper_interval_s: float = Field(default=5.0, gt=0)
    job_heartbeat_s: float = Field(default=5.0, gt=0)
    # A stage whose run has not beaten for this long lost its worker (killed, or its task
    # terminated on a broker connection loss): the reaper sends it again, long before the
    # broker's visibility timeout would. Several heartbeats, so a slow beat is no loss.
    job_liveness_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("api_keys")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise ValueError("API_KEYS holds sha256 hex digests of the keys, not the keys")
        return [digest.lower() for digest in value]

    @field_validator("visibility_timeout_s")
    @classmethod
    def _visibility_outlasts_tasks(cls, value: int) -> int:
        if value < 10:
            raise ValueError("visibility_timeout_s must be at least 10 seconds")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
