"""SSE under load against one real API process: abrupt disconnects, a slow reader, shutdown.

The API and a worker run as processes on their own Redis database with the stub Loki and the
stub llama (steered per test). Clients are raw sockets where the test needs control over the
TCP connection (resets, a receive buffer that is never read), httpx otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
import redis

from cli.harness import Process, wait_until
from tests.stubs.llama_stub import LlamaStub
from tests.stubs.loki_stub import LokiStub
from tests.stubs.server import ThreadedServer
from tests.support.incident import INCIDENT_START_NS, job_request
from tests.support.sse import SseEvent, covered_seqs, iter_sse, token_count
from tests.support.stack import ServiceStack, build_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "sseload"
CLIENTS = 1000
BATCH = 100
# Open streams allowed per key (all clients here are the one loopback principal): a batch
# plus a margin, so streams the server failed to release would turn the next batch into 429s.
STREAM_LIMIT = BATCH + 20
SEND_TIMEOUT_S = 2.0
FD_TOLERANCE = 10
# The API's Redis pool (BlockingConnectionPool) grows to the concurrency a batch happens to
# reach, up to this cap, and never shrinks; which batch reaches the high-water mark depends on
# scheduling. A leak of one connection per stream would pass the cap within a batch.
POOL_CAP = 64
LAST_TOKEN_LAG_S = 1.0


@dataclass
class SseService:
    """The stack under load, and the API process the clients talk to."""

    stack: ServiceStack
    api: Process
    url: str

    @property
    def pid(self) -> int:
        return self.api.pid

    @property
    def redis(self) -> redis.Redis:
        return self.stack.redis

    @property
    def http(self) -> httpx.Client:
        return self.stack.http

    def start_api(self, name: str) -> tuple[Process, str]:
        url = self.stack.harness.start_api(self.stack.env, name=name)
        return self.stack.harness.processes[-1], url

    def submit(self) -> str:
        body = job_request(filters={"namespace": NAMESPACE})
        response = self.http.post(f"{self.url}/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def seq(self, job_id: str) -> int:
        return int(self.redis.hget(f"la:job:{job_id}", "seq") or 0)

    def status(self, job_id: str) -> str:
        raw = self.redis.hget(f"la:job:{job_id}", "status")
        return raw.decode() if isinstance(raw, bytes) else str(raw or "")

    def logs(self) -> str:
        return self.stack.logs()


@pytest.fixture(scope="module")
def sse_service(
    loki_server: LokiStub,
    llama_server: tuple[LlamaStub, ThreadedServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SseService]:
    loki_server.push(
        {"namespace": NAMESPACE, "pod": "api-0", "container": "api", "node": "node-1"},
        [(INCIDENT_START_NS + i * 10**9, f"ERROR upstream timeout after {i}ms") for i in range(20)],
    )
    stack = build_stack(
        tmp_path_factory.mktemp("sse-load"),
        llama=llama_server[0],
        llama_url=llama_server[1].url,
        loki=loki_server,
        MAX_STREAMS_PER_KEY=str(STREAM_LIMIT),
        REDIS_MAX_CONNECTIONS=str(POOL_CAP),
        SSE_CLIENT_BUFFER="50",
        SSE_SEND_TIMEOUT_S=str(SEND_TIMEOUT_S),
        LLM_MAX_TOKENS="4096",
        LLM_IDLE_TIMEOUT_S="10",
    )
    try:
        stack.start_worker()
        url = stack.start_api(wait_ready=True)
        assert stack.api is not None
        yield SseService(stack, stack.api, url)
    finally:
        stack.close()


# --- What the API process holds: fds, sockets, Redis connections -----------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def tcp_ports(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of every TCP socket the process holds."""
    owned = socket_inodes(pid)
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[9]) in owned:
                    local, remote = fields[1], fields[2]
                    ports.append(
                        (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
                    )
    return ports


def redis_clients_of(service: SseService) -> int:
    """Entries of Redis `CLIENT LIST` that are connections of the API process."""
    redis_port = service.stack.redis_server.port
    local = {lp for lp, rp in tcp_ports(service.pid) if rp == redis_port}
    return sum(1 for c in service.redis.client_list() if int(c["addr"].rsplit(":", 1)[1]) in local)


def usage(service: SseService) -> tuple[int, int]:
    """The API's fds other than its Redis sockets, and its Redis connections."""
    clients = redis_clients_of(service)
    return fd_count(service.pid) - clients, clients


def holds_at_most(service: SseService, limit: tuple[int, int]) -> bool:
    fds, clients = usage(service)
    return fds <= limit[0] and clients <= limit[1]


def batch_report(service: SseService, batch: int, client_sockets: Callable[[], int]) -> str:
    return (
        f"batch {batch}: the API still holds {client_sockets()} client sockets, "
        f"{open_streams(service)} streams"
    )


def usage_report(
    service: SseService, batch: int, limit: tuple[int, int], peaks: list[tuple[int, int]]
) -> str:
    return (
        f"batch {batch}: (fds but Redis, Redis clients) {usage(service)} stayed above {limit}; "
        f"peaks {peaks}; {describe(service)}"
    )


def describe(service: SseService) -> str:
    api_port = int(service.url.rsplit(":", 1)[1])
    ports = tcp_ports(service.pid)
    clients = sum(1 for lp, _ in ports if lp == api_port)
    to_redis = sum(1 for _, rp in ports if rp == service.stack.redis_server.port)
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{service.pid}/fd"):
        with contextlib.suppress(OSError):
            kind = os.readlink(f"/proc/{service.pid}/fd/{fd}").split(":")[0].split("[")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    return (
        f"{clients} client sockets, {to_redis} Redis sockets, {len(ports)} TCP in all, "
        f"fd kinds {kinds}"
    )


def open_streams(service: SseService) -> int:
    # A connection of its own, closed at once: a kept-alive one would count as a client socket.
    text = httpx.get(f"{service.url}/metrics", headers={"Connection": "close"}, timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("log_analyzer_sse_streams_active "))
    return int(float(line.split()[-1]))


# --- Raw SSE clients -------------------------------------------------------------------------


def raw_stream(
    url: str, job_id: str, last_event_id: int, *, rcvbuf: int | None = None
) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Last-Event-ID: {last_event_id}\r\n\r\n".encode()
    )
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"stream closed before {marker!r}: {data[:300]!r}")
        data += chunk
    return data


def close_abruptly(sock: socket.socket, reset: bool) -> None:
    if reset:
        # SO_LINGER (on, 0 s): close() sends a TCP RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def wait_for(predicate: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    """`wait_until` with a failure message computed when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s: {message()}")
        time.sleep(0.05)


def long_reply(tokens: int, width: int = 1) -> str:
    return " ".join(f"{'x' * width}{i}" for i in range(tokens))


def wait_tokens_flowing(service: SseService, job_id: str, at_least: int = 10) -> None:
    wait_until(lambda: service.seq(job_id) >= at_least, 30, f"job {job_id} did not start streaming")


# --- (a) 1,000 clients that vanish ------------------------------------------------------------


def test_thousand_abrupt_disconnects_leave_no_fds_or_redis_connections(
    sse_service: SseService, llama: Any
) -> None:
    llama.config.reply = long_reply(1000)
    llama.config.token_interval_s = 0.05
    job_id = sse_service.submit()
    wait_tokens_flowing(sse_service, job_id)
    pid, api_port = sse_service.pid, int(sse_service.url.rsplit(":", 1)[1])
    cold = usage(sse_service)
    baseline: tuple[int, int] | None = None
    peaks: list[tuple[int, int]] = []
    resets = 0

    def client_sockets() -> int:
        return sum(1 for local, _ in tcp_ports(pid) if local == api_port)

    idle = client_sockets()  # the keep-alive connection of `sse_service.http`
    try:
        for batch in range(CLIENTS // BATCH):
            assert sse_service.status(job_id) == "running", "the job ended mid-test"
            after = sse_service.seq(job_id)
            socks = [raw_stream(sse_service.url, job_id, after) for _ in range(BATCH)]
            for sock in socks:
                head = read_until(sock, b"\nid: ")
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
            peaks.append(usage(sse_service))
            for i, sock in enumerate(socks):
                close_abruptly(sock, reset=i % 2 == 1)
                resets += i % 2
            wait_for(
                lambda: client_sockets() <= idle and open_streams(sse_service) == 0,
                15,
                partial(batch_report, sse_service, batch, client_sockets),
            )
            now = usage(sse_service)
            if baseline is None:
                baseline = now
                continue
            # Every fd but the pool's must come back; the pool may only stay within its cap.
            limit = (baseline[0] + FD_TOLERANCE, cold[1] + POOL_CAP + FD_TOLERANCE)
            wait_for(
                partial(holds_at_most, sse_service, limit),
                15,
                partial(usage_report, sse_service, batch, limit, peaks),
            )
    finally:
        sse_service.http.delete(f"{sse_service.url}/v1/jobs/{job_id}")
    print(
        f"{CLIENTS} clients ({resets} reset): (fds but Redis, API Redis clients) cold {cold}, "
        f"after the first batch {baseline}, peak per batch {peaks}, "
        f"end {usage(sse_service)}"
    )


# --- (b) a reader that never reads --------------------------------------------------------------


@dataclass
class SlowScenario:
    slow: socket.socket
    slow_port: int
    arrivals: list[tuple[float, SseEvent]]
    stub_end: list[float]
    tokens: int


def run_slow_client_scenario(
    service: SseService, llama: Any, monkeypatch: pytest.MonkeyPatch
) -> SlowScenario:
    """A job streaming ~8 MB, one client that never reads and one that reads to the end."""
    tokens = 1000
    # ~8 MB in all: more than the kernel (tcp_wmem max 4 MB) and uvicorn can buffer for it.
    llama.config.reply = long_reply(tokens, width=8000)
    llama.config.token_interval_s = 0.002
    llama.config.first_token_delay_s = 1.0
    stub_end: list[float] = []
    original = llama._stream

    async def timed(*args: Any, **kwargs: Any) -> Any:
        async for chunk in original(*args, **kwargs):
            yield chunk
        stub_end.append(time.monotonic())

    monkeypatch.setattr(llama, "_stream", timed)
    job_id = service.submit()
    slow = raw_stream(service.url, job_id, 0, rcvbuf=4096)
    arrivals: list[tuple[float, SseEvent]] = []

    def follow() -> None:
        with (
            httpx.Client() as client,
            client.stream(
                "GET",
                f"{service.url}/v1/jobs/{job_id}/events",
                timeout=httpx.Timeout(30, connect=5),
            ) as response,
        ):
            for event in iter_sse(response):
                arrivals.append((time.monotonic(), event))

    normal = threading.Thread(target=follow, daemon=True)
    normal.start()
    normal.join(120)
    assert not normal.is_alive(), "the normal client never finished"
    return SlowScenario(slow, slow.getsockname()[1], arrivals, stub_end, tokens)


def test_slow_client_never_stalls_a_normal_client_and_is_dropped(
    sse_service: SseService, llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_slow_client_scenario(sse_service, llama, monkeypatch)
    try:
        events = [e for _, e in run.arrivals]
        assert events and events[-1].event == "done", [e.event for e in events[-5:]]
        seqs = covered_seqs(events)
        assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate for the normal client"
        token_times = [t for t, e in run.arrivals if e.event == "token"]
        assert token_count(events) == run.tokens
        assert run.stub_end, "the stub never finished its stream"
        lag = token_times[-1] - run.stub_end[0]
        print(f"normal client's last token {lag * 1000:.0f} ms after the stub's end")
        assert lag < LAST_TOKEN_LAG_S, f"normal client lagged {lag:.2f} s behind the stub"
        # The API gives up on the slow stream (send timeout / overflow): its listener and its
        # stream slot are released while the client is still connected and still not reading.
        wait_until(
            lambda: open_streams(sse_service) == 0,
            SEND_TIMEOUT_S + 10,
            "the API kept the slow client's stream",
        )
        run.slow.settimeout(10)
        received = b""
        while chunk := run.slow.recv(1 << 20):
            received += chunk
        print(f"slow client got {len(received)} bytes, then the server closed the connection")
        assert b"event: done" not in received, "the slow client was never dropped"
    finally:
        close_abruptly(run.slow, reset=True)


def test_api_closes_the_socket_of_a_client_that_never_reads(
    sse_service: SseService, llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_slow_client_scenario(sse_service, llama, monkeypatch)
    try:
        wait_until(lambda: open_streams(sse_service) == 0, SEND_TIMEOUT_S + 10, "stream kept")

        def released() -> bool:
            return all(remote != run.slow_port for _, remote in tcp_ports(sse_service.pid))

        wait_until(released, 10, "the API still holds the socket of the client that never reads")
    finally:
        close_abruptly(run.slow, reset=True)


# --- (c) graceful shutdown with open streams, resumed on a new process ------------------------


def test_sigterm_with_open_streams_exits_in_grace_period_and_streams_resume(
    sse_service: SseService, llama: Any
) -> None:
    tokens = 400
    llama.config.reply = long_reply(tokens)
    llama.config.token_interval_s = 0.02
    api, url = sse_service.start_api("sse-api-doomed")
    seen: dict[int, list[SseEvent]] = {i: [] for i in range(10)}
    errors: dict[int, str] = {}
    try:
        job_id = sse_service.submit()

        def follow(index: int) -> None:
            try:
                with (
                    httpx.Client() as client,
                    client.stream(
                        "GET",
                        f"{url}/v1/jobs/{job_id}/events",
                        timeout=httpx.Timeout(15, connect=5),
                    ) as response,
                ):
                    for event in iter_sse(response):
                        seen[index].append(event)
            except httpx.HTTPError as exc:
                errors[index] = type(exc).__name__

        threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(10)]
        for thread in threads:
            thread.start()
        wait_until(
            lambda: all(sum(e.event == "token" for e in s) >= 5 for s in seen.values()),
            30,
            "the 10 streams did not all get tokens",
        )
        assert api.proc is not None
        started = time.monotonic()
        api.signal(signal.SIGTERM)
        api.proc.wait(10)
        exit_s = time.monotonic() - started
        for thread in threads:
            thread.join(10)
        print(
            f"API exited {exit_s:.2f} s after SIGTERM with 10 open streams "
            f"(rc {api.proc.returncode})"
        )
        assert exit_s < 5.0, f"exit took {exit_s:.2f} s (grace period 3 s)"
        assert all(not t.is_alive() for t in threads), "a client stream outlived the API"
    finally:
        api.stop()
    assert all(s and s[-1].event != "done" for s in seen.values()), "the job ended too early"
    final = {i: s[-1].event for i, s in seen.items()}
    print(f"last event each client saw before the shutdown: {final}; errors {errors}")
    # Each client was told to resume elsewhere before the process went away.
    assert all(
        s[-1].event == "error" and s[-1].id is None and "server_shutdown" in s[-1].data
        for s in seen.values()
    ), final

    fresh, fresh_url = sse_service.start_api("sse-api-fresh")
    try:
        with httpx.Client() as client:
            for index, before in seen.items():
                last = max(int(e.id) for e in before if e.id is not None)
                headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
                with client.stream(
                    "GET", f"{fresh_url}/v1/jobs/{job_id}/events", headers=headers, timeout=30
                ) as response:
                    assert response.status_code == 200
                    rest = list(iter_sse(response))
                combined = [e for e in before + rest if e.id is not None]
                seqs = covered_seqs(combined)
                assert seqs == list(range(1, len(seqs) + 1)), f"client {index}: gap or duplicate"
                assert combined[-1].event == "done"
                text = "".join(
                    json.loads(e.data)["data"]["text"] for e in combined if e.event == "token"
                )
                assert text == llama.config.reply, f"client {index}: tokens lost or repeated"
    finally:
        fresh.stop()
