"""The service as integration tests (and the pipeline benchmark) run it: real API and Celery
worker processes on a private redis-server, with stub Loki and llama-server.

Every stack gets its own redis-server (the locked binary, on a free port): no test shares a
database with another test, a benchmark or someone else's worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from cli.harness import Harness, Process, RedisServer, free_port, wait_until
from shared.schemas import TERMINAL_STATUSES
from tests.stubs.llama_stub import LlamaStub
from tests.stubs.loki_stub import LokiStub
from tests.stubs.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.incident import job_request
from tests.support.sse import Follower

TERMINAL = {status.value for status in TERMINAL_STATUSES}


def service_env(**overrides: str) -> dict[str, str]:
    """The environment of the API and worker processes under test: short timeouts, no Tempo,
    no-auth mode (the API binds loopback)."""
    env = {
        "OTEL_SDK_DISABLED": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "LOG_LEVEL": "INFO",
        "LLM_LOADING_WAIT_S": "3",
        "LLM_FIRST_TOKEN_TIMEOUT_S": "5",
        "LLM_IDLE_TIMEOUT_S": "3",
        "LLM_MAX_RETRIES": "2",
        # The plumbing tests stream the stub's free-text reply; structured (JSON) answers,
        # the service's default for small contexts, have tests of their own.
        "LLM_ANSWER_FORMAT": "text",
        "LOKI_MAX_RETRIES": "2",
        "LOKI_TIMEOUT_S": "5",
        "WORKER_HEARTBEAT_S": "1",
        "SSE_PING_S": "1",
        # Keyless unless a test configures keys (they take precedence); loopback only.
        "API_NO_AUTH": "true",
    }
    env.update(overrides)
    return env


@dataclass
class ServiceStack:
    """A private Redis, the stubs, and API and worker processes started on demand."""

    harness: Harness
    redis_server: RedisServer
    env: dict[str, str]
    llama: LlamaStub
    loki: LokiStub
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    otlp: OtlpReceiver | None = None
    api_url: str = ""
    api: Process | None = None
    workers: list[Process] = field(default_factory=list)
    _redis: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_server.url())
        return self._redis

    def start_worker(self, concurrency: int = 2, **env: str) -> Process:
        name = f"worker-{len(self.workers)}"
        worker = self.harness.start_worker({**self.env, **env}, name=name, concurrency=concurrency)
        self.workers.append(worker)
        return worker

    def start_api(self, *, wait_ready: bool = False, **env: str) -> str:
        port = free_port()
        self.api_url = self.harness.start_api(
            {**self.env, **env}, name=f"api-{port}", port=port, wait_ready=wait_ready
        )
        self.api = self.harness.processes[-1]
        return self.api_url

    def wait_ready(self, timeout: float = 60) -> None:
        url = f"{self.api_url}/ready"
        try:
            self.harness.wait_http(url, timeout, "the API (with a worker)")
        except BaseException:
            print(self.logs())
            raise

    def submit(self, **overrides: Any) -> str:
        response = self.http.post(f"{self.api_url}/v1/jobs", json=job_request(**overrides))
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api_url}/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_terminal(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            view = self.job(job_id)
            return view if view["status"] in TERMINAL else None

        try:
            return wait_until(ended, timeout, f"job {job_id} did not finish")
        except BaseException:
            print(self.logs())
            raise

    def follow(self, job_id: str, deadline_s: float = 90) -> Follower:
        follower = Follower(f"{self.api_url}/v1/jobs/{job_id}/events", deadline_s)
        follower.start()
        return follower

    def spans(self) -> list[ReceivedSpan]:
        """Every span the stack's processes exported so far (tracing stacks only)."""
        assert self.otlp is not None, "this stack does not export traces"
        return self.otlp.snapshot()

    def api_process(self) -> Process:
        assert self.api is not None, "the API was not started"
        return self.api

    def logs(self) -> str:
        return self.harness.logs()

    def close(self) -> None:
        self.http.close()
        if self._redis is not None:
            self._redis.close()
        self.harness.stop()


def build_stack(
    run_dir: Path,
    *,
    llama: LlamaStub,
    llama_url: str,
    loki: LokiStub,
    durable_redis: bool = False,
    **env: str,
) -> ServiceStack:
    """A stack with its own Redis and the stubs' URLs in its environment; no API or worker
    yet (`start_api`, `start_worker`)."""
    harness = Harness(run_dir, {k: v for k, v in os.environ.items() if k != "REDIS_URL"})
    redis_server = harness.start_redis(durable=durable_redis)
    stack_env = service_env(
        REDIS_URL=redis_server.url(), LOKI_URL=loki.url, LLAMA_URL=llama_url, **env
    )
    return ServiceStack(harness, redis_server, stack_env, llama, loki)
