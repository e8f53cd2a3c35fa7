"""Database incidents: credentials, pools, disk, locks, connection limits."""

from __future__ import annotations

from eval.incidents.builder import Builder, go_log
from eval.incidents.common import (
    crash_loop_starts,
    java_trace,
    metrics_export_errors,
    nginx_favicon_errors,
    postgres_background,
)
from eval.incidents.formats import k8s_event, logfmt, postgres, pylog, slog, spring, zap
from eval.incidents.model import Case, Expected
from eval.incidents.spec import Spec, window
from eval.incidents.traffic import (
    Route,
    log_envoy,
    log_gunicorn,
    log_nginx,
    log_probes,
    probe_access,
    request_at,
    requests,
    spread,
)

# --- db-credentials-rotated -----------------------------------------------------------------

CREDS_PASSWORD = "S3cr3t-Pa55w0rd"
CREDS_DSN = f"postgres://app:{CREDS_PASSWORD}@db:5432/shop"
ORDERS_ROUTES = (
    Route("GET", "/api/orders/{id}", 5, ms=18),
    Route("GET", "/api/orders?customer_id={id}&limit=20", 3, ms=35, size=6000),
    Route("POST", "/api/orders", 1, ms=60, size=700),
    Route("GET", "/api/customers/{id}", 2, ms=12, size=900),
)


def gen_db_credentials(b: Builder) -> None:
    """The password is rotated mid-window; each pod fails once its pool needs new connections."""
    rng = b.rng
    rotate = 611.4
    web = b.pod(b.replicaset("web"))
    api = b.pods("orders-api", 2)
    pg = "postgres-0"
    postgres_background(b, pg, b.lo, b.hi)
    _rotator(b, rotate)
    broken: dict[str, float] = {}
    for pod in api:
        first_failure = _pool_connections(b, pod, pg, rotate)
        broken[pod] = first_failure + rng.uniform(40, 90)
        log_probes(b, pod, "api", b.lo, b.hi, 20.0, probe_access(b, "10.244.2.1"))
        for t in b.ticks(b.lo, b.hi, 370.0, jitter=0.4):
            evt = f"evt_{b.token(24, 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789')}"
            b.log(
                pod,
                "api",
                t,
                pylog(
                    b.at(t),
                    "ERROR",
                    "orders.webhooks",
                    f"stripe webhook signature verification failed for event {evt}: "
                    "No signatures found matching the expected signature for payload",
                ),
            )
    reqs = requests(b, b.lo, b.hi, 0.2, ORDERS_ROUTES)
    for pod, r in spread(reqs, api):
        if r.t >= broken[pod] or (r.t >= broken[pod] - 60 and rng.random() < 0.3):
            r.status, r.ms = 500, 30_000 + rng.uniform(2, 40)
            end = r.t + r.ms / 1000
            b.log(
                pod,
                "api",
                end,
                pylog(
                    b.at(end),
                    "ERROR",
                    "orders.api",
                    f"{r.method} {r.path.split('?')[0]} failed: QueuePool limit of size 5 "
                    "overflow 10 reached, connection timed out, timeout 30.00 "
                    "(Background on this error at: https://sqlalche.me/e/20/3o7r)",
                ),
            )
        elif r.ms > 40 and rng.random() < 0.2:
            took = r.ms / 1000 + 0.9
            msg = f"slow query ({took:.2f}s): SELECT * FROM orders WHERE customer_id = %s"
            b.log(pod, "api", r.t, pylog(b.at(r.t), "WARNING", "orders.db", msg))
        log_gunicorn(b, pod, "api", [r])
    log_nginx(b, web, "nginx", reqs, "10.96.31.7:8000")
    nginx_favicon_errors(b, web)


def _rotator(b: Builder, rotate: float) -> None:
    job = f"db-password-rotator-29368440-{b.token(5)}"
    steps = (
        (-2.1, "INFO", "starting rotation", [("role", "app"), ("secret", "orders/db-credentials")]),
        (-0.3, "INFO", "generated new password", [("length", 32)]),
        (0.0, "INFO", "password updated in database", [("role", "app"), ("host", "db")]),
        (0.6, "INFO", "secret updated", [("secret", "orders/db-credentials"), ("version", 8)]),
        (0.7, "INFO", "rotation complete", [("duration", "2.8s")]),
    )
    for dt, level, msg, pairs in steps:
        b.log(job, "rotator", rotate + dt, slog(b.at(rotate + dt), level, msg, *pairs))


def _pool_connections(b: Builder, pod: str, pg: str, rotate: float) -> float:
    """Connections recycled (pool_recycle=900) before `rotate`, failing logins after it.

    Returns when the first login failed.
    """
    rng = b.rng
    t = b.lo + rng.uniform(0, 200)
    while t < rotate:
        _open_connection(b, pod, t)
        t += rng.uniform(150, 260)
    first = t
    attempt, delay = 1, 1.0
    while t < b.hi:
        _open_connection(b, pod, t)
        pid = rng.randrange(20_000, 40_000)
        fail_at = t + rng.uniform(0.004, 0.02)
        b.block(
            pg,
            "postgres",
            fail_at,
            [
                postgres(
                    b.at(fail_at), pid, "FATAL", 'password authentication failed for user "app"'
                ),
                postgres(
                    b.at(fail_at),
                    pid,
                    "DETAIL",
                    'Connection matched file "/var/lib/postgresql/data/pg_hba.conf" line 128: '
                    '"host all all all scram-sha-256"',
                ),
            ],
        )
        b.log(
            pod,
            "api",
            fail_at + 0.01,
            pylog(
                b.at(fail_at + 0.01),
                "ERROR",
                "orders.db",
                f"connect attempt {attempt} failed: (psycopg2.OperationalError) connection to "
                'server at "db" (10.96.14.3), port 5432 failed: FATAL:  password '
                'authentication failed for user "app"',
            ),
        )
        attempt += 1
        t += delay
        delay = min(delay * 2, 120.0)
    return first


def _open_connection(b: Builder, pod: str, t: float) -> None:
    b.log(pod, "api", t, pylog(b.at(t), "INFO", "orders.db", f"opening connection to {CREDS_DSN}"))


DB_CREDENTIALS = Spec(
    Case(
        name="db-credentials-rotated",
        story=(
            "A CronJob rotated the database password of role app at 14:10; the Secret changed "
            "but the orders-api pods kept the old password. As the pool recycles connections "
            "each new login fails (password authentication failed), the pool runs dry and "
            "every request ends in QueuePool timeouts and 500s. Fix: restart the pods or "
            "reload the Secret."
        ),
        namespace="eval-db-creds",
        start=window("2026-11-03T14:00:00Z", 30)[0],
        end=window("2026-11-03T14:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r'password authentication failed for user "app"',
            cause_keywords=("password authentication failed",),
        ),
        forbidden=(CREDS_PASSWORD,),
        tags=("database", "postgres", "python", "secrets", "credentials"),
        approx_lines=2300,
        question="Why are orders requests failing with 500 since about 14:13?",
    ),
    gen_db_credentials,
)

# --- hikari-pool-exhausted ------------------------------------------------------------------

HIKARI_ROUTES = (
    Route("GET", "/api/orders/{id}", 6, ms=22),
    Route("GET", "/api/orders?status=OPEN&page=1", 2, ms=48, size=9000),
    Route("POST", "/api/orders", 2, ms=75, size=800),
    Route("PUT", "/api/orders/{id}/status", 1, ms=40, size=400),
)
SPRING_CONTROLLER = "com.acme.orders.web.OrderController"


def gen_hikari(b: Builder) -> None:
    """A new export endpoint keeps connections for minutes; the pool of 10 runs dry."""
    rng = b.rng
    exports_from, saturated = 902.0, 968.0
    gateway = b.pod(b.replicaset("gateway"))
    orders = b.pods("orders", 2)
    ips = {pod: b.pod_ip() for pod in orders}
    postgres_background(b, "postgres-0", b.lo, b.hi, database="orders")
    reqs = requests(b, b.lo, b.hi, 0.45, HIKARI_ROUTES)
    served = spread(reqs, orders)
    upstream = {r.rid: f"{ips[pod]}:8080" for pod, r in served}
    for pod, r in served:
        if r.t < saturated:
            _spring_request_log(b, pod, r.t, r.method, r.path, r.ms)
            continue
        wait = rng.uniform(12, 34)
        r.status, r.ms = 504, 15_000 + rng.uniform(0, 3)
        if wait >= 30:
            _hikari_timeout(b, pod, r.t + 30.0)
    for pod in orders:
        _pool_stats(b, pod, saturated)
        _erp_sync_errors(b, pod)
        for t in b.ticks(exports_from, b.hi, 40.0):
            _leak_warning(b, pod, t + 60.0)
    export = Route("GET", "/api/orders/export?from=2026-01-01")
    for i, t in enumerate(b.ticks(exports_from, b.hi, 20.0)):
        r = request_at(b, t, export, "10.244.5.31")
        r.ua, r.ms, r.status = "Metabase/v0.51.3", 15_000.0, 504
        upstream[r.rid] = f"{ips[orders[i % 2]]}:8080"
        reqs.append(r)
    reqs.sort(key=lambda r: r.t)
    log_envoy(
        b,
        gateway,
        reqs,
        "orders.eval-hikari.svc:8080",
        lambda r: upstream[r.rid],
        flags=lambda r: "UT" if r.status == 504 else "-",
    )


def _erp_sync_errors(b: Builder, pod: str) -> None:
    """A steady, unrelated error: the ERP sync job conflicts on some batches."""
    for t in b.ticks(b.lo, b.hi, 300.0, jitter=0.3):
        batch = b.rng.randrange(8000, 9000)
        msg = f"ERP sync failed for batch {batch}: 409 Conflict from http://erp.internal/api/orders"
        b.log(
            pod,
            "orders",
            t,
            spring(
                b.at(t), "ERROR", "scheduling-1", "com.acme.orders.sync.ErpSyncJob", msg, "orders"
            ),
        )


def _spring_request_log(b: Builder, pod: str, t: float, method: str, path: str, ms: float) -> None:
    thread = f"http-nio-8080-exec-{b.rng.randrange(1, 11)}"
    if method == "POST":
        msg = f"Order {b.rng.randrange(40_000, 90_000)} created in {ms:.0f} ms"
        b.log(pod, "orders", t, spring(b.at(t), "INFO", thread, SPRING_CONTROLLER, msg, "orders"))
    elif ms > 80:
        msg = f"Slow request {method} {path.split('?')[0]} took {ms:.0f} ms"
        b.log(pod, "orders", t, spring(b.at(t), "WARN", thread, SPRING_CONTROLLER, msg, "orders"))


def _pool_stats(b: Builder, pod: str, saturated: float) -> None:
    logger = "com.zaxxer.hikari.pool.HikariPool"
    for t in b.ticks(b.lo, b.hi, 30.0, jitter=0.01):
        if t < saturated:
            active = b.rng.randrange(0, 4)
            waiting = 0
        else:
            active = 10
            waiting = b.rng.randrange(8, 40)
        msg = (
            f"HikariPool-1 - Pool stats (total=10, active={active}, idle={10 - active}, "
            f"waiting={waiting})"
        )
        b.log(pod, "orders", t, spring(b.at(t), "DEBUG", "HikariPool-1 housekeeper", logger, msg))


def _leak_warning(b: Builder, pod: str, t: float) -> None:
    conn = f"org.postgresql.jdbc.PgConnection@{b.hex(8)}"
    thread = f"http-nio-8080-exec-{b.rng.randrange(1, 11)}"
    head = spring(
        b.at(t),
        "WARN",
        "HikariPool-1 housekeeper",
        "com.zaxxer.hikari.pool.ProxyLeakTask",
        f"Connection leak detection triggered for {conn} on thread {thread}, stack trace follows",
        "orders",
    )
    frames = java_trace(
        (
            "com.zaxxer.hikari.HikariDataSource.getConnection(HikariDataSource.java:127)",
            "org.springframework.jdbc.datasource.DataSourceUtils.fetchConnection"
            "(DataSourceUtils.java:160)",
            "org.springframework.jdbc.core.JdbcTemplate.query(JdbcTemplate.java:448)",
            "com.acme.orders.export.ExportRepository.streamAll(ExportRepository.java:88)",
            "com.acme.orders.export.ExportController.export(ExportController.java:61)",
        )
    )
    b.block(
        pod, "orders", t, [head, "java.lang.Exception: Apparent connection leak detected", *frames]
    )


def _hikari_timeout(b: Builder, pod: str, t: float) -> None:
    thread = f"http-nio-8080-exec-{b.rng.randrange(1, 11)}"
    waiting = b.rng.randrange(12, 40)
    hikari = (
        "HikariPool-1 - Connection is not available, request timed out after 30000ms "
        f"(total=10, active=10, idle=0, waiting={waiting})"
    )
    helper = "org.hibernate.engine.jdbc.spi.SqlExceptionHelper"
    b.log(pod, "orders", t, spring(b.at(t), "WARN", thread, helper, "SQL Error: 0, SQLState: null"))
    b.log(pod, "orders", t + 0.002, spring(b.at(t), "ERROR", thread, helper, hikari))
    head = spring(
        b.at(t + 0.002),
        "ERROR",
        thread,
        "org.apache.catalina.core.ContainerBase.[Tomcat].[localhost].[/].[dispatcherServlet]",
        "Servlet.service() for servlet [dispatcherServlet] in context with path [] threw "
        "exception [Request processing failed: org.springframework.transaction."
        "CannotCreateTransactionException: Could not open JPA EntityManager for transaction] "
        "with root cause",
        "orders",
    )
    frames = java_trace(
        (
            "com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:686)",
            "com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:179)",
            "com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:144)",
            "com.zaxxer.hikari.HikariDataSource.getConnection(HikariDataSource.java:127)",
            "org.hibernate.engine.jdbc.connections.internal.DatasourceConnectionProviderImpl"
            ".getConnection(DatasourceConnectionProviderImpl.java:122)",
            "org.springframework.orm.jpa.JpaTransactionManager.doBegin"
            "(JpaTransactionManager.java:420)",
            "com.acme.orders.service.OrderService$$SpringCGLIB$$0.findById(<generated>)",
            "com.acme.orders.web.OrderController.get(OrderController.java:47)",
        )
    )
    exc = f"java.sql.SQLTransientConnectionException: {hikari}"
    b.block(pod, "orders", t + 0.002, [head, "", exc, *frames])


HIKARI = Spec(
    Case(
        name="hikari-pool-exhausted",
        story=(
            "At 09:15 a BI tool starts calling the new /api/orders/export endpoint, which "
            "streams whole tables while holding a JDBC connection for minutes (Hikari's leak "
            "detector warns). The pool of 10 is exhausted from 09:16: requests queue for a "
            "connection, the gateway answers 504 after 15 s and some requests fail in the "
            "service with 'Connection is not available, request timed out after 30000ms'."
        ),
        namespace="eval-hikari",
        start=window("2026-11-05T09:00:00Z", 30)[0],
        end=window("2026-11-05T09:00:00Z", 30)[1],
        expected=Expected(
            # The leak detector names the cause (connections held for minutes) before the
            # pool runs dry; the pool timeout is its consequence: either is the answer.
            cause_pattern=r"Connection is not available, request timed out after"
            r"|Connection leak detection triggered",
            cause_keywords=("Connection is not available",),
        ),
        forbidden=(),
        tags=("database", "java", "spring", "hikaricp", "multiline", "gateway", "envoy"),
        approx_lines=3400,
        question="The gateway returns 504 for the orders API. What is going on?",
    ),
    gen_hikari,
)

# --- disk-full-postgres ---------------------------------------------------------------------

DISK_FULL_AT = 1203.4
DISK_FULL_FIXED = 2512.0
REL_FILE = 'could not extend file "base/16384/2619": No space left on device'
PG_IP = "10.244.2.17"


def _pg_state(t: float) -> str:
    """What clients of postgres see: `up`, `recovery` or `refused`."""
    if t < DISK_FULL_AT + 0.8:
        return "up"
    if t >= DISK_FULL_FIXED + 7.5:
        return "up"
    return "recovery" if t % 60 < 6 else "refused"


def gen_disk_full(b: Builder) -> None:
    """The data volume fills up; Postgres PANICs and crash-loops until the volume is grown."""
    pg = "postgres-0"
    api = b.pods("api", 2)
    worker = b.pod(b.replicaset("export-worker"))
    postgres_background(b, pg, b.lo, DISK_FULL_AT, database="shop")
    _pg_disk_full(b, pg)
    _export_worker(b, worker)
    for pod in api:
        _disk_full_api(b, pod)


def _pg_disk_full(b: Builder, pg: str) -> None:
    t = DISK_FULL_AT
    pid = 4127
    b.block(
        pg,
        "postgres",
        t,
        [
            postgres(b.at(t), pid, "ERROR", REL_FILE, "app@shop"),
            postgres(b.at(t), pid, "HINT", "Check free disk space.", "app@shop"),
            postgres(
                b.at(t),
                pid,
                "STATEMENT",
                "INSERT INTO invoice_lines (invoice_id, sku, qty, amount_cents) VALUES "
                "($1, $2, $3, $4), ($5, $6, $7, $8)",
                "app@shop",
            ),
        ],
    )
    lines = (
        (
            0.7,
            pid,
            "PANIC",
            'could not write to file "pg_wal/xlogtemp.4127": No space left on device',
            "app@shop",
        ),
        (0.75, 1, "LOG", "server process (PID 4127) was terminated by signal 6: Aborted", ""),
        (0.752, 1, "LOG", "terminating any other active server processes", ""),
        (0.79, 1, "LOG", "all server processes terminated; reinitializing", ""),
        (
            0.83,
            4190,
            "LOG",
            "database system was interrupted; last known up at 2026-11-09 22:17:41 UTC",
            "",
        ),
        (
            0.84,
            4190,
            "LOG",
            "database system was not properly shut down; automatic recovery in progress",
            "",
        ),
        (0.86, 4190, "LOG", "redo starts at 3/4A2B3C8", ""),
        (
            5.9,
            4190,
            "PANIC",
            'could not write to file "pg_wal/xlogtemp.4190": No space left on device',
            "",
        ),
        (5.95, 1, "LOG", "startup process (PID 4190) was terminated by signal 6: Aborted", ""),
        (5.952, 1, "LOG", "aborting startup due to startup process failure", ""),
        (5.97, 1, "LOG", "database system is shut down", ""),
    )
    for dt, p, level, msg, who in lines:
        b.log(pg, "postgres", t + dt, postgres(b.at(t + dt), p, level, msg, who), stream="stderr")
    starts = crash_loop_starts(t + 16.0, 7.0, DISK_FULL_FIXED)
    for run, start in enumerate(starts, start=1):
        _pg_crash_run(b, pg, run, start)
    _pg_recovered(b, pg, DISK_FULL_FIXED, len(starts) + 1)


def _pg_boot(b: Builder, pg: str, run: int, t: float) -> None:
    boot = (
        "starting PostgreSQL 16.4 (Debian 16.4-1.pgdg120+2) on x86_64-pc-linux-gnu, compiled "
        "by gcc (Debian 12.2.0-14) 12.2.0, 64-bit",
        'listening on IPv4 address "0.0.0.0", port 5432',
        'listening on Unix socket "/var/run/postgresql/.s.PGSQL.5432"',
    )
    for i, msg in enumerate(boot):
        at = t + 0.01 * i
        b.log(pg, "postgres", at, postgres(b.at(at), 1, "LOG", msg), stream="stderr", restart=run)


def _pg_crash_run(b: Builder, pg: str, run: int, t: float) -> None:
    _pg_boot(b, pg, run, t)
    pid = 30 + run
    steps = (
        (
            0.1,
            "LOG",
            "database system was interrupted while in recovery at 2026-11-09 22:20:09 UTC",
        ),
        (
            0.102,
            "HINT",
            "This probably means that some data is corrupted and you will have to "
            "use the last backup for recovery.",
        ),
        (0.12, "LOG", "database system was not properly shut down; automatic recovery in progress"),
        (0.14, "LOG", "redo starts at 3/4A2B3C8"),
        (6.1, "PANIC", f'could not write to file "pg_wal/xlogtemp.{pid}": No space left on device'),
    )
    for dt, level, msg in steps:
        at = t + dt
        b.log(pg, "postgres", at, postgres(b.at(at), pid, level, msg), stream="stderr", restart=run)
    for t2 in b.ticks(t + 0.3, t + 6.0, 0.6):
        b.log(
            pg,
            "postgres",
            t2,
            postgres(
                b.at(t2),
                b.rng.randrange(100, 900),
                "FATAL",
                "the database system is not yet accepting connections",
                "app@shop",
            ),
            stream="stderr",
            restart=run,
        )
    end = (
        (6.15, "LOG", f"startup process (PID {pid}) was terminated by signal 6: Aborted"),
        (6.152, "LOG", "aborting startup due to startup process failure"),
        (6.17, "LOG", "database system is shut down"),
    )
    for dt, level, msg in end:
        at = t + dt
        b.log(pg, "postgres", at, postgres(b.at(at), 1, level, msg), stream="stderr", restart=run)


def _pg_recovered(b: Builder, pg: str, t: float, run: int) -> None:
    _pg_boot(b, pg, run, t)
    steps = (
        (
            0.2,
            "LOG",
            "database system was interrupted while in recovery at 2026-11-09 22:40:51 UTC",
        ),
        (0.22, "LOG", "redo starts at 3/4A2B3C8"),
        (
            6.8,
            "LOG",
            "redo done at 3/4F9D1E0 system usage: CPU: user: 1.91 s, system: 0.88 s, "
            "elapsed: 6.57 s",
        ),
        (7.2, "LOG", "checkpoint starting: end-of-recovery immediate wait"),
        (
            7.4,
            "LOG",
            "checkpoint complete: wrote 4213 buffers (25.7%); 0 WAL file(s) added, "
            "3 removed, 0 recycled; write=0.151 s, sync=0.018 s, total=0.201 s",
        ),
        (7.5, "LOG", "database system is ready to accept connections"),
    )
    for dt, level, msg in steps:
        at = t + dt
        b.log(pg, "postgres", at, postgres(b.at(at), 52, level, msg), stream="stderr", restart=run)
    postgres_background(b, pg, t + 60, b.hi, database="shop", restart=run)


def _export_worker(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 45.0, jitter=0.3):
        task = f"export_invoices[{b.uuid()}]"
        state = _pg_state(t)
        if t < DISK_FULL_AT - 0.5 or state == "up":
            b.log(
                pod,
                "worker",
                t,
                pylog(
                    b.at(t),
                    "INFO",
                    "celery.app.trace",
                    f"Task {task} succeeded in {rng.uniform(0.4, 3.9):.3f}s",
                ),
            )
        elif state == "refused":
            b.log(
                pod,
                "worker",
                t,
                pylog(
                    b.at(t),
                    "ERROR",
                    "worker.db",
                    f'connection to server at "postgres" ({PG_IP}), port 5432 failed: '
                    "Connection refused; retrying in 10s",
                ),
            )
    t = DISK_FULL_AT + 0.04
    b.block(
        pod,
        "worker",
        t,
        [
            pylog(b.at(t), "ERROR", "worker.tasks", f"Task export_invoices[{b.uuid()}] failed"),
            "Traceback (most recent call last):",
            '  File "/app/worker/tasks.py", line 88, in export_invoices',
            "    execute_values(cur, INSERT_LINES, rows, page_size=500)",
            '  File "/usr/local/lib/python3.12/site-packages/psycopg2/extras.py", line 1299, '
            "in execute_values",
            "    cur.execute(b''.join(parts))",
            f"psycopg2.errors.DiskFull: {REL_FILE}",
        ],
    )


def _disk_full_api(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 10.0, jitter=0.05):
        state = _pg_state(t)
        if state == "up":
            line = zap(b.at(t), "info", "http/health.go:31", "readiness check ok")
        else:
            error = (
                f"dial tcp {PG_IP}:5432: connect: connection refused"
                if state == "refused"
                else "FATAL: the database system is not yet accepting connections (SQLSTATE 57P03)"
            )
            line = zap(
                b.at(t),
                "warn",
                "http/health.go:44",
                "readiness check failed",
                check="postgres",
                error=error,
            )
        b.log(pod, "api", t, line)
    for t in b.poisson(b.lo, b.hi, 0.15):
        path = rng.choice(("/api/products", "/api/products/{id}", "/api/cart", "/api/search"))
        path = path.replace("{id}", str(rng.randrange(100, 9999)))
        state = _pg_state(t)
        if state == "up":
            line = zap(
                b.at(t),
                "info",
                "http/middleware.go:64",
                "request served",
                method="GET",
                path=path,
                status=200,
                duration_ms=round(rng.uniform(2, 60), 1),
            )
        else:
            error = (
                f"dial tcp {PG_IP}:5432: connect: connection refused"
                if state == "refused"
                else "FATAL: the database system is in recovery mode (SQLSTATE 57P03)"
            )
            line = zap(
                b.at(t),
                "error",
                "store/postgres.go:112",
                "query failed",
                path=path,
                status=503,
                error=error,
            )
        b.log(pod, "api", t, line)


DISK_FULL = Spec(
    Case(
        name="db-disk-full",
        story=(
            "The Postgres data volume fills up at 22:20: an INSERT fails with 'could not extend "
            "file ... No space left on device', the WAL writer PANICs and Postgres crash-loops "
            "in recovery until the volume is expanded at 22:41. Meanwhile every client logs "
            "'connection refused' or 'in recovery mode'. Root cause: the disk is full, not the "
            "network."
        ),
        namespace="eval-disk-full",
        start=window("2026-11-09T22:00:00Z", 60)[0],
        end=window("2026-11-09T22:00:00Z", 60)[1],
        expected=Expected(
            cause_pattern=r"No space left on device",
            cause_keywords=("no space left",),
        ),
        forbidden=(),
        tags=("database", "postgres", "disk", "python", "multiline", "json", "restarts"),
        approx_lines=4100,
        question=None,
    ),
    gen_disk_full,
)

# --- timeout-chain-lock ---------------------------------------------------------------------

LOCK_AT = 841.2
LOCK_RELEASED = 1622.7


def gen_timeout_chain(b: Builder) -> None:
    """A migration's ALTER TABLE queues behind a long report; every payment query waits."""
    frontend = b.pod(b.replicaset("frontend"))
    checkout = b.pods("checkout", 2)
    payments = b.pods("payments", 2)
    pg = "postgres-0"
    postgres_background(b, pg, b.lo, b.hi, database="payments", tables=("payments", "refunds"))
    _migration(b, pg)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.35,
        (
            Route("GET", "/", 4, ms=8, size=14_000),
            Route("GET", "/static/js/app.{id}.js", 3, ms=2, size=180_000),
            Route("POST", "/api/checkout", 2, ms=180, size=600),
            Route("GET", "/api/cart", 3, ms=30, size=2000),
        ),
    )
    for i, r in enumerate(reqs):
        if r.path != "/api/checkout":
            continue
        c_pod, p_pod = checkout[i % 2], payments[i % 2]
        if LOCK_AT < r.t < LOCK_RELEASED:
            _stuck_checkout(b, r.t, c_pod, p_pod, pg)
            r.status, r.ms = 504, 8_000 + b.rng.uniform(0, 4)
            b.log(frontend, "nginx", r.t + 8, _nginx_504(b, r.t + 8), stream="stderr")
        else:
            b.log(
                c_pod,
                "checkout",
                r.t + r.ms / 1000,
                zap(
                    b.at(r.t + r.ms / 1000),
                    "info",
                    "checkout/handler.go:88",
                    "checkout completed",
                    order_id=b.rng.randrange(100_000, 999_999),
                    duration_ms=round(r.ms, 1),
                ),
            )
    log_nginx(b, frontend, "nginx", reqs, "10.96.22.4:8080")
    nginx_favicon_errors(b, frontend)
    metrics_export_errors(b, checkout[0], "checkout")
    for pod in payments:
        for t in b.ticks(b.lo, b.hi, 30.0, jitter=0.01):
            active = 10 if LOCK_AT + 40 < t < LOCK_RELEASED else b.rng.randrange(0, 3)
            b.log(
                pod,
                "payments",
                t,
                spring(
                    b.at(t),
                    "DEBUG",
                    "HikariPool-1 housekeeper",
                    "com.zaxxer.hikari.pool.HikariPool",
                    f"HikariPool-1 - Pool stats (total=10, active={active}, idle={10 - active}, "
                    f"waiting={0 if active < 10 else b.rng.randrange(1, 9)})",
                ),
            )


def _migration(b: Builder, pg: str) -> None:
    job = f"payments-migrate-{b.token(5)}"
    start = LOCK_AT - 1.6
    steps = (
        (0.0, "Flyway Community Edition 10.17.3 by Redgate"),
        (0.4, "Database: jdbc:postgresql://postgres:5432/payments (PostgreSQL 16.4)"),
        (0.5, 'Current version of schema "public": 41'),
        (0.6, 'Migrating schema "public" to version "42 - add risk score"'),
        (
            LOCK_RELEASED - start + 0.2,
            'Successfully applied 1 migration to schema "public", now at '
            f"version v42 (execution time {(LOCK_RELEASED - start) / 60:.0f}:"
            f"{(LOCK_RELEASED - start) % 60:06.3f}s)",
        ),
    )
    for dt, msg in steps:
        at = start + dt
        b.log(job, "migrate", at, msg)
    report_pid, mig_pid = 19876, 20411
    lock = (
        f"process {mig_pid} still waiting for AccessExclusiveLock on relation 16533 of "
        "database 16384 after 1000.089 ms"
    )
    b.block(
        pg,
        "postgres",
        LOCK_AT,
        [
            postgres(b.at(LOCK_AT), mig_pid, "LOG", lock, "flyway@payments"),
            postgres(
                b.at(LOCK_AT),
                mig_pid,
                "DETAIL",
                f"Process holding the lock: {report_pid}. Wait queue: {mig_pid}.",
                "flyway@payments",
            ),
            postgres(
                b.at(LOCK_AT),
                mig_pid,
                "STATEMENT",
                "ALTER TABLE payments ADD COLUMN risk_score integer NOT NULL DEFAULT 0",
                "flyway@payments",
            ),
        ],
    )
    done = LOCK_RELEASED
    b.log(
        pg,
        "postgres",
        done,
        postgres(
            b.at(done),
            mig_pid,
            "LOG",
            f"process {mig_pid} acquired AccessExclusiveLock on relation 16533 of database 16384 "
            f"after {(done - LOCK_AT + 1) * 1000:.3f} ms",
            "flyway@payments",
        ),
        stream="stderr",
    )
    b.log(
        pg,
        "postgres",
        done - 0.2,
        postgres(
            b.at(done - 0.2),
            report_pid,
            "LOG",
            f"duration: {(done - 0.2 - LOCK_AT + 420) * 1000:.3f} ms  statement: "
            "SELECT p.*, r.* FROM payments p "
            "LEFT JOIN refunds r ON r.payment_id = p.id WHERE p.created_at >= '2026-01-01'",
            "metabase@payments",
        ),
        stream="stderr",
    )


def _stuck_checkout(b: Builder, t: float, c_pod: str, p_pod: str, pg: str) -> None:
    rng = b.rng
    pid = rng.randrange(20_420, 29_000)
    waited = t + 1.0
    if rng.random() < 0.25:
        b.block(
            pg,
            "postgres",
            waited,
            [
                postgres(
                    b.at(waited),
                    pid,
                    "LOG",
                    f"process {pid} still waiting for RowExclusiveLock on relation 16533 of "
                    f"database 16384 after 1000.{rng.randrange(0, 999):03d} ms",
                    "payments@payments",
                ),
                postgres(
                    b.at(waited),
                    pid,
                    "DETAIL",
                    f"Process holding the lock: 19876. Wait queue: 20411, {pid}.",
                    "payments@payments",
                ),
                postgres(
                    b.at(waited),
                    pid,
                    "STATEMENT",
                    "INSERT INTO payments (order_id, amount_cents, currency, status) VALUES "
                    "($1, $2, $3, $4)",
                    "payments@payments",
                ),
            ],
        )
    deadline = t + 10.0
    b.log(
        c_pod,
        "checkout",
        deadline,
        zap(
            b.at(deadline),
            "error",
            "checkout/payments.go:57",
            "payment authorization failed",
            order_id=rng.randrange(100_000, 999_999),
            error='Post "http://payments:8080/v1/authorize": context deadline exceeded',
            trace_id=b.hex(32),
        ),
    )
    if rng.random() < 0.5:
        cancelled = t + 30.0
        b.log(
            pg,
            "postgres",
            cancelled,
            postgres(
                b.at(cancelled),
                pid,
                "ERROR",
                "canceling statement due to statement timeout",
                "payments@payments",
            ),
            stream="stderr",
        )
        thread = f"http-nio-8080-exec-{rng.randrange(1, 21)}"
        b.log(
            p_pod,
            "payments",
            cancelled + 0.01,
            spring(
                b.at(cancelled + 0.01),
                "ERROR",
                thread,
                "com.acme.payments.web.AuthorizeController",
                "authorize failed: org.springframework.dao.QueryTimeoutException: "
                "PreparedStatementCallback; "
                "ERROR: canceling statement due to statement timeout",
                "payments",
            ),
        )


def _nginx_504(b: Builder, t: float) -> str:
    return (
        f"{go_log(b.at(t))} [error] 29#29: *{b.rng.randrange(10_000, 99_999)} "
        "upstream timed out (110: Connection timed out) while reading response header from "
        'upstream, client: 10.244.0.1, server: shop.example.com, request: "POST /api/checkout '
        'HTTP/1.1", upstream: "http://10.96.22.4:8080/api/checkout", host: "shop.example.com"'
    )


TIMEOUT_CHAIN = Spec(
    Case(
        name="timeout-chain-lock",
        story=(
            "A Flyway migration runs ALTER TABLE payments at 11:14 and queues for an "
            "AccessExclusiveLock behind a long report query; every INSERT into payments "
            "queues behind the migration. payments times out its statements, checkout logs "
            "'context deadline exceeded' and the frontend answers 504 until the lock is "
            "released at 11:27. The innermost cause is the lock wait of the ALTER TABLE."
        ),
        namespace="eval-timeout-chain",
        start=window("2026-11-12T11:00:00Z", 30)[0],
        end=window("2026-11-12T11:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"still waiting for AccessExclusiveLock|ALTER TABLE payments",
            cause_keywords=("ALTER TABLE", "lock"),
        ),
        forbidden=(),
        tags=("database", "postgres", "timeouts", "microservices", "json", "java", "nginx"),
        approx_lines=2000,
        question="Checkout is timing out. Which service is the root cause?",
    ),
    gen_timeout_chain,
)

# --- pg-too-many-clients --------------------------------------------------------------------

SCALE_AT = 1312.0


def gen_too_many_clients(b: Builder) -> None:
    """The HPA scales the workers from 4 to 12; 12 pools of 20 exceed max_connections."""
    rng = b.rng
    pg = "postgres-0"
    rs = b.replicaset("ingest-worker")
    old = [b.pod(rs) for _ in range(4)]
    new = [b.pod(rs) for _ in range(8)]
    postgres_background(b, pg, b.lo, b.hi, database="events", tables=("events", "sessions"))
    hpa_pod = b.pod(b.replicaset("event-exporter"))
    for i in range(len(new)):
        t = SCALE_AT + 0.3 * i
        b.log(hpa_pod, "event-exporter", t, _hpa_event(b, t, i))
    for pod in old:
        _ingest_worker(b, pod, b.lo, fails_from=None)
    for i, pod in enumerate(new):
        _ingest_worker(b, pod, SCALE_AT + 8 + i * 1.7, fails_from=SCALE_AT + 9 + i * 1.7)
    for t in b.ticks(SCALE_AT + 9.5, b.hi, 6.0, jitter=0.6):
        if rng.random() < 0.5:
            pid = rng.randrange(3000, 9000)
            b.log(
                pg,
                "postgres",
                t,
                postgres(b.at(t), pid, "FATAL", "sorry, too many clients already", "ingest@events"),
                stream="stderr",
            )
    api = b.pods("events-api", 2)
    for pod in api:
        for t in b.poisson(b.lo, b.hi, 0.18):
            status = 200
            if t > SCALE_AT + 10 and rng.random() < 0.7:
                status = 500
                b.log(
                    pod,
                    "api",
                    t,
                    slog(
                        b.at(t),
                        "ERROR",
                        "query failed",
                        ("path", "/v1/sessions"),
                        (
                            "err",
                            "failed to connect to `user=api database=events`: 10.96.8.14:5432 "
                            "(postgres): server error: FATAL: remaining connection slots are "
                            "reserved "
                            "for roles with the SUPERUSER attribute (SQLSTATE 53300)",
                        ),
                    ),
                )
            b.log(
                pod,
                "api",
                t + 0.01,
                slog(
                    b.at(t + 0.01),
                    "INFO",
                    "request",
                    ("method", "GET"),
                    ("path", "/v1/sessions"),
                    ("status", status),
                    ("duration", f"{rng.uniform(3, 40):.1f}ms"),
                ),
            )


def _hpa_event(b: Builder, t: float, i: int) -> str:
    msg = (
        "New size: 12; reason: cpu resource utilization (percentage of request) above target"
        if i == 0
        else f"Created pod: ingest-worker-{b.token(9)}-{b.token(5)}"
    )
    return k8s_event(
        b.at(t),
        namespace=b.case.namespace,
        kind="HorizontalPodAutoscaler" if i == 0 else "ReplicaSet",
        name="ingest-worker",
        reason="SuccessfulRescale" if i == 0 else "SuccessfulCreate",
        message=msg,
        component="horizontal-pod-autoscaler" if i == 0 else "replicaset-controller",
    )


def _ingest_worker(b: Builder, pod: str, start: float, fails_from: float | None) -> None:
    rng = b.rng
    if start > b.lo:
        b.log(
            pod,
            "worker",
            start,
            logfmt(
                [
                    ("level", "info"),
                    ("msg", "starting ingest-worker"),
                    ("version", "1.19.2"),
                    ("pool_max_conns", 20),
                    ("database", "events"),
                ]
            ),
        )
    if fails_from is not None:
        for k, t in enumerate(b.ticks(fails_from, b.hi, 45.0, jitter=0.5)):
            if k > 3:
                break
            b.log(
                pod,
                "worker",
                t,
                logfmt(
                    [
                        ("level", "error"),
                        ("msg", "connect failed"),
                        (
                            "err",
                            "failed to connect to `user=ingest database=events`: 10.96.8.14:5432 "
                            "(postgres): server error: FATAL: sorry, too many clients already "
                            "(SQLSTATE 53300)",
                        ),
                        ("retry_in", "5s"),
                    ]
                ),
            )
    for t in b.ticks(max(start, b.lo), b.hi, 15.0, jitter=0.3):
        if t > SCALE_AT + 10 and rng.random() < 0.6:
            b.log(
                pod,
                "worker",
                t,
                logfmt(
                    [
                        ("level", "warn"),
                        ("msg", "batch insert slow, pool saturated"),
                        ("pending", rng.randrange(200, 4000)),
                        ("acquire_wait", f"{rng.uniform(2, 9):.1f}s"),
                    ]
                ),
            )
        else:
            b.log(
                pod,
                "worker",
                t,
                logfmt(
                    [
                        ("level", "info"),
                        ("msg", "batch committed"),
                        ("rows", rng.randrange(200, 900)),
                        ("took", f"{rng.uniform(20, 180):.0f}ms"),
                    ]
                ),
            )


TOO_MANY_CLIENTS = Spec(
    Case(
        name="pg-too-many-clients",
        story=(
            "At 16:21 the HPA scales ingest-worker from 4 to 12 replicas. Each replica opens a "
            "pool of up to 20 connections, so Postgres (max_connections=200) refuses new "
            "logins with 'sorry, too many clients already'; events-api then cannot connect "
            "either and answers 500. Fix: lower the pool size or put PgBouncer in front."
        ),
        namespace="eval-pg-max-conn",
        start=window("2026-11-16T16:00:00Z", 30)[0],
        end=window("2026-11-16T16:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"sorry, too many clients already",
            cause_keywords=("too many clients",),
        ),
        forbidden=(),
        tags=("database", "postgres", "logfmt", "autoscaling", "go"),
        approx_lines=2800,
        question="Why do events-api requests fail since the traffic peak?",
    ),
    gen_too_many_clients,
)

SPECS = (DB_CREDENTIALS, HIKARI, DISK_FULL, TIMEOUT_CHAIN, TOO_MANY_CLIENTS)
