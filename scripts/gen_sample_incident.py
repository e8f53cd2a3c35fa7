"""Generate the sample incident: one hour of kubelet-layout pod logs with a buried root cause.

    python scripts/gen_sample_incident.py --out deploy/sample/pods

Writes `<out>/<namespace>_<pod>_<uid>/<container>/<restart>.log` in the CRI format
(`<RFC3339Nano> <stdout|stderr> <P|F> <text>`, lines over 16 KiB split into `P` chunks)
and `<out>/../README.md` with the ground truth and the counts. The output depends only on
`SEED`: running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEED = 20261124
START = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
T0 = int(START.timestamp()) * 1_000_000_000
HOUR_S = 3600.0
CRI_MAX_BYTES = 16 * 1024  # the kubelet/containerd split size for long lines
S = 1_000_000_000

# Incident timeline, in seconds after 10:00:00.
DISK_FULL_S = 1203.2  # 10:20:03: first "No space left on device"
PG_CRASH_S = 1204.1  # PANIC, server processes terminated
PG_DOWN_S = 1206.3  # "database system is shut down", container exits
PG_RESTART_S = 1217.4  # restart 1: recovery, PANIC again
PG_RESTART_DOWN_S = 1230.9
PG_FIXED_S = 2510.0  # 10:41:50: volume expanded, restart 2
PG_READY_S = 2517.6  # "database system is ready to accept connections"
CART_OOM_S = 2021.2  # 10:33:41
CART_RESTART_S = 2045.0

POSTGRES_IP = "10.42.0.17"
REFUSED = f"dial tcp {POSTGRES_IP}:5432: connect: connection refused"
RECOVERY = "FATAL: the database system is in recovery mode (SQLSTATE 57P03)"
DSN = "postgres://app:S3cr3t-pass@postgres:5432/shop"
JDBC_URL = "jdbc:postgresql://postgres:5432/shop?user=cart&password=S3cr3t-pass"
BEARER = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwYXltZW50cy1hcGkiLCJzY29wZSI6ImF1dGhvcml6"
    "ZSJ9.Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1zaWduYXR1cmU"
)
ROOT_CAUSE_MARKER = "No space left on device"

POD_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def db_state(t: float) -> str:
    """What a client of postgres sees at `t` seconds: `up`, `refused` or `recovery`."""
    if t < PG_CRASH_S:
        return "up"
    if t < PG_CRASH_S + 0.9:
        return "refused"
    if t < PG_DOWN_S:
        return "recovery"
    if t < PG_RESTART_S + 0.5:
        return "refused"
    if t < PG_RESTART_DOWN_S:
        return "recovery"
    if t < PG_FIXED_S + 0.8:
        return "refused"
    if t < PG_READY_S:
        return "recovery"
    return "up"


@dataclass
class Record:
    ts_ns: int
    seq: int
    stream: str
    text: str


@dataclass
class Container:
    namespace: str
    pod: str
    uid: str
    name: str
    runs: dict[int, list[Record]] = field(default_factory=dict)


class Sample:
    """Collects log records per container run, then writes them in kubelet layout."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.containers: dict[tuple[str, str, str], Container] = {}
        self.pods: dict[tuple[str, str], str] = {}
        self._replicasets: dict[str, str] = {}
        self._seq = 0

    def pod_name(self, deployment: str) -> str:
        """`<deployment>-<replicaset hash>-<suffix>`, like a Deployment's pods."""
        if deployment not in self._replicasets:
            self._replicasets[deployment] = "".join(
                self.rng.choice(POD_HASH_ALPHABET) for _ in range(9)
            )
        return f"{deployment}-{self._replicasets[deployment]}-{self.suffix()}"

    def suffix(self) -> str:
        return "".join(self.rng.choice(POD_HASH_ALPHABET) for _ in range(5))

    def container(self, namespace: str, pod: str, name: str) -> Container:
        key = (namespace, pod, name)
        if key not in self.containers:
            if (namespace, pod) not in self.pods:
                self.pods[(namespace, pod)] = str(
                    uuid.UUID(int=self.rng.getrandbits(128), version=4)
                )
            self.containers[key] = Container(namespace, pod, self.pods[(namespace, pod)], name)
        return self.containers[key]

    def emit(
        self, c: Container, t: float, text: str, *, stream: str = "stdout", run: int = 0
    ) -> None:
        """One log line at `t` seconds after the window start."""
        self._seq += 1
        ts = T0 + int(t * S) + self.rng.randrange(1000)
        c.runs.setdefault(run, []).append(Record(ts, self._seq, stream, text))

    def emit_block(
        self, c: Container, t: float, lines: list[str], *, stream: str = "stderr", run: int = 0
    ) -> None:
        """Lines written in one go (a stack trace): consecutive, a few microseconds apart."""
        base = T0 + int(t * S)
        for i, text in enumerate(lines):
            self._seq += 1
            c.runs.setdefault(run, []).append(Record(base + i * 7_000, self._seq, stream, text))

    def write(self, out: Path) -> list[Path]:
        """Write every container run as CRI lines; return the files written."""
        written: list[Path] = []
        for c in self.containers.values():
            for run, records in sorted(c.runs.items()):
                path = out / f"{c.namespace}_{c.pod}_{c.uid}" / c.name / f"{run}.log"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(cri_lines(records)))
                written.append(path)
        return written


def cri_lines(records: list[Record]) -> Iterator[bytes]:
    """CRI-format lines, timestamps strictly increasing, long lines split into `P` chunks."""
    last = 0
    for record in sorted(records, key=lambda r: (r.ts_ns, r.seq)):
        data = record.text.encode()
        chunks = [data[i : i + CRI_MAX_BYTES] for i in range(0, len(data), CRI_MAX_BYTES)]
        for i, chunk in enumerate(chunks or [b""]):
            last = max(record.ts_ns, last + 1_000)
            tag = b"F" if i == len(chunks) - 1 or not chunks else b"P"
            yield b"%s %s %s %s\n" % (rfc3339(last).encode(), record.stream.encode(), tag, chunk)


def rfc3339(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, S)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def clock(t: float) -> datetime:
    return datetime.fromtimestamp(T0 / S + t, UTC)


def iso_ms(t: float) -> str:
    return clock(t).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso_us(t: float) -> str:
    return clock(t).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def py_time(t: float) -> str:
    return clock(t).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def pg_time(t: float) -> str:
    return clock(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def pg_seconds(t: float) -> str:
    return clock(t).strftime("%Y-%m-%d %H:%M:%S UTC")


def ticks(rng: random.Random, start: float, end: float, every: float) -> Iterator[float]:
    """Times from `start` to `end`, `every` seconds apart with a little jitter."""
    t = start + rng.uniform(0, every)
    while t < end:
        yield t
        t += every * rng.uniform(0.9, 1.1)


def arrivals(
    rng: random.Random, start: float, end: float, rate: Callable[[float], float]
) -> Iterator[float]:
    """Poisson arrivals with a time-varying rate (events per second), by thinning."""
    peak = max(rate(start + i * (end - start) / 200) for i in range(201))
    t = start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return
        if rng.random() * peak < rate(t):
            yield t


def zap(t: float, level: str, caller: str, msg: str, **extra: Any) -> str:
    """A zap-style JSON line."""
    return json.dumps(
        {"level": level, "ts": iso_ms(t), "caller": caller, "msg": msg, **extra},
        separators=(",", ":"),
    )


# --- shop -----------------------------------------------------------------------------------

PRODUCT_PATHS = ("/api/products", "/api/products/{id}", "/api/search", "/api/categories")


def gen_api(s: Sample) -> None:
    """Go API, two replicas, zap JSON; floods with connection errors while postgres is down."""
    rng = s.rng
    for replica in range(2):
        c = s.container("shop", s.pod_name("api"), "api")
        for t in ticks(rng, 0, HOUR_S, 15.0):
            if db_state(t) == "up":
                line = zap(t, "info", "http/health.go:31", "health check", probe="readiness")
            else:
                error = REFUSED if db_state(t) == "refused" else RECOVERY
                line = zap(
                    t,
                    "warn",
                    "http/health.go:44",
                    "readiness check failed",
                    check="database",
                    status=503,
                    error=error,
                )
            s.emit(c, t, line)

        def rate(t: float) -> float:
            # Clients retry failed requests, so traffic roughly doubles during the outage.
            return 0.2 if db_state(t) == "up" else 0.38

        for t in arrivals(rng, 0, HOUR_S, rate):
            path = rng.choice(PRODUCT_PATHS).replace("{id}", str(rng.randrange(1000, 9999)))
            request_id = f"{rng.getrandbits(64):016x}"
            state = db_state(t)
            if state == "up":
                if rng.random() < 0.35:
                    key = f"products:{path.rsplit('/', 1)[-1]}:{rng.randrange(1, 40)}"
                    s.emit(c, t, zap(t, "info", "cache/redis.go:72", "cache hit", key=key))
                    duration = round(rng.uniform(1.0, 6.0), 1)
                else:
                    duration = round(rng.uniform(8.0, 60.0), 1)
                line = zap(
                    t + duration / 1000,
                    "info",
                    "http/middleware.go:54",
                    "request served",
                    method="GET",
                    path=path,
                    status=200,
                    duration_ms=duration,
                    request_id=request_id,
                )
                s.emit(c, t + duration / 1000, line)
                continue
            error = REFUSED if state == "refused" else RECOVERY
            for attempt in (1, 2):
                backoff = 100 * attempt
                s.emit(
                    c,
                    t + 0.01 * attempt,
                    zap(
                        t + 0.01 * attempt,
                        "warn",
                        "db/retry.go:41",
                        "database call failed, retrying",
                        attempt=attempt,
                        backoff_ms=backoff,
                        error=error,
                    ),
                )
            s.emit(
                c,
                t + 0.31,
                zap(
                    t + 0.31,
                    "error",
                    "db/pool.go:88",
                    "query failed",
                    query="products.list",
                    request_id=request_id,
                    error=error,
                ),
            )
            s.emit(
                c,
                t + 0.312,
                zap(
                    t + 0.312,
                    "error",
                    "http/middleware.go:61",
                    "request failed",
                    method="GET",
                    path=path,
                    status=503,
                    duration_ms=round(312 + rng.uniform(0, 5), 1),
                    request_id=request_id,
                    error="database unavailable",
                ),
            )
        if replica == 0:
            s.emit(
                c,
                PG_CRASH_S + 3.2,
                zap(
                    PG_CRASH_S + 3.2,
                    "debug",
                    "db/pool.go:121",
                    "reconnecting database pool",
                    max_conns=20,
                ),
            )


def gen_checkout(s: Sample) -> None:
    """Python service: stdlib logging plus uvicorn access logs, tracebacks on stderr."""
    rng = s.rng
    c = s.container("shop", s.pod_name("checkout"), "checkout")
    client_ips = [f"10.42.1.{n}" for n in (23, 31, 44, 52)]

    def log(t: float, level: str, logger: str, msg: str) -> None:
        stream = "stderr" if level in ("WARNING", "ERROR") else "stdout"
        s.emit(c, t, f"{py_time(t)} {level} [{logger}] {msg}", stream=stream)

    def access(t: float, method: str, path: str, status: str, ip: str = "") -> None:
        ip = ip or rng.choice(client_ips)
        port = rng.randrange(32768, 60999)
        s.emit(c, t, f'INFO:     {ip}:{port} - "{method} {path} HTTP/1.1" {status}')

    for t in ticks(rng, 0, HOUR_S, 10.0):
        if db_state(t) == "up":
            access(t, "GET", "/healthz", "200 OK", "10.42.0.1")
        else:
            access(t, "GET", "/healthz", "503 Service Unavailable", "10.42.0.1")

    # A full traceback for the first failure and two later ones; one-line errors otherwise.
    traceback_at = [PG_CRASH_S, PG_CRASH_S + 500.0, PG_CRASH_S + 1100.0]
    for t in arrivals(rng, 0, HOUR_S, lambda t: 0.12 if db_state(t) == "up" else 0.2):
        order = rng.randrange(58000, 61000)
        state = db_state(t)
        if state == "up":
            items = rng.randrange(1, 6)
            total = round(rng.uniform(9.0, 240.0), 2)
            if rng.random() < 0.5:
                log(t, "INFO", "checkout.cache", f"cache hit for cart {order - 1000}")
            log(t + 0.05, "INFO", "checkout.payments", f"payment authorized order={order}")
            log(
                t + 0.06,
                "INFO",
                "checkout.orders",
                f"order {order} created items={items} total={total:.2f} EUR",
            )
            access(t + 0.07, "POST", "/api/checkout", "201 Created")
            continue
        if state == "refused":
            cause = f'connection to server at "{POSTGRES_IP}", port 5432 failed: Connection refused'
        else:
            cause = (
                f'connection to server at "{POSTGRES_IP}", port 5432 failed: '
                "FATAL:  the database system is in recovery mode"
            )
        for attempt in (1, 2):
            log(
                t + 0.5 * (attempt - 1),
                "WARNING",
                "checkout.db",
                f"connection failed, retrying in 0.5s (attempt {attempt}/3): {cause}",
            )
        if traceback_at and t >= traceback_at[0]:
            traceback_at.pop(0)
            log(t + 1.0, "ERROR", "checkout.orders", "order creation failed")
            s.emit_block(c, t + 1.0001, python_traceback(cause))
        else:
            log(t + 1.0, "ERROR", "checkout.orders", f"order creation failed: {cause}")
        access(t + 1.01, "POST", "/api/checkout", "503 Service Unavailable")

    # The pool logs its DSN with the password when it gives up: a secret to redact.
    for t in (PG_CRASH_S + 5.3, PG_CRASH_S + 605.3, PG_CRASH_S + 1205.3):
        log(t, "ERROR", "checkout.db", f"database unreachable (dsn={DSN}), pool reset")


def python_traceback(cause: str) -> list[str]:
    """A chained psycopg traceback as Python prints it."""
    cause_lines = cause.split("\n")
    return [
        "Traceback (most recent call last):",
        '  File "/app/checkout/db.py", line 41, in connect',
        "    return await psycopg.AsyncConnection.connect(DSN, connect_timeout=3)",
        "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        '  File "/usr/local/lib/python3.12/site-packages/psycopg/connection_async.py", '
        "line 147, in connect",
        "    raise last_ex.with_traceback(None)",
        f"psycopg.OperationalError: connection failed: {cause_lines[0]}",
        "\tIs the server running on that host and accepting TCP/IP connections?",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        '  File "/app/checkout/orders.py", line 88, in create_order',
        "    conn = await db.connect()",
        "           ^^^^^^^^^^^^^^^^^^",
        '  File "/app/checkout/db.py", line 44, in connect',
        '    raise DatabaseUnavailable("postgres is unreachable") from exc',
        "checkout.db.DatabaseUnavailable: postgres is unreachable",
    ]


def spring(t: float, level: str, thread: str, logger: str, msg: str) -> str:
    """A Spring Boot 3 console line."""
    return f"{iso_ms(t)} {level:>5} 1 --- [cart] [{thread[-15:]:>15}] {logger:<40} : {msg}"


def gen_cart(s: Sample) -> None:
    """Java/Spring cart service: queues writes while postgres is down until the heap runs out."""
    rng = s.rng
    c = s.container("shop", s.pod_name("cart"), "cart")

    def exec_thread() -> str:
        return f"http-nio-8080-exec-{rng.randrange(1, 11)}"

    def run_of(t: float) -> int:
        return 0 if t < CART_OOM_S + 11 else 1

    pending = 0
    for t in arrivals(rng, 0, HOUR_S, lambda t: 0.15 if db_state(t) == "up" else 0.3):
        if CART_OOM_S + 11 <= t < CART_RESTART_S + 14:
            continue  # killed, restarting
        cart_id = rng.randrange(4000, 9000)
        thread = exec_thread()
        if db_state(t) == "up":
            msg = f"cart {cart_id} updated: items={rng.randrange(1, 8)}"
            if rng.random() < 0.4:
                msg = f"cart {cart_id} loaded from cache"
            line = spring(t, "INFO", thread, "c.e.shop.cart.CartController", msg)
            s.emit(c, t, line, run=run_of(t))
            continue
        pending += rng.randrange(40, 90) if t < CART_OOM_S else 1
        line = spring(
            t,
            "WARN",
            thread,
            "c.e.shop.cart.CartRepository",
            f"write failed, queued for retry (pending={pending}): Connection to postgres:5432 "
            "refused. Check that the hostname and port are correct and that the postmaster "
            "is accepting TCP/IP connections.",
        )
        s.emit(c, t, line, run=run_of(t))

    # The retry storm: every 5 s the scheduler retries all queued writes at once.
    storm = 0
    for t in ticks(rng, PG_CRASH_S + 5, PG_FIXED_S + 10, 5.0):
        if CART_OOM_S - 0.5 <= t < CART_RESTART_S + 14:
            continue
        storm += 1
        queued = storm * 310 if t < CART_OOM_S else (storm % 40) * 12
        line = spring(
            t,
            "WARN",
            "RetryScheduler-1",
            "c.e.shop.cart.RetryScheduler",
            f"retrying {queued} pending cart writes (attempt {storm})",
        )
        s.emit(c, t, line, run=run_of(t))
        if t < CART_OOM_S and storm % 12 == 0:
            used = min(98, 40 + storm // 3)
            line = spring(
                t + 0.2,
                "WARN",
                "RetryScheduler-1",
                "c.e.shop.cart.PendingWriteQueue",
                f"pending write queue above high watermark: heap used {used}%",
            )
            s.emit(c, t + 0.2, line)

    # Two huge lines (split by the runtime into P chunks) just before the heap runs out.
    for t, count in ((CART_OOM_S - 95.0, 1400), (CART_OOM_S - 35.0, 2600)):
        keys = ", ".join(
            f"cart:{rng.randrange(4000, 9000)}:v{rng.randrange(1, 99)}" for _ in range(count)
        )
        line = spring(
            t,
            "WARN",
            "RetryScheduler-1",
            "c.e.shop.cart.PendingWriteQueue",
            f"queue full, dropping oldest pending writes: [{keys}]",
        )
        s.emit(c, t, line)

    oom_head = spring(
        CART_OOM_S,
        "ERROR",
        "http-nio-8080-exec-7",
        "o.a.c.c.C.[.[.[/].[dispatcherServlet]",
        "Servlet.service() for servlet [dispatcherServlet] in context with path [] threw "
        "exception [Handler dispatch failed: java.lang.OutOfMemoryError: Java heap space] "
        "with root cause",
    )
    s.emit_block(c, CART_OOM_S, [oom_head, "", *java_oom_trace(servlet=True)], stream="stdout")
    s.emit_block(
        c,
        CART_OOM_S + 4.7,
        [
            'Exception in thread "RetryScheduler-1" java.lang.OutOfMemoryError: Java heap space',
            *java_oom_trace(servlet=False)[1:],
        ],
    )
    # Then the kernel's OOM killer ends the JVM (cgroup limit): no goodbye line.

    r = CART_RESTART_S
    startup = [
        (
            0.0,
            "INFO",
            "main",
            "c.e.shop.cart.CartApplication",
            "Starting CartApplication v1.8.2 using Java 21.0.5 with PID 1 (/app/cart.jar started "
            "by app in /app)",
        ),
        (
            0.1,
            "INFO",
            "main",
            "c.e.shop.cart.CartApplication",
            'The following 1 profile is active: "prod"',
        ),
        (
            2.4,
            "INFO",
            "main",
            "o.s.b.w.embedded.tomcat.TomcatWebServer",
            "Tomcat initialized with port 8080 (http)",
        ),
        (
            3.1,
            "DEBUG",
            "main",
            "com.zaxxer.hikari.HikariConfig",
            f"jdbcUrl.........................{JDBC_URL}",
        ),
        (3.2, "INFO", "main", "com.zaxxer.hikari.HikariDataSource", "HikariPool-1 - Starting..."),
    ]
    for dt, level, thread, logger, msg in startup:
        s.emit(c, r + dt, spring(r + dt, level, thread, logger, msg), run=1)
    s.emit_block(
        c,
        r + 4.0,
        [
            spring(
                r + 4.0,
                "WARN",
                "main",
                "com.zaxxer.hikari.pool.HikariPool",
                "HikariPool-1 - Exception during pool initialization.",
            ),
            "",
            "org.postgresql.util.PSQLException: Connection to postgres:5432 refused. Check that "
            "the hostname and port are correct and that the postmaster is accepting TCP/IP "
            "connections.",
            "\tat org.postgresql.core.v3.ConnectionFactoryImpl.openConnectionImpl("
            "ConnectionFactoryImpl.java:352)",
            "\tat org.postgresql.core.ConnectionFactory.openConnection(ConnectionFactory.java:54)",
            "\tat org.postgresql.jdbc.PgConnection.<init>(PgConnection.java:273)",
            "\tat org.postgresql.Driver.makeConnection(Driver.java:446)",
            "\tat com.zaxxer.hikari.pool.PoolBase.newConnection(PoolBase.java:359)",
            "\tat com.zaxxer.hikari.pool.HikariPool.checkFailFast(HikariPool.java:554)",
            "\tat com.zaxxer.hikari.pool.HikariPool.<init>(HikariPool.java:98)",
            "\tat com.zaxxer.hikari.HikariDataSource.getConnection(HikariDataSource.java:111)",
            "Caused by: java.net.ConnectException: Connection refused",
            "\tat java.base/sun.nio.ch.Net.pollConnect(Native Method)",
            "\tat java.base/sun.nio.ch.NioSocketImpl.timedFinishConnect(NioSocketImpl.java:542)",
            "\tat java.base/java.net.Socket.connect(Socket.java:751)",
            "\tat org.postgresql.core.PGStream.createSocket(PGStream.java:243)",
            "\t... 17 common frames omitted",
        ],
        stream="stdout",
        run=1,
    )
    s.emit(
        c,
        r + 9.5,
        spring(
            r + 9.5,
            "INFO",
            "main",
            "c.e.shop.cart.CartApplication",
            "Started CartApplication in 9.47 seconds (process running for 10.2)",
        ),
        run=1,
    )


def java_oom_trace(*, servlet: bool) -> list[str]:
    frames = [
        "java.lang.OutOfMemoryError: Java heap space",
        "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)",
        "\tat java.base/java.util.ArrayList.grow(ArrayList.java:237)",
        "\tat java.base/java.util.ArrayList.add(ArrayList.java:486)",
        "\tat com.example.shop.cart.PendingWriteQueue.add(PendingWriteQueue.java:58)",
        "\tat com.example.shop.cart.CartRepository.saveOrQueue(CartRepository.java:112)",
    ]
    if servlet:
        frames += [
            "\tat com.example.shop.cart.CartController.update(CartController.java:47)",
            "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke("
            "DirectMethodHandleAccessor.java:103)",
            "\tat org.springframework.web.method.support.InvocableHandlerMethod.doInvoke("
            "InvocableHandlerMethod.java:255)",
            "\tat org.springframework.web.servlet.DispatcherServlet.doDispatch("
            "DispatcherServlet.java:1089)",
            "\tat org.apache.tomcat.util.threads.TaskThread$WrappingRunnable.run("
            "TaskThread.java:61)",
            "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
        ]
    else:
        frames += [
            "\tat com.example.shop.cart.RetryScheduler.retryAll(RetryScheduler.java:73)",
            "\tat java.base/java.util.concurrent.ThreadPoolExecutor.runWorker("
            "ThreadPoolExecutor.java:1144)",
            "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
        ]
    return frames


def gen_postgres(s: Sample) -> None:
    """postgres-0: routine checkpoints, then the disk fills, PANIC, failed recovery, fix."""
    rng = s.rng
    c = s.container("shop", "postgres-0", "postgres")

    def log(t: float, pid: int, severity: str, msg: str, run: int = 0) -> None:
        s.emit(c, t, f"{pg_time(t)} [{pid}] {severity}:  {msg}", stream="stderr", run=run)

    for t in ticks(rng, 0, HOUR_S, 300.0):
        if db_state(t) != "up":
            continue
        buffers = rng.randrange(900, 4800)
        log(t, 27, "LOG", "checkpoint starting: time")
        log(
            t + 27.1,
            27,
            "LOG",
            f"checkpoint complete: wrote {buffers} buffers ({buffers / 163.84:.1f}%); "
            f"0 WAL file(s) added, 0 removed, {rng.randrange(1, 4)} recycled; "
            f"write={rng.uniform(20, 27):.3f} s, sync={rng.uniform(0.01, 0.4):.3f} s, "
            f"total={rng.uniform(27, 28):.3f} s",
        )
    for t in ticks(rng, 0, HOUR_S, 420.0):
        if db_state(t) != "up":
            continue
        s.emit_block(
            c,
            t,
            [
                f"{pg_time(t)} [{rng.randrange(3000, 9000)}] LOG:  automatic vacuum of table "
                '"shop.public.cart_items": index scans: 1',
                f"\tpages: 0 removed, {rng.randrange(2000, 9000)} remain, "
                f"{rng.randrange(100, 900)} scanned (4.12% of total)",
                f"\ttuples: {rng.randrange(100, 5000)} removed, {rng.randrange(10**5, 10**6)} "
                "remain, 0 are dead but not yet removable",
            ],
        )
    # An unrelated, harmless error: a duplicate insert retried by the client.
    for t in (412.7, 2604.6):
        pid = rng.randrange(3000, 9000)
        log(t, pid, "ERROR", 'duplicate key value violates unique constraint "carts_pkey"')
        log(t, pid, "DETAIL", f"Key (id)=({rng.randrange(4000, 9000)}) already exists.")
        log(t, pid, "STATEMENT", "INSERT INTO carts (id, user_id, updated_at) VALUES ($1, $2, $3)")
    # The WAL grows during a bulk import: the only warning signs before the disk fills.
    for t in (843.2, 1021.9, 1150.4):
        log(
            t,
            27,
            "LOG",
            f"checkpoints are occurring too frequently ({rng.randrange(8, 14)} seconds apart)",
        )
        log(t, 27, "HINT", 'Consider increasing the configuration parameter "max_wal_size".')

    # 10:20:03: the volume is full.
    t = DISK_FULL_S
    log(t, 2231, "ERROR", f'could not extend file "base/16384/16421": {ROOT_CAUSE_MARKER}')
    log(t, 2231, "HINT", "Check free disk space.")
    log(
        t,
        2231,
        "STATEMENT",
        "INSERT INTO order_events (order_id, kind, payload) VALUES ($1, $2, $3)",
    )
    t = PG_CRASH_S
    log(t, 2240, "PANIC", f'could not write to file "pg_wal/xlogtemp.2240": {ROOT_CAUSE_MARKER}')
    log(t + 0.05, 1, "LOG", "server process (PID 2240) was terminated by signal 6: Aborted")
    log(t + 0.05, 1, "DETAIL", "Failed process was running: COMMIT")
    log(t + 0.05, 1, "LOG", "terminating any other active server processes")
    for pid in (2231, 2236):
        log(
            t + 0.06,
            pid,
            "WARNING",
            "terminating connection because of crash of another server process",
        )
    log(t + 0.3, 1, "LOG", "all server processes terminated; reinitializing")
    log(
        t + 0.4,
        2251,
        "LOG",
        f"database system was interrupted; last known up at {pg_seconds(DISK_FULL_S - 181.0)}",
    )
    for dt in (0.9, 1.2, 1.6):
        log(t + dt, 2252 + int(dt * 10), "FATAL", "the database system is in recovery mode")
    log(
        t + 1.0,
        2251,
        "LOG",
        "database system was not properly shut down; automatic recovery in progress",
    )
    log(t + 1.1, 2251, "LOG", "redo starts at 3/A1000028")
    log(
        t + 2.1,
        2251,
        "PANIC",
        f'could not write to file "pg_wal/xlogtemp.2251": {ROOT_CAUSE_MARKER}',
    )
    log(t + 2.15, 1, "LOG", "startup process (PID 2251) was terminated by signal 6: Aborted")
    log(t + 2.15, 1, "LOG", "aborting startup due to startup process failure")
    log(PG_DOWN_S, 1, "LOG", "database system is shut down")

    def startup(r: float, run: int) -> None:
        s.emit(c, r, "", stream="stdout", run=run)
        s.emit(
            c,
            r,
            "PostgreSQL Database directory appears to contain a database; Skipping initialization",
            stream="stdout",
            run=run,
        )
        s.emit(c, r + 0.01, "", stream="stdout", run=run)
        log(
            r + 0.2,
            1,
            "LOG",
            "starting PostgreSQL 16.4 (Debian 16.4-1.pgdg120+2) on "
            "x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit",
            run,
        )
        log(r + 0.2, 1, "LOG", 'listening on IPv4 address "0.0.0.0", port 5432', run)
        log(
            r + 0.3,
            28,
            "LOG",
            f"database system was interrupted while in recovery at {pg_seconds(PG_CRASH_S + 1.0)}",
            run,
        )
        log(
            r + 0.3,
            28,
            "HINT",
            "This probably means that some data is corrupted and you will "
            "have to use the last backup for recovery.",
            run,
        )
        log(
            r + 0.4,
            28,
            "LOG",
            "database system was not properly shut down; automatic recovery in progress",
            run,
        )
        log(r + 0.5, 28, "LOG", "redo starts at 3/A1000028", run)

    # Restart 1: recovery runs out of space again.
    r = PG_RESTART_S
    startup(r, 1)
    for dt in (1.3, 3.9, 6.2, 9.0):
        log(r + dt, 40 + int(dt), "FATAL", "the database system is in recovery mode", 1)
    log(
        PG_RESTART_DOWN_S - 0.2,
        28,
        "PANIC",
        f'could not write to file "pg_wal/xlogtemp.28": {ROOT_CAUSE_MARKER}',
        1,
    )
    log(
        PG_RESTART_DOWN_S - 0.1,
        1,
        "LOG",
        "startup process (PID 28) was terminated by signal 6: Aborted",
        1,
    )
    log(PG_RESTART_DOWN_S - 0.1, 1, "LOG", "aborting startup due to startup process failure", 1)
    log(PG_RESTART_DOWN_S, 1, "LOG", "database system is shut down", 1)

    # Restart 2, after the volume was expanded: recovery completes.
    r = PG_FIXED_S
    startup(r, 2)
    for dt in (1.1, 4.6):
        log(r + dt, 40 + int(dt), "FATAL", "the database system is in recovery mode", 2)
    log(
        r + 6.8,
        28,
        "LOG",
        "redo done at 3/A7FFE1D0 system usage: CPU: user: 1.02 s, system: 0.88 s, elapsed: 6.31 s",
        2,
    )
    log(r + 7.0, 26, "LOG", "checkpoint starting: end-of-recovery immediate wait", 2)
    log(PG_READY_S, 1, "LOG", "database system is ready to accept connections", 2)
    for t in ticks(rng, PG_READY_S + 30, HOUR_S, 300.0):
        log(t, 27, "LOG", "checkpoint starting: time", 2)


# --- payments -------------------------------------------------------------------------------


def gen_payments(s: Sample) -> None:
    """Unaffected neighbours: a logfmt Go API and a Celery worker, with their own small issues."""
    rng = s.rng
    api = s.container("payments", s.pod_name("payments-api"), "payments-api")

    def logfmt(t: float, level: str, caller: str, msg: str, **extra: object) -> None:
        pairs = " ".join(f"{k}={v}" for k, v in extra.items())
        line = f"ts={iso_us(t)} level={level} caller={caller} msg={json.dumps(msg)}"
        s.emit(api, t, f"{line} {pairs}".rstrip())

    for t in ticks(rng, 0, HOUR_S, 15.0):
        logfmt(t, "info", "health.go:22", "health check ok", probe="liveness")
    # Payment volume follows checkout: it drops while checkout cannot write orders.
    for t in arrivals(rng, 0, HOUR_S, lambda t: 0.12 if db_state(t) == "up" else 0.01):
        latency = rng.randrange(120, 900)
        logfmt(
            t,
            "info",
            "handler.go:77",
            "payment authorized",
            order_id=rng.randrange(58000, 61000),
            amount=f"{rng.uniform(9, 240):.2f}",
            currency="EUR",
            psp="acquirer-eu",
            latency_ms=latency,
        )
    for t in ticks(rng, 0, HOUR_S, 140.0):
        logfmt(
            t,
            "warn",
            "acquirer/client.go:131",
            "acquirer slow response",
            latency_ms=rng.randrange(2001, 4200),
            threshold_ms=2000,
        )
    for t in (1555.2, 2890.7):
        logfmt(
            t,
            "warn",
            "acquirer/client.go:98",
            "acquirer call failed, retrying: POST https://api.acquirer.example/v2/authorizations "
            f"(Authorization: Bearer {BEARER})",
            attempt=1,
            status=502,
        )

    worker = s.container("payments", s.pod_name("payments-worker"), "worker")

    def celery(t: float, level: str, process: str, msg: str) -> None:
        s.emit(worker, t, f"[{py_time(t)}: {level}/{process}] {msg}")

    for t in ticks(rng, 0, HOUR_S, 30.0):
        task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        name = "payments.tasks.settle_batch"
        celery(t, "INFO", "MainProcess", f"Task {name}[{task_id}] received")
        celery(
            t + 0.8,
            "INFO",
            f"ForkPoolWorker-{rng.randrange(1, 5)}",
            f"Task {name}[{task_id}] succeeded in {rng.uniform(0.2, 2.5):.4f}s: "
            f"{{'settled': {rng.randrange(0, 40)}}}",
        )
    for t in (730.4, 1911.8, 3104.5):
        celery(
            t,
            "WARNING",
            "ForkPoolWorker-2",
            "webhook delivery to "
            "https://merchant-4411.example/hooks/payments failed: 410 Gone; giving up",
        )
    t = 2832.6
    task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    celery(
        t,
        "ERROR",
        "ForkPoolWorker-3",
        f"Task payments.tasks.send_receipt[{task_id}] raised unexpected: "
        "SMTPServerDisconnected('Connection unexpectedly closed')",
    )
    s.emit_block(
        worker,
        t + 0.0001,
        [
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.12/site-packages/celery/app/trace.py", line 453, '
            "in trace_task",
            "    R = retval = fun(*args, **kwargs)",
            '  File "/app/payments/tasks.py", line 212, in send_receipt',
            "    smtp.send_message(receipt)",
            '  File "/usr/local/lib/python3.12/smtplib.py", line 405, in getreply',
            '    raise SMTPServerDisconnected("Connection unexpectedly closed")',
            "smtplib.SMTPServerDisconnected: Connection unexpectedly closed",
        ],
    )


# --- monitoring -----------------------------------------------------------------------------


def k8s_event(
    t: float,
    namespace: str,
    kind: str,
    name: str,
    kind_of: str,
    reason: str,
    message: str,
    count: int,
    host: str,
) -> str:
    """One Kubernetes event as kubernetes-event-exporter prints it."""
    stamp = clock(t).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "metadata": {"name": f"{name}.{int(t * 1e6):x}", "namespace": namespace},
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": host},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": count,
            "type": kind_of,
            "involvedObject": {"kind": kind, "namespace": namespace, "name": name},
        },
        separators=(",", ":"),
    )


def gen_monitoring(s: Sample, shop_pods: dict[str, list[str]]) -> None:
    """Noise: Kubernetes events, Prometheus, Grafana and fluent-bit."""
    rng = s.rng
    events = s.container("monitoring", s.pod_name("event-exporter"), "event-exporter")

    def event(t: float, *args: Any) -> None:
        s.emit(events, t, k8s_event(t, *args))

    for t in ticks(rng, 0, HOUR_S, 600.0):
        job = f"backup-{int(t)}"
        event(
            t,
            "monitoring",
            "Pod",
            job,
            "Normal",
            "Scheduled",
            f"Successfully assigned monitoring/{job} to node-3",
            1,
            "node-3",
        )
        event(
            t + 2.0,
            "monitoring",
            "Pod",
            job,
            "Normal",
            "Started",
            "Started container backup",
            1,
            "node-3",
        )
        event(
            t + 41.0, "monitoring", "Pod", job, "Normal", "Completed", "Job completed", 1, "node-3"
        )
    unready = [*shop_pods["api"], *shop_pods["checkout"]]
    for i, pod in enumerate(unready):
        count = 0
        for t in ticks(rng, PG_CRASH_S + 10 + i, PG_READY_S + 10, 30.0):
            count += 1
            event(
                t,
                "shop",
                "Pod",
                pod,
                "Warning",
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                count,
                f"node-{i % 3 + 1}",
            )
    backoff = 0
    for t in ticks(rng, PG_RESTART_DOWN_S + 5, PG_FIXED_S, 60.0):
        backoff += 1
        event(
            t,
            "shop",
            "Pod",
            "postgres-0",
            "Warning",
            "BackOff",
            "Back-off restarting failed container postgres in pod postgres-0_shop",
            backoff,
            "node-1",
        )
    cart = shop_pods["cart"][0]
    event(
        CART_OOM_S + 11.2,
        "default",
        "Node",
        "node-2",
        "Warning",
        "OOMKilling",
        "Memory cgroup out of memory: Killed process 4127 (java) total-vm:4351232kB, "
        "anon-rss:1046872kB, file-rss:20440kB, shmem-rss:0kB, UID:1000 pgtables:2612kB "
        "oom_score_adj:936",
        1,
        "node-2",
    )
    event(
        CART_OOM_S + 12.0,
        "shop",
        "Pod",
        cart,
        "Warning",
        "BackOff",
        f"Back-off restarting failed container cart in pod {cart}_shop",
        1,
        "node-2",
    )
    event(
        CART_RESTART_S - 0.5,
        "shop",
        "Pod",
        cart,
        "Normal",
        "Started",
        "Started container cart",
        2,
        "node-2",
    )
    event(
        PG_FIXED_S - 40.0,
        "shop",
        "PersistentVolumeClaim",
        "data-postgres-0",
        "Normal",
        "FileSystemResizeSuccessful",
        'MountVolume.NodeExpandVolume succeeded for volume "pvc-8d1f0c2e" node-1',
        1,
        "node-1",
    )

    prom = s.container("monitoring", "prometheus-0", "prometheus")
    for t in ticks(rng, 0, HOUR_S, 120.0):
        line = (
            f"ts={iso_ms(t)} caller=head.go:1266 level=info component=tsdb "
            f'msg="Head GC completed" caller=truncateMemory duration={rng.uniform(5, 40):.3f}ms'
        )
        s.emit(prom, t, line, stream="stderr")
    for t in ticks(rng, PG_CRASH_S + 30, PG_READY_S, 240.0):
        line = (
            f"ts={iso_ms(t)} caller=notifier.go:530 level=info component=notifier "
            'msg="Sending alerts" alertname=KubePodCrashLooping count=1'
        )
        s.emit(prom, t, line, stream="stderr")

    grafana = s.container("monitoring", s.pod_name("grafana"), "grafana")
    # Someone watches the dashboards during the incident.
    for t in arrivals(rng, 0, HOUR_S, lambda t: 0.25 if 1260 < t < 3000 else 0.01):
        size = rng.randrange(300, 9000)
        line = (
            f"logger=context userId=1 orgId=1 uname=oncall t={iso_ms(t)} level=info "
            f'msg="Request Completed" method=GET path=/api/ds/query status=200 '
            f"remote_addr=10.42.2.7 time_ms={rng.randrange(8, 400)} size={size} "
            "handler=/api/ds/query"
        )
        s.emit(grafana, t, line)

    # A DaemonSet pod: no ReplicaSet hash in its name.
    bit = s.container("monitoring", f"fluent-bit-{s.suffix()}", "fluent-bit")

    def fb(t: float, level: str, msg: str) -> None:
        stamp = clock(t).strftime("%Y/%m/%d %H:%M:%S")
        s.emit(bit, t, f"[{stamp}] [{level:>5}] {msg}", stream="stderr")

    for t in ticks(rng, 0, HOUR_S, 90.0):
        fb(
            t,
            "info",
            f"[input:tail:tail.0] inotify_fs_add(): inode={rng.randrange(10**5, 10**6)} "
            f"watch_fd={rng.randrange(10, 80)} name=/var/log/containers/"
            f"{rng.choice(('api', 'cart', 'checkout', 'grafana'))}.log",
        )
    for t in (1408.3, 1421.9, 2777.0):
        chunk = f"1-{int(T0 / S + t)}.{rng.randrange(10**8, 10**9)}.flb"
        fb(
            t,
            "warn",
            f"[engine] failed to flush chunk '{chunk}', retry in "
            f"{rng.randrange(6, 12)} seconds: task_id=2, input=tail.0 > output=loki.0 (out_id=0)",
        )


# --- output -----------------------------------------------------------------------------------


def generate(out: Path) -> dict[str, Any]:
    """Write the sample under `out` and its README next to it; return the counts."""
    s = Sample(SEED)
    gen_postgres(s)
    gen_api(s)
    gen_checkout(s)
    gen_cart(s)
    gen_payments(s)
    shop_pods: dict[str, list[str]] = {}
    for ns, pod, container in s.containers:
        if ns == "shop":
            shop_pods.setdefault(container, []).append(pod)
    gen_monitoring(s, shop_pods)
    files = s.write(out)

    lines = 0
    size = 0
    root_cause = 0
    per_namespace: dict[str, int] = {}
    for path in files:
        data = path.read_bytes()
        n = data.count(b"\n")
        lines += n
        size += len(data)
        root_cause += data.count(ROOT_CAUSE_MARKER.encode())
        namespace = path.relative_to(out).parts[0].split("_", 1)[0]
        per_namespace[namespace] = per_namespace.get(namespace, 0) + n
    stats = {
        "files": len(files),
        "lines": lines,
        "bytes": size,
        "root_cause_lines": root_cause,
        "per_namespace": per_namespace,
        "pods": sorted(f"{ns}/{pod}" for ns, pod in s.pods),
    }
    (out.parent / "README.md").write_text(readme(stats, out.name))
    return stats


def readme(stats: dict[str, Any], out_name: str) -> str:
    """The sample's README: what happened, the ground truth, how it was made."""
    per_ns = "\n".join(f"| `{ns}` | {n:,} |" for ns, n in sorted(stats["per_namespace"].items()))
    pods = "\n".join(f"- `{pod}`" for pod in stats["pods"])
    return f"""# Sample incident: postgres runs out of disk

Generated by `python scripts/gen_sample_incident.py --out deploy/sample/{out_name}` (fixed
seed {SEED}; re-running gives byte-identical files, and `tests/unit/test_sample_incident.py`
checks that). Do not edit the files by hand: change the generator and re-run it.

## What is in it

One hour, 2026-11-24T10:00:00Z to 11:00:00Z, of pod logs in the kubelet layout
`{out_name}/<namespace>_<pod>_<uid>/<container>/<restart>.log`, CRI format
(`<RFC3339Nano> <stdout|stderr> <P|F> <text>`; lines over 16 KiB are split into `P` chunks
ending with an `F` chunk, as containerd does). A container that restarted has one file per
run: `0.log`, `1.log`, ...

{stats["lines"]:,} lines, {stats["bytes"]:,} bytes, {stats["files"]} files.

| namespace | lines |
|---|---|
{per_ns}

Pods:

{pods}

Formats: zap JSON (`shop/api`), Python logging, uvicorn access logs and tracebacks
(`shop/checkout`, `payments/worker`), Spring Boot with Java stack traces (`shop/cart`),
Postgres (`shop/postgres-0`), logfmt (`payments/payments-api`, Prometheus, Grafana),
Kubernetes events as JSON (`monitoring/event-exporter`), fluent-bit.

## Ground truth

**Root cause**: the data volume of `shop/postgres-0` fills up at 10:20:03
(`could not extend file "base/16384/16421": No space left on device`, then
`PANIC:  could not write to file "pg_wal/xlogtemp.2240": No space left on device`). Postgres
crashes, fails crash recovery for the same reason, is restarted at 10:20:17 and fails again
(`database system is shut down`), and stays down until the volume is expanded at 10:41:10;
it restarts at 10:41:50 and accepts connections again at 10:41:57. Only
{stats["root_cause_lines"]} lines contain "No space left on device". The only earlier hints are
three `checkpoints are occurring too frequently` lines (10:14 to 10:19).

**Consequences** (what most of the error lines are about):

- `shop/api` (2 replicas): thousands of `database call failed, retrying`, `query failed` and
  `request failed` (status 503) lines with `dial tcp {POSTGRES_IP}:5432: connect: connection
  refused` (or `FATAL: the database system is in recovery mode` while postgres recovers), and
  failing readiness checks.
- `shop/checkout`: `connection failed, retrying` warnings, `order creation failed` errors,
  503 responses and three chained psycopg tracebacks on stderr.
- `shop/cart`: queues failed writes and retries them all every 5 s (a retry storm); the heap
  fills (`java.lang.OutOfMemoryError: Java heap space` with stack traces at 10:33:41), the
  kernel OOM-kills the container (node event `OOMKilling`), and it restarts (`1.log`) still
  unable to reach postgres (`PSQLException ... Caused by: java.net.ConnectException`).
- `monitoring/event-exporter`: Kubernetes events `Readiness probe failed: HTTP probe failed
  with statuscode: 503` for the api and checkout pods, `Back-off restarting failed container`
  for postgres and cart, `OOMKilling`, and the volume resize.
- `payments/payments-api`: payment volume drops while checkout is failing.

**Unrelated noise** (not part of the incident): request, health-check and cache-hit INFO
lines everywhere; a duplicate-key error in postgres (10:06 and later); `acquirer slow
response` warnings and two `acquirer call failed` warnings in payments-api; `webhook delivery
... failed: 410 Gone` warnings and one `SMTPServerDisconnected` traceback in the payments
worker; fluent-bit `failed to flush chunk` warnings; Prometheus and Grafana INFO lines.

**Secrets to redact**: the postgres password in a DSN (`shop/checkout`, `database
unreachable (dsn=postgres://app:...@postgres:5432/shop)`) and in a JDBC URL (`shop/cart`,
`password=...`), and a bearer token (`payments/payments-api`, `Authorization: Bearer ...`).
They are fake.

## How it was generated

Each container is simulated separately from the timeline above: Poisson request arrivals
(rates rise during the outage as clients retry), periodic health checks, checkpoints and
jobs, and hand-written incident lines at fixed times. Records are sorted per container run,
timestamps are made strictly increasing, and each line gets a CRI prefix. The pod hashes,
uids, ids and jitter come from `random.Random({SEED})`.
"""


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("deploy/sample/pods"))
    args = parser.parse_args(argv)
    stats = generate(args.out)
    sys.stdout.write(
        f"wrote {stats['files']} files, {stats['lines']} lines, {stats['bytes']} bytes "
        f"under {args.out} ({stats['root_cause_lines']} root-cause lines)\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
