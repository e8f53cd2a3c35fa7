"""Workload incidents: OOM kills, bad images, crash loops after a deploy."""

from __future__ import annotations

from eval.incidents.builder import Builder, iso
from eval.incidents.common import (
    Events,
    crash_loop_starts,
    metrics_export_errors,
    nginx_favicon_errors,
    watcher_line,
)
from eval.incidents.formats import gunicorn_log, logfmt, pylog, slog, zap
from eval.incidents.model import Case, Expected
from eval.incidents.spec import Spec, window
from eval.incidents.traffic import (
    Request,
    Route,
    log_envoy,
    log_gunicorn,
    log_nginx,
    log_probes,
    probe_access,
    requests,
    spread,
)

# --- oom-restart-loop -----------------------------------------------------------------------

OOM_LEAK_AT = 1210.0
LIMIT_MIB = 2048
THUMB_IMAGE = "registry.example.com/media/thumbnailer:1.12.4"


def gen_oom(b: Builder) -> None:
    """A batch of huge TIFFs makes the thumbnailer grow to its 2 GiB limit, again and again."""
    thumb = b.pod(b.replicaset("thumbnailer"))
    watcher = b.pod(b.replicaset("pod-watcher"))
    events = Events.start(b)
    runs = _oom_runs(b)
    for restart, (start, killed) in enumerate(runs):
        _thumbnailer_run(b, thumb, restart, start, killed)
        if killed < b.hi:
            b.log(
                watcher,
                "watcher",
                killed + 0.8,
                watcher_line(b, thumb, "thumbnailer", "OOMKilled", 137),
            )
        if restart + 1 < len(runs):
            nxt = runs[restart + 1][0]
            if restart >= 1:
                events.backoff(killed + 1.5, thumb, "thumbnailer", restart, runs[1][1] + 1.5)
            events.container_start(nxt - 0.5, thumb, "thumbnailer", THUMB_IMAGE)
    for t in b.ticks(b.lo, b.hi, 300.0, jitter=0.05):
        b.log(
            watcher,
            "watcher",
            t,
            logfmt(
                [
                    ("level", "info"),
                    ("msg", "resync done"),
                    ("pods", 9),
                    ("namespace", b.case.namespace),
                ]
            ),
        )
    down = [(k, runs[i + 1][0] + 4) for i, (_, k) in enumerate(runs[:-1])]
    for pod in b.pods("uploader", 2):
        _uploader(b, pod, down)


def _oom_runs(b: Builder) -> list[tuple[float, float]]:
    """(start, OOM kill time) of each container run; the last one is never killed."""
    grow = 5.5  # MiB/s while the re-render batch is being processed
    first_kill = OOM_LEAK_AT + (LIMIT_MIB - 430) / grow
    runs = [(b.lo - 4000.0, first_kill)]
    delay = 0.0
    while True:
        start = runs[-1][1] + 1.2 + delay
        kill = start + 25 + (LIMIT_MIB - 90) / (grow * b.rng.uniform(0.95, 1.1))
        if kill >= b.hi:
            runs.append((start, b.hi + 1))
            return runs
        runs.append((start, kill))
        delay = 10.0 if delay == 0 else min(delay * 2, 300.0)


def _memory(t: float, start: float, restart: int) -> float:
    """Heap in MiB at `t` of the run that started at `start`."""
    if restart == 0 and t < OOM_LEAK_AT:
        return 430.0
    base = 430.0 if restart == 0 else 90.0
    origin = OOM_LEAK_AT if restart == 0 else start + 25
    return base + max(0.0, t - origin) * 5.5


def _thumbnailer_run(b: Builder, pod: str, restart: int, start: float, killed: float) -> None:
    rng = b.rng
    c = "thumbnailer"
    if start > b.lo:
        boot: tuple[tuple[str, str, str, dict[str, object]], ...] = (
            ("info", "main.go:48", "starting thumbnailer", {"version": "1.12.4", "workers": 4}),
            ("info", "queue/redis.go:61", "connected to queue", {"addr": "redis:6379"}),
            (
                "info",
                "queue/consumer.go:88",
                "resuming pending jobs",
                {"pending": rng.randrange(900, 2400)},
            ),
        )
        for i, (level, caller, msg, fields) in enumerate(boot):
            at = start + 0.05 * i
            b.log(pod, c, at, zap(b.at(at), level, caller, msg, **fields), restart=restart)
    lo, hi = max(start, b.lo), min(killed, b.hi)
    for t in b.poisson(lo, hi, 0.12):
        heavy = t >= OOM_LEAK_AT and rng.random() < 0.6
        source = (
            f"uploads/2026/11/{b.hex(12)}.tiff" if heavy else f"uploads/2026/11/{b.hex(12)}.jpg"
        )
        b.log(
            pod,
            c,
            t,
            zap(
                b.at(t),
                "info",
                "render/worker.go:133",
                "thumbnail generated",
                job_id=b.hex(16),
                source=source,
                sizes=[64, 256, 1024],
                took_ms=rng.randrange(2400, 9000) if heavy else rng.randrange(40, 400),
            ),
            restart=restart,
        )
    t = lo + rng.uniform(0, 30)
    while t < hi:
        mem = _memory(t, start, restart) * rng.uniform(0.98, 1.02)
        if mem >= LIMIT_MIB:
            break
        _memstats(b, pod, restart, t, mem)
        t += 10.0 if mem > 0.75 * LIMIT_MIB else 30.0


def _memstats(b: Builder, pod: str, restart: int, t: float, mem: float) -> None:
    c = "thumbnailer"
    b.log(
        pod,
        c,
        t,
        zap(
            b.at(t),
            "info",
            "runtime/stats.go:29",
            "memstats",
            heap_alloc_mib=round(mem),
            rss_mib=round(mem * 1.09 + 14),
            goroutines=b.rng.randrange(40, 70),
            gc_cycles=b.rng.randrange(80, 9000),
            limit_mib=LIMIT_MIB,
        ),
        restart=restart,
    )
    if mem > 0.8 * LIMIT_MIB:
        b.log(
            pod,
            c,
            t + 0.001,
            zap(
                b.at(t),
                "warn",
                "runtime/stats.go:41",
                "heap usage above 80% of memory limit",
                heap_alloc_mib=round(mem),
                limit_mib=LIMIT_MIB,
            ),
            restart=restart,
        )


def _uploader(b: Builder, pod: str, down: list[tuple[float, float]]) -> None:
    rng = b.rng
    log_probes(b, pod, "uploader", b.lo, b.hi, 30.0, probe_access(b, "10.244.3.1"))
    routes = (
        Route("GET", "/v1/images/{id}/thumb?size=256", 5, ms=35, size=24_000),
        Route("POST", "/v1/images", 1, ms=220, size=300),
    )
    for r in requests(b, b.lo, b.hi, 0.1, routes):
        if down and r.method == "GET" and r.t > down[0][0]:
            unavailable = any(a <= r.t < z for a, z in down)
            if unavailable or rng.random() < 0.75:
                _thumb_failure(b, pod, r, unavailable)
        log_gunicorn(b, pod, "uploader", [r])


def _thumb_failure(b: Builder, pod: str, r: Request, unavailable: bool) -> None:
    if unavailable:
        r.status, r.ms = 503, 3.0
        msg = (
            f"thumbnail request failed for {r.path.split('?')[0]}: "
            "HTTPConnectionPool(host='thumbnailer', port=8080): Max retries exceeded "
            "(Caused by NewConnectionError: Failed to establish a new connection: "
            "[Errno 111] Connection refused)"
        )
    else:
        r.status, r.ms = 504, 10_000.0
        msg = f"thumbnail request timed out after 10s for {r.path.split('?')[0]}"
    b.log(
        pod,
        "uploader",
        r.t + r.ms / 1000,
        pylog(b.at(r.t + r.ms / 1000), "ERROR", "uploader.thumbs", msg),
    )


OOM = Spec(
    Case(
        name="oom-restart-loop",
        story=(
            "From 03:20 a re-render batch of large TIFFs makes the thumbnailer's heap grow by "
            "about 5 MiB/s; at its 2 GiB limit the container is OOMKilled (exit code 137) and "
            "restarts, resumes the same jobs and is killed again (Back-off restarting failed "
            "container). The uploader's thumbnail requests time out or are refused in the "
            "meantime. The root cause is the OOM kill from memory growth, not the uploader."
        ),
        namespace="eval-oom",
        start=window("2026-11-07T03:00:00Z", 60)[0],
        end=window("2026-11-07T03:00:00Z", 60)[1],
        expected=Expected(cause_pattern=r"reason=OOMKilled", cause_keywords=("OOMKilled",)),
        forbidden=(),
        tags=("oom", "restarts", "json", "go", "python", "events", "logfmt"),
        approx_lines=3400,
        question="Thumbnails are failing. Why?",
    ),
    gen_oom,
)

# --- image-pull-error -----------------------------------------------------------------------

IMAGE = "registry.example.com/shop/api:v2.3.1"
DEPLOY_AT = 603.0


def gen_image_pull(b: Builder) -> None:
    """A deploy references a tag that was never pushed; with Recreate the API is gone."""
    gateway = b.pod(b.replicaset("gateway"))
    old = b.pods("api", 2)
    new = b.pods("api", 2)
    ips = {pod: b.pod_ip() for pod in old}
    events = Events.start(b)
    _deploy_events(b, events, old, new)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.4,
        (
            Route("GET", "/api/products/{id}", 5, ms=15),
            Route("GET", "/api/search?q=shoes&page=2", 2, ms=70),
            Route("POST", "/api/cart/items", 1, ms=30, size=400),
        ),
    )
    served = spread(reqs, old)
    upstream = {r.rid: f"{ips[pod]}:8080" for pod, r in served}
    for pod, r in served:
        if r.t >= DEPLOY_AT:
            r.status, r.ms = 503, 0.2
            continue
        b.log(
            pod,
            "api",
            r.t,
            slog(
                b.at(r.t),
                "INFO",
                "request",
                ("method", r.method),
                ("path", r.path),
                ("status", r.status),
                ("duration", f"{r.ms:.1f}ms"),
                ("request_id", r.rid),
            ),
        )
    for pod in old:
        b.log(
            pod,
            "api",
            DEPLOY_AT + 0.2,
            slog(
                b.at(DEPLOY_AT + 0.2),
                "INFO",
                "received signal, shutting down",
                ("signal", "terminated"),
            ),
        )
        b.log(
            pod,
            "api",
            DEPLOY_AT + 1.3,
            slog(b.at(DEPLOY_AT + 1.3), "INFO", "server stopped", ("inflight", 0)),
        )
    log_envoy(
        b,
        gateway,
        reqs,
        "api.eval-image-pull.svc:8080",
        lambda r: upstream[r.rid],
        flags=lambda r: "UH" if r.status == 503 else "-",
    )


def _deploy_events(b: Builder, events: Events, old: list[str], new: list[str]) -> None:
    t = DEPLOY_AT
    rs_new = new[0].rsplit("-", 1)[0]
    rs_old = old[0].rsplit("-", 1)[0]
    events.emit(
        t - 0.2,
        "Deployment",
        "api",
        "ScalingReplicaSet",
        f"Scaled down replica set {rs_old} from 2 to 0",
        component="deployment-controller",
    )
    for pod in old:
        events.emit(t, "Pod", pod, "Killing", "Stopping container api")
    events.emit(
        t + 2.0,
        "Deployment",
        "api",
        "ScalingReplicaSet",
        f"Scaled up replica set {rs_new} from 0 to 2",
        component="deployment-controller",
    )
    for i, pod in enumerate(new):
        start = t + 2.1 + i * 0.2
        events.emit(
            start,
            "ReplicaSet",
            rs_new,
            "SuccessfulCreate",
            f"Created pod: {pod}",
            component="replicaset-controller",
        )
        events.emit(
            start + 0.1,
            "Pod",
            pod,
            "Scheduled",
            f"Successfully assigned {b.case.namespace}/{pod} to node-{3 + i}",
            component="default-scheduler",
        )
        _pull_attempts(b, events, pod, start + 0.8)


def _pull_attempts(b: Builder, events: Events, pod: str, first: float) -> None:
    attempt, t, delay = 1, first, 10.0
    backoff_count = 0
    while t < b.hi:
        events.emit(
            t, "Pod", pod, "Pulling", f'Pulling image "{IMAGE}"', count=attempt, first=first
        )
        failed = t + b.rng.uniform(0.3, 0.9)
        events.emit(
            failed,
            "Pod",
            pod,
            "Failed",
            f'Failed to pull image "{IMAGE}": rpc error: code = Unknown desc = reading '
            "manifest v2.3.1 in registry.example.com/shop/api: manifest unknown: "
            "manifest unknown",
            warning=True,
            count=attempt,
            first=first + 0.5,
        )
        events.emit(
            failed + 0.01,
            "Pod",
            pod,
            "Failed",
            "Error: ErrImagePull",
            warning=True,
            count=attempt,
            first=first + 0.5,
        )
        nxt = failed + delay
        for tick in b.ticks(failed + 1, min(nxt, b.hi), 15.0):
            backoff_count += 1
            events.emit(
                tick,
                "Pod",
                pod,
                "BackOff",
                f'Back-off pulling image "{IMAGE}"',
                count=backoff_count,
                first=first + 1.5,
            )
            events.emit(
                tick + 0.01,
                "Pod",
                pod,
                "Failed",
                "Error: ImagePullBackOff",
                warning=True,
                count=backoff_count,
                first=first + 1.5,
            )
        attempt += 1
        t = nxt
        delay = min(delay * 2, 300.0)


IMAGE_PULL = Spec(
    Case(
        name="image-pull-error",
        story=(
            "The 15:40 deploy of api points at registry.example.com/shop/api:v2.3.1, a tag CI "
            "never pushed. The Deployment uses the Recreate strategy, so the old pods are "
            "stopped first; the new ones cannot pull the image (manifest unknown, ErrImagePull, "
            "ImagePullBackOff) and the gateway answers 503 'no healthy upstream' for everything. "
            "Fix: push the tag or roll back."
        ),
        namespace="eval-image-pull",
        start=window("2026-11-10T15:30:00Z", 30)[0],
        end=window("2026-11-10T15:30:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"Failed to pull image .*manifest unknown",
            cause_keywords=("v2.3.1", "manifest unknown"),
        ),
        forbidden=(),
        tags=("deploy", "image", "events", "envoy", "logfmt"),
        approx_lines=2800,
        question="Everything behind the gateway returns 503 since 15:40. What happened?",
    ),
    gen_image_pull,
)

# --- missing-config-key ---------------------------------------------------------------------

CONFIG_DEPLOY_AT = 419.0
SMTP_PASSWORD = "Xk9-vP2q-Lm7r-Tz4w"


def gen_missing_config(b: Builder) -> None:
    """billing 2.9.0 requires DATABASE_URL, the manifest does not set it: crash loop."""
    old = b.pod(b.replicaset("billing"))
    new = b.pod(b.replicaset("billing"))
    events = Events.start(b)
    _billing_old(b, old)
    starts = crash_loop_starts(CONFIG_DEPLOY_AT + 3.0, 0.3, b.hi)
    for restart, start in enumerate(starts):
        _billing_boot(b, new, restart, start)
        if restart >= 1:
            events.backoff(start - 0.5, new, "billing", restart, starts[1] - 0.5)
        events.container_start(
            start - 0.2, new, "billing", "registry.example.com/finance/billing:2.9.0"
        )
    for pod in b.pods("invoice-worker", 2):
        _invoice_worker(b, pod)


def _billing_old(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.poisson(b.lo, CONFIG_DEPLOY_AT, 0.25):
        pairs: list[tuple[str, str | int | float | bool | None]] = [
            ("level", "info"),
            ("msg", "charge created"),
            ("invoice_id", f"inv_{b.hex(12)}"),
            ("amount_cents", rng.randrange(500, 90_000)),
            ("currency", rng.choice(("EUR", "EUR", "USD", "GBP"))),
            ("idempotency_key", b.uuid()),
            ("duration_ms", rng.randrange(20, 180)),
        ]
        b.log(pod, "billing", t, logfmt(pairs))
    for t in b.ticks(b.lo, CONFIG_DEPLOY_AT, 60.0):
        b.log(
            pod,
            "billing",
            t,
            logfmt(
                [
                    ("level", "debug"),
                    ("msg", "db pool stats"),
                    ("open", 4),
                    ("in_use", rng.randrange(0, 3)),
                    ("idle", 2),
                ]
            ),
        )
    b.log(
        pod,
        "billing",
        CONFIG_DEPLOY_AT,
        logfmt([("level", "info"), ("msg", "shutting down"), ("signal", "terminated")]),
    )


def _billing_boot(b: Builder, pod: str, restart: int, t: float) -> None:
    lines = (
        'level=info msg="starting billing-api" version=2.9.0 commit=4be1c07 go=go1.23.4',
        'level=info msg="config loaded" source=env keys=14',
        'level=debug msg="using default for optional config" key=LOG_LEVEL default=info',
        'level=debug msg="smtp settings" host=smtp.mailgun.org port=587 '
        f"user=billing@mg.example.com password={SMTP_PASSWORD}",
        'level=fatal msg="missing required config" key=DATABASE_URL '
        'hint="set DATABASE_URL in the deployment"',
    )
    for i, line in enumerate(lines):
        b.log(pod, "billing", t + 0.004 * i, line, stream="stderr", restart=restart)


def _invoice_worker(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 8.0, jitter=0.4):
        invoice = f"inv_{b.hex(12)}"
        if t < CONFIG_DEPLOY_AT:
            b.log(
                pod,
                "worker",
                t,
                logfmt(
                    [
                        ("level", "info"),
                        ("msg", "invoice charged"),
                        ("invoice_id", invoice),
                        ("took", f"{rng.randrange(30, 200)}ms"),
                    ]
                ),
            )
            continue
        for attempt in (1, 2, 3):
            at = t + (attempt - 1) * 0.5
            b.log(
                pod,
                "worker",
                at,
                logfmt(
                    [
                        ("level", "error"),
                        ("msg", "billing call failed"),
                        ("invoice_id", invoice),
                        ("attempt", attempt),
                        (
                            "err",
                            'Post "http://billing:8080/v1/charges": dial tcp 10.96.45.12:8080: '
                            "connect: connection refused",
                        ),
                    ]
                ),
            )
        b.log(
            pod,
            "worker",
            t + 1.1,
            logfmt(
                [
                    ("level", "warn"),
                    ("msg", "invoice requeued"),
                    ("invoice_id", invoice),
                    ("retry_in", "60s"),
                ]
            ),
        )


MISSING_CONFIG = Spec(
    Case(
        name="missing-config-key",
        story=(
            "billing 2.9.0 is deployed at 08:07 with the Recreate strategy. The new version "
            "requires DATABASE_URL, which the Deployment does not set, so the container exits "
            "right after start ('missing required config' key=DATABASE_URL) and crash-loops. "
            "The invoice workers flood the logs with 'connection refused' against billing."
        ),
        namespace="eval-missing-config",
        start=window("2026-11-13T08:00:00Z", 30)[0],
        end=window("2026-11-13T08:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"missing required config",
            cause_keywords=("DATABASE_URL",),
        ),
        forbidden=(SMTP_PASSWORD,),
        tags=("deploy", "config", "logfmt", "crashloop", "restarts", "secrets", "events"),
        approx_lines=2600,
        question="Invoices are not being charged. What broke?",
    ),
    gen_missing_config,
)

# --- go-nil-panic ---------------------------------------------------------------------------

PANIC_DEPLOY_AT = 797.0


def gen_go_panic(b: Builder) -> None:
    """ledger 1.8.0 starts a cache warmer that dereferences a nil cache: crash loop."""
    gateway = b.pod(b.replicaset("gateway"))
    old = b.pods("ledger", 2)
    new = b.pods("ledger", 2)
    events = Events.start(b)
    ips = {pod: b.pod_ip() for pod in [*old, *new]}
    alive: dict[str, list[tuple[float, float]]] = {}
    for i, pod in enumerate(new):
        starts = crash_loop_starts(PANIC_DEPLOY_AT + 1.5 * i, 6.5, b.hi)
        alive[pod] = [(s, s + 6.5) for s in starts]
        for restart, start in enumerate(starts):
            _ledger_crash_run(b, pod, restart, start)
            if restart >= 1:
                events.backoff(start - 0.4, pod, "ledger", restart, starts[1] - 0.4)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.4,
        (
            Route("GET", "/v1/accounts/{id}/balance", 6, ms=9),
            Route("POST", "/v1/transfers", 2, ms=45, size=500),
            Route("GET", "/v1/accounts/{id}/entries", 2, ms=30),
        ),
    )
    upstream: dict[str, str] = {}
    for i, r in enumerate(reqs):
        pod = old[i % 2] if r.t < PANIC_DEPLOY_AT + 4 else new[i % 2]
        upstream[r.rid] = f"{ips[pod]}:8080"
        if pod in old:
            _ledger_request(b, pod, r)
        elif any(a + 0.3 < r.t < z for a, z in alive[pod]):
            _ledger_request(b, pod, r, restart=_run_of(alive[pod], r.t))
        else:
            r.status, r.ms = 503, 1.0
    for pod in old:
        metrics_export_errors(b, pod, "ledger", until=PANIC_DEPLOY_AT + 4)
        for t in b.ticks(b.lo, PANIC_DEPLOY_AT + 4, 60.0):
            b.log(
                pod,
                "ledger",
                t,
                zap(
                    b.at(t),
                    "info",
                    "cache/balance.go:88",
                    "balance cache warmed",
                    accounts=b.rng.randrange(9000, 9900),
                    took_ms=b.rng.randrange(300, 900),
                ),
            )
        b.log(
            pod,
            "ledger",
            PANIC_DEPLOY_AT + 4.2,
            zap(b.at(PANIC_DEPLOY_AT + 4.2), "info", "server/server.go:201", "shutting down"),
        )
    log_envoy(
        b,
        gateway,
        reqs,
        "ledger.eval-go-panic.svc:8080",
        lambda r: upstream[r.rid],
        flags=lambda r: "UF,URX" if r.status == 503 else "-",
    )


def _run_of(runs: list[tuple[float, float]], t: float) -> int:
    return next(i for i, (a, z) in enumerate(runs) if a <= t < z)


def _ledger_request(b: Builder, pod: str, r: Request, restart: int = 0) -> None:
    b.log(
        pod,
        "ledger",
        r.t + r.ms / 1000,
        zap(
            b.at(r.t + r.ms / 1000),
            "info",
            "server/middleware.go:52",
            "request",
            method=r.method,
            path=r.path,
            status=r.status,
            duration_ms=round(r.ms, 2),
            request_id=r.rid,
        ),
        restart=restart,
    )


def _ledger_crash_run(b: Builder, pod: str, restart: int, t: float) -> None:
    boot: tuple[tuple[str, str, dict[str, object]], ...] = (
        ("main.go:37", "starting ledger", {"version": "1.8.0", "commit": "9d0c4e1"}),
        ("store/postgres.go:44", "connected to database", {"host": "postgres", "pool": 20}),
        ("server/server.go:118", "listening", {"addr": ":8080"}),
    )
    for i, (caller, msg, fields) in enumerate(boot):
        at = t + 0.08 * i
        b.log(pod, "ledger", at, zap(b.at(at), "info", caller, msg, **fields), restart=restart)
    addr = b.rng.choice(("0x30", "0x28"))
    b.block(
        pod,
        "ledger",
        t + 6.4,
        [
            "panic: runtime error: invalid memory address or nil pointer dereference",
            f"[signal SIGSEGV: segmentation violation code=0x1 addr={addr} pc=0x7b4e1a]",
            "",
            "goroutine 41 [running]:",
            "github.com/acme/ledger/internal/cache.(*BalanceCache).Warm("
            "0x0, {0xa1c3e0, 0xc000212000})",
            "\t/src/internal/cache/balance.go:57 +0x3a",
            "github.com/acme/ledger/internal/server.(*Server).startWarmers.func1()",
            "\t/src/internal/server/server.go:142 +0x45",
            "created by github.com/acme/ledger/internal/server.(*Server).startWarmers "
            "in goroutine 1",
            "\t/src/internal/server/server.go:140 +0x8f",
        ],
        restart=restart,
    )


GO_PANIC = Spec(
    Case(
        name="go-nil-panic",
        story=(
            "ledger 1.8.0 rolls out at 19:13. Each new pod starts, passes readiness, and six "
            "seconds later its cache warmer goroutine panics with a nil pointer dereference "
            "(the cache is nil when CACHE_ENABLED=false), so the pods crash-loop and the "
            "gateway answers 503 for most ledger calls. Fix: roll back to 1.7.x."
        ),
        namespace="eval-go-panic",
        start=window("2026-11-14T19:00:00Z", 30)[0],
        end=window("2026-11-14T19:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"panic: runtime error: invalid memory address or nil pointer",
            cause_keywords=("nil pointer",),
        ),
        forbidden=(),
        tags=("deploy", "go", "panic", "multiline", "crashloop", "restarts", "json", "envoy"),
        approx_lines=2800,
        question=None,
    ),
    gen_go_panic,
)

# --- rust-unwrap-panic ----------------------------------------------------------------------

RUST_DEPLOY_AT = 452.0


def gen_rust_panic(b: Builder) -> None:
    """The new distroless image runs as nonroot and cannot open its WAL directory."""
    old, new = "ingest-0", "ingest-0#2"
    events = Events.start(b)
    for t in b.ticks(b.lo, RUST_DEPLOY_AT, 10.0, jitter=0.2):
        b.log(
            old,
            "ingest",
            t,
            f"[{iso(b.at(t), 0)} INFO  ingest::storage] flushed segment "
            f"{b.rng.randrange(10_000, 99_999)} ({b.rng.randrange(800, 4000)} "
            f"records, {b.rng.uniform(0.2, 3.9):.1f} MiB)",
        )
    b.log(
        old,
        "ingest",
        RUST_DEPLOY_AT,
        f"[{iso(b.at(RUST_DEPLOY_AT), 0)} INFO  ingest] received SIGTERM, draining",
    )
    events.emit(RUST_DEPLOY_AT - 0.1, "Pod", "ingest-0", "Killing", "Stopping container ingest")
    starts = crash_loop_starts(RUST_DEPLOY_AT + 4.0, 0.05, b.hi)
    for restart, start in enumerate(starts):
        _rust_boot(b, new, restart, start)
        if restart >= 1:
            events.backoff(start - 0.4, "ingest-0", "ingest", restart, starts[1] - 0.4)
    for pod in b.pods("otel-collector", 2):
        _collector(b, pod)


def _rust_boot(b: Builder, pod: str, restart: int, t: float) -> None:
    ts = iso(b.at(t), 0)
    for i, line in enumerate(
        (
            f"[{ts} INFO  ingest] starting ingest v0.10.0 (git 7c1e2f0)",
            f"[{ts} INFO  ingest::config] loaded config from /etc/ingest/ingest.toml",
            f"[{ts} INFO  ingest::storage] opening write-ahead log at /var/lib/ingest/wal",
        )
    ):
        b.log(pod, "ingest", t + 0.002 * i, line, stream="stderr", restart=restart)
    b.block(
        pod,
        "ingest",
        t + 0.01,
        [
            "thread 'main' panicked at 'called `Result::unwrap()` on an `Err` value: Os { "
            'code: 13, kind: PermissionDenied, message: "Permission denied" }\', '
            "src/storage/wal.rs:41:63",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ],
        restart=restart,
    )


def _collector(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 300.0):
        b.log(
            pod,
            "otelcol",
            t,
            f"{iso(b.at(t))}\tinfo\tmemorylimiter/memorylimiter.go:205\t"
            "Memory usage is within limits.\t"
            f'{{"kind": "processor", "name": "memory_limiter", '
            f'"cur_mem_mib": {rng.randrange(90, 160)}}}',
        )
    for t in b.ticks(RUST_DEPLOY_AT + 2, b.hi, 6.0, jitter=0.5):
        interval = rng.uniform(2, 30)
        b.log(
            pod,
            "otelcol",
            t,
            f"{iso(b.at(t))}\tinfo\tinternal/retry_sender.go:118\t"
            "Exporting failed. Will retry the request after interval.\t"
            '{"kind": "exporter", "data_type": "logs", "name": "otlp/ingest", '
            '"error": "rpc error: code = Unavailable desc = connection error: '
            'desc = \\"transport: Error while dialing: dial tcp '
            '10.96.77.5:4317: connect: connection refused\\"", '
            f'"interval": "{interval:.6f}s"}}',
        )
        if t > RUST_DEPLOY_AT + 240 and rng.random() < 0.3:
            b.log(
                pod,
                "otelcol",
                t + 0.01,
                f"{iso(b.at(t))}\terror\t"
                "exporterhelper/queue_sender.go:92\tDropping data "
                "because sending_queue is full. Try increasing "
                "queue_size.\t"
                '{"kind": "exporter", "data_type": "logs", '
                f'"name": "otlp/ingest", "dropped_items": '
                f"{rng.randrange(100, 2048)}}}",
            )


RUST_PANIC = Spec(
    Case(
        name="rust-unwrap-panic",
        story=(
            "ingest v0.10.0 switched to a distroless image that runs as a non-root user. The "
            "StatefulSet pod ingest-0 is recreated at 06:37 and panics on start because it "
            "cannot open /var/lib/ingest/wal (Permission denied on the volume owned by root); "
            "it crash-loops. The OpenTelemetry collectors retry and then drop data. Fix: set "
            "fsGroup or chown the volume."
        ),
        namespace="eval-rust",
        start=window("2026-11-15T06:30:00Z", 30)[0],
        end=window("2026-11-15T06:30:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"thread 'main' panicked at .*Permission denied",
            cause_keywords=("panic", "Permission denied"),
        ),
        forbidden=(),
        tags=("deploy", "rust", "panic", "multiline", "crashloop", "restarts", "statefulset"),
        approx_lines=860,
        question="Why is the collector dropping telemetry?",
    ),
    gen_rust_panic,
)

# --- python-read-only-fs --------------------------------------------------------------------

RO_DEPLOY_AT = 648.0


def gen_read_only_fs(b: Builder) -> None:
    """A hardening change sets readOnlyRootFilesystem; uploads write temp files under /app."""
    rng = b.rng
    web = b.pod(b.replicaset("web"))
    old = b.pods("media-api", 2)
    new = b.pods("media-api", 2)
    for pod in new:
        _gunicorn_boot(b, pod, RO_DEPLOY_AT + rng.uniform(0, 3))
    for pod in [*old, *new]:
        lo, hi = (b.lo, RO_DEPLOY_AT + 8) if pod in old else (RO_DEPLOY_AT + 5, b.hi)
        log_probes(b, pod, "api", lo, hi, 15.0, probe_access(b, "10.244.1.1", "/health"))
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.25,
        (
            Route("GET", "/v1/media/{id}", 8, ms=14, size=900),
            Route("GET", "/v1/albums/{id}", 3, ms=40, size=5000),
            Route("POST", "/v1/media", 1, ms=420, size=600),
        ),
    )
    retries: list[Request] = []
    for i, r in enumerate(reqs):
        pod = (old if r.t < RO_DEPLOY_AT + 6 else new)[i % 2]
        if r.method == "POST" and r.t >= RO_DEPLOY_AT + 6:
            for k in range(3):
                retry = Request(
                    r.t + 2.0 * k, r.route, r.path, 500, 35.0 + k, 265, b.uuid(), r.ip, r.ua
                )
                _upload_traceback(b, pod, retry.t)
                log_gunicorn(b, pod, "api", [retry])
                retries.append(retry)
            continue
        log_gunicorn(b, pod, "api", [r])
    reqs = sorted(
        [r for r in reqs if not (r.method == "POST" and r.t >= RO_DEPLOY_AT + 6)] + retries,
        key=lambda r: r.t,
    )
    log_nginx(b, web, "nginx", reqs, "10.96.40.9:8000")
    nginx_favicon_errors(b, web)
    for pod in b.pods("gallery", 1):
        for t in b.poisson(RO_DEPLOY_AT + 60, b.hi, 0.2):
            b.log(
                pod,
                "gallery",
                t,
                slog(
                    b.at(t),
                    "WARN",
                    "media has no rendition, serving placeholder",
                    ("media_id", rng.randrange(10**6, 10**7)),
                    ("size", "medium"),
                ),
            )


def _gunicorn_boot(b: Builder, pod: str, t: float) -> None:
    for i, msg in enumerate(
        (
            (1, "INFO", "Starting gunicorn 23.0.0"),
            (1, "INFO", "Listening at: http://0.0.0.0:8000 (1)"),
            (1, "INFO", "Using worker: gthread"),
            (7, "INFO", "Booting worker with pid: 7"),
            (8, "INFO", "Booting worker with pid: 8"),
        )
    ):
        pid, level, text = msg
        b.log(
            pod,
            "api",
            t + 0.05 * i,
            gunicorn_log(b.at(t + 0.05 * i), pid, level, text),
            stream="stderr",
        )


def _upload_traceback(b: Builder, pod: str, t: float) -> None:
    media = b.rng.randrange(10**6, 10**7)
    part = b.hex(6)
    b.block(
        pod,
        "api",
        t,
        [
            pylog(b.at(t), "ERROR", "media.api.uploads", f"upload failed for media_id={media}"),
            "Traceback (most recent call last):",
            '  File "/app/media/api/uploads.py", line 57, in create_upload',
            '    with open(tmp_path, "wb") as fh:',
            "         ^^^^^^^^^^^^^^^^^^^^",
            f"OSError: [Errno 30] Read-only file system: '/app/tmp/upload-{part}.part'",
        ],
    )


READ_ONLY_FS = Spec(
    Case(
        name="python-read-only-fs",
        story=(
            "A security hardening change rolls out media-api at 13:10 with "
            "readOnlyRootFilesystem: true. Reads keep working, but every upload writes its "
            "temporary file under /app/tmp and fails with '[Errno 30] Read-only file system'; "
            "clients retry and the gallery serves placeholders. Fix: mount an emptyDir at "
            "/app/tmp."
        ),
        namespace="eval-readonly-fs",
        start=window("2026-11-17T13:00:00Z", 30)[0],
        end=window("2026-11-17T13:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"Read-only file system",
            cause_keywords=("Read-only file system",),
        ),
        forbidden=(),
        tags=("deploy", "python", "multiline", "gunicorn", "nginx", "logfmt"),
        approx_lines=2900,
        question="Uploads fail since the last deploy. Why?",
    ),
    gen_read_only_fs,
)

SPECS = (OOM, IMAGE_PULL, MISSING_CONFIG, GO_PANIC, RUST_PANIC, READ_ONLY_FS)
