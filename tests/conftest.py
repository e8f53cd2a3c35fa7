"""Shared fixtures: real Redis, stub upstreams, and real API and Celery worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.stubs.llama_stub import LlamaStub, start_llama_stub
from tests.stubs.otlp_receiver import OtlpReceiver, start_otlp_receiver
from tests.stubs.server import ThreadedServer, free_port

ROOT = Path(__file__).resolve().parent.parent
# In-process apps built by unit tests must not try to reach Tempo; the integration stack
# turns tracing on explicitly for its own processes.
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def wait_until(
    predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s: {message}")
        time.sleep(interval)


def api_ready(url: str) -> bool:
    """True when the API at `url` answers /ready with 200 (Redis up, a worker alive)."""
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(url: str, *processes: ManagedProcess, timeout: float = 60) -> None:
    """Wait for the API at `url` to be ready; on failure show the processes' logs."""
    try:
        wait_until(lambda: api_ready(url), timeout, f"{url} did not become ready", interval=0.2)
    except BaseException:
        for process in processes:
            print(f"--- {process.name} ---\n{process.tail()}")
        raise


def require_redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not answering at {url} ({exc}). Integration tests need a real "
            "Redis: `make test` / `.ci/run` starts one.",
            pytrace=False,
        )
    return client


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    client = require_redis(TEST_REDIS_URL)
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[tuple[LlamaStub, ThreadedServer]]:
    stub, server = start_llama_stub()
    yield stub, server
    server.stop()


@pytest.fixture
def llama(llama_server: tuple[LlamaStub, ThreadedServer]) -> Iterator[LlamaStub]:
    stub, _ = llama_server
    stub.reset()
    yield stub
    stub.reset()


@pytest.fixture(scope="session")
def otlp_server() -> Iterator[tuple[OtlpReceiver, ThreadedServer]]:
    receiver, server = start_otlp_receiver()
    yield receiver, server
    server.stop()


@pytest.fixture(scope="session")
def loki_server() -> Iterator[Any]:
    from tests.stubs.loki_stub import start_loki_stub

    stub = start_loki_stub()
    yield stub
    stub.stop()


class ManagedProcess:
    """A child process whose output goes to a log file shown when a test fails."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        # Whatever the process left in its session (prefork children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def service_env(redis_url: str, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "OTEL_SDK_DISABLED": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "LOG_LEVEL": "INFO",
        "LLM_LOADING_WAIT_S": "3",
        "LLM_FIRST_TOKEN_TIMEOUT_S": "5",
        "LLM_IDLE_TIMEOUT_S": "3",
        "LLM_MAX_RETRIES": "2",
        "LOKI_MAX_RETRIES": "2",
        "LOKI_TIMEOUT_S": "5",
        "WORKER_HEARTBEAT_S": "1",
        "SSE_PING_S": "1",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def worker_argv(name: str, concurrency: int = 2, queues: str = "interactive") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-Q",
        queues,
        "-n",
        f"{name}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]


def api_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "api.main:app_factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "3",
    ]


@dataclass
class Stack:
    api_url: str
    worker: ManagedProcess
    api: ManagedProcess
    llama: LlamaStub
    loki: Any
    redis: redis.Redis
    http: httpx.Client
    otlp: OtlpReceiver

    def submit(self, **overrides: Any) -> str:
        body = job_request(**overrides)
        response = self.http.post(f"{self.api_url}/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.api_url}/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_terminal(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            view = self.job(job_id)
            return view if view["status"] in ("succeeded", "failed", "cancelled") else None

        try:
            return dict(wait_until(done, timeout, f"job {job_id} did not finish"))
        except BaseException:
            print(f"--- worker log ---\n{self.worker.tail()}\n--- api log ---\n{self.api.tail()}")
            raise


INCIDENT_START_NS = 1_795_500_000_000_000_000  # 2026-11-24T06:00:00Z


def job_request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "time_range": {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"},
        "filters": {"namespace": "shop"},
        "limit": 15,
    }
    body.update(overrides)
    return body


def push_incident(loki_url: str) -> None:
    """Push a small incident into the Loki stub through Loki's own push API."""
    streams: dict[tuple[str, str], list[list[str]]] = {}

    def add(pod: str, container: str, offset_ms: int, line: str) -> None:
        ts = INCIDENT_START_NS + offset_ms * 1_000_000
        streams.setdefault((pod, container), []).append([str(ts), line])

    for i in range(3):
        add(
            "postgres-0",
            "postgres",
            i * 1000,
            f'PANIC: could not write to file "pg_wal/xlogtemp.{40 + i}": No space left on device',
        )
    for i in range(400):
        add(
            f"api-7d9f8c6b5-{'abcde'[i % 5]}x2x4",
            "api",
            5000 + i * 50,
            f"ERROR dial tcp 10.42.0.{i % 7}:5432: connect: connection refused (attempt {i})",
        )
    for i in range(200):
        add("api-7d9f8c6b5-ax2x4", "api", 5000 + i * 77, f"INFO GET /healthz 200 {i % 9}ms")
    body = {
        "streams": [
            {
                "stream": {"namespace": "shop", "pod": pod, "container": c, "node": "node-1"},
                "values": values,
            }
            for (pod, c), values in streams.items()
        ]
    }
    response = httpx.post(f"{loki_url}/loki/api/v1/push", json=body, timeout=10)
    assert response.status_code == 204, response.text


@pytest.fixture(scope="session")
def stack(
    redis_url: str,
    redis_client: redis.Redis,
    llama_server: tuple[LlamaStub, ThreadedServer],
    loki_server: Any,
    otlp_server: tuple[OtlpReceiver, ThreadedServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    llama_stub, llama_http = llama_server
    logs = tmp_path_factory.mktemp("services")
    # The stack exports its traces to a real OTLP/HTTP receiver, as it would to Tempo.
    env = service_env(
        redis_url,
        LOKI_URL=loki_server.url,
        LLAMA_URL=llama_http.url,
        OTEL_SDK_DISABLED="false",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_server[1].url,
    )
    push_incident(loki_server.url)
    port = free_port()
    worker = ManagedProcess("worker", worker_argv("test"), env, logs)
    api = ManagedProcess("api", api_argv(port), env, logs)
    http = httpx.Client(timeout=10)
    stack = Stack(
        f"http://127.0.0.1:{port}",
        worker,
        api,
        llama_stub,
        loki_server,
        redis_client,
        http,
        otlp_server[0],
    )

    try:
        worker.start()
        api.start()
        wait_ready(stack.api_url, worker, api)
        yield stack
    finally:
        http.close()
        api.stop()
        worker.stop()
