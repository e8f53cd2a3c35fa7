"""Application incidents, plus the quiet and the healthy namespace."""

from __future__ import annotations

from eval.incidents.builder import Builder, iso, rabbit_time
from eval.incidents.common import (
    java_trace,
    metrics_export_errors,
    nginx_favicon_errors,
    redis_background,
)
from eval.incidents.formats import (
    morgan,
    pino,
    pylog,
    spring,
    zap,
)
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

# --- noisy-error-red-herring ----------------------------------------------------------------

MAXMEMORY_AT = 2051.0
FLAGS_URL = "http://flagd.eval-red-herring.svc:8013/flags/web.json"


def gen_red_herring(b: Builder) -> None:
    """A loud, old, harmless flag-refresh error; the real cause is Redis at maxmemory."""
    web = b.pods("web", 3)
    redis_background(b, "session-redis-0", b.lo, b.hi)
    for pod in web:
        for t in b.ticks(b.lo, b.hi, 10.0, jitter=0.03):
            b.log(
                pod,
                "web",
                t,
                pylog(
                    b.at(t),
                    "ERROR",
                    "web.flags",
                    f"failed to refresh feature flags: 404 Not Found (GET {FLAGS_URL})",
                ),
            )
        log_probes(b, pod, "web", b.lo, b.hi, 30.0, probe_access(b, "10.244.1.1", "/healthz"))
    routes = (
        Route("GET", "/account", 4, ms=30, size=8000),
        Route("GET", "/orders/{id}", 3, ms=25, size=6000),
        Route("POST", "/login", 1, ms=120, size=300),
    )
    for pod, r in spread(requests(b, b.lo, b.hi, 0.15, routes), web):
        _web_request(b, pod, r)
    t = 912.4
    b.log(
        web[0],
        "web",
        t,
        pylog(b.at(t), "INFO", "web.cache", "cache miss cache_key=user:42:profile ttl=300"),
    )


def _web_request(b: Builder, pod: str, r: Request) -> None:
    rng = b.rng
    after = r.t >= MAXMEMORY_AT
    if r.method == "POST" and after:
        r.status = 500
        b.log(
            pod,
            "web",
            r.t,
            pylog(
                b.at(r.t),
                "ERROR",
                "web.sessions",
                "session store write failed: OOM command not allowed when "
                "used memory > 'maxmemory'.",
            ),
        )
    elif r.method == "GET" and after and rng.random() < min(0.9, (r.t - MAXMEMORY_AT) / 600):
        r.status = 302
        b.log(
            pod,
            "web",
            r.t,
            pylog(
                b.at(r.t),
                "WARNING",
                "web.auth",
                f"session {b.hex(24)} not found, redirecting to /login",
            ),
        )
    elif r.method == "GET" and rng.random() < 0.3:
        user = rng.randrange(1, 60_000)
        b.log(
            pod,
            "web",
            r.t,
            pylog(
                b.at(r.t), "INFO", "web.cache", f"cache miss cache_key=user:{user}:profile ttl=300"
            ),
        )
    log_gunicorn(b, pod, "web", [r])


RED_HERRING = Spec(
    Case(
        name="noisy-error-red-herring",
        story=(
            "Every web pod logs 'ERROR failed to refresh feature flags: 404' every 10 s, in "
            "this hour and the one before: harmless noise (the flags file was renamed months "
            "ago and defaults apply). The real incident starts at 08:34: the session Redis "
            "reaches maxmemory with the noeviction policy, logins fail with 'OOM command not "
            "allowed' and users are bounced back to /login."
        ),
        namespace="eval-red-herring",
        start=window("2026-11-20T08:00:00Z", 60)[0],
        end=window("2026-11-20T08:00:00Z", 60)[1],
        expected=Expected(
            cause_pattern=r"OOM command not allowed when used memory > 'maxmemory'",
            cause_keywords=("maxmemory",),
        ),
        forbidden=(),
        tags=("noise", "redis", "python", "sessions", "red-herring"),
        approx_lines=4500,
        question="Users are being logged out. The logs are full of feature flag errors: is "
        "that it?",
    ),
    gen_red_herring,
)

# --- quiet-namespace ------------------------------------------------------------------------


def gen_quiet(b: Builder) -> None:
    """A nightly export ran before the window and finished; nothing runs in the window."""
    rng = b.rng
    job = f"nightly-export-29382120-{b.token(5)}"
    t = b.lo + 310.0
    b.log(job, "export", t, pylog(b.at(t), "INFO", "export", "starting nightly export"))
    for table in ("customers", "orders", "order_items", "invoices", "refunds", "products"):
        for _ in range(rng.randrange(6, 12)):
            t += rng.uniform(2, 9)
            b.log(
                job,
                "export",
                t,
                pylog(
                    b.at(t),
                    "INFO",
                    "export",
                    f"exported {rng.randrange(1000, 50_000)} rows from {table} "
                    f"(object_key=exports/2026/11/{table}-{b.hex(8)}.csv.gz)",
                ),
            )
    b.log(job, "export", t + 1, pylog(b.at(t + 1), "INFO", "export", "export finished"))


QUIET = Spec(
    Case(
        name="quiet-namespace",
        story=(
            "The namespace only runs a nightly export job, which finished well before the "
            "window. There is no log line at all in the requested window: the right answer "
            "is that there is nothing to analyse, not an invented incident."
        ),
        namespace="eval-quiet",
        start=window("2026-11-22T03:00:00Z", 30)[0],
        end=window("2026-11-22T03:00:00Z", 30)[1],
        expected=Expected(cause_pattern="", cause_keywords=(), empty=True),
        forbidden=(),
        tags=("quiet", "empty"),
        approx_lines=58,
        question="Anything wrong in this namespace in the last 30 minutes?",
    ),
    gen_quiet,
)

# --- healthy-info-warn ----------------------------------------------------------------------


def gen_healthy(b: Builder) -> None:
    """Healthy traffic with the usual warnings; nothing is broken."""
    rng = b.rng
    web = b.pod(b.replicaset("web"))
    catalog = b.pods("catalog", 2)
    search = b.pod(b.replicaset("search"))
    routes = (
        Route("GET", "/api/products/{id}", 6, ms=9),
        Route("GET", "/api/search?q=lamp&page=1", 2, ms=60, size=12_000),
        Route("GET", "/api/v1/error-pages/404", 1, ms=2, size=900),
        Route("POST", "/api/cart/items", 1, ms=30, size=300),
    )
    reqs = requests(b, b.lo, b.hi, 0.3, routes)
    log_nginx(b, web, "nginx", reqs, "10.96.70.3:8080")
    for pod, r in spread(reqs, catalog):
        b.log(
            pod,
            "catalog",
            r.t,
            zap(
                b.at(r.t),
                "info",
                "http/middleware.go:64",
                "request served",
                method=r.method,
                path=r.path,
                status=r.status,
                duration_ms=round(r.ms, 1),
            ),
        )
        if r.ms > 90:
            b.log(
                pod,
                "catalog",
                r.t + 0.001,
                zap(
                    b.at(r.t),
                    "warn",
                    "store/query.go:77",
                    "slow query",
                    duration_ms=round(r.ms, 1),
                    query="search_products",
                ),
            )
    for pod in catalog:
        for t in b.ticks(b.lo, b.hi, 60.0):
            b.log(
                pod,
                "catalog",
                t,
                zap(
                    b.at(t),
                    "info",
                    "metrics/report.go:22",
                    "stats",
                    requests=rng.randrange(20, 60),
                    errors=0,
                    error_rate=0.0,
                    p99_ms=rng.randrange(40, 140),
                ),
            )
        for t in b.ticks(b.lo, b.hi, 900.0, jitter=0.5):
            b.log(
                pod,
                "catalog",
                t,
                zap(
                    b.at(t),
                    "warn",
                    "http/compat.go:19",
                    "deprecated header X-Api-Version used",
                    client="ShopApp/5.11.2",
                    sunset="2027-03-01",
                ),
            )
    _search_logs(b, search)


def _search_logs(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 45.0, jitter=0.2):
        b.log(
            pod,
            "search",
            t,
            pylog(
                b.at(t),
                "INFO",
                "search.indexer",
                f"indexed {rng.randrange(10, 400)} documents in "
                f"{rng.uniform(0.1, 2.0):.2f}s (warnings=0)",
            ),
        )
    for t in b.ticks(b.lo, b.hi, 700.0, jitter=0.6):
        b.log(
            pod,
            "search",
            t,
            pylog(
                b.at(t),
                "WARNING",
                "search.client",
                "connection to opensearch reset, retrying (attempt 1/3)",
            ),
        )
        b.log(
            pod,
            "search",
            t + 0.4,
            pylog(
                b.at(t + 0.4), "INFO", "search.client", "reconnected to opensearch after 1 attempt"
            ),
        )
    for t in b.ticks(b.lo, b.hi, 1200.0):
        b.log(
            pod,
            "search",
            t,
            pylog(
                b.at(t),
                "WARNING",
                "py.warnings",
                "/app/search/query.py:88: DeprecationWarning: "
                "'body' parameter is deprecated, use 'query' instead",
            ),
        )


HEALTHY = Spec(
    Case(
        name="healthy-info-warn",
        story=(
            "A healthy namespace: steady traffic, a few slow queries, a deprecation warning "
            "and a search client that reconnects once in a while. No error, nothing new in "
            "the window; the right answer is that nothing is wrong."
        ),
        namespace="eval-healthy",
        start=window("2026-11-22T12:00:00Z", 30)[0],
        end=window("2026-11-22T12:00:00Z", 30)[1],
        expected=Expected(cause_pattern="", cause_keywords=(), low_severity_only=True),
        forbidden=(),
        tags=("healthy", "noise", "json", "python", "nginx"),
        approx_lines=2400,
        question="Is anything wrong with the shop right now?",
    ),
    gen_healthy,
)

# --- json-card-processor-timeout ------------------------------------------------------------

PROCESSOR_SLOW_AT = 903.0
PROCESSOR_TIMEOUTS_AT = 978.0


def gen_card_processor(b: Builder) -> None:
    """The card processor starts timing out; payments (zap) declines, checkout (pino) fails."""
    gateway = b.pod(b.replicaset("gateway"))
    payments = b.pods("payments", 2)
    checkout = b.pods("checkout", 2)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.4,
        (
            Route("POST", "/api/checkout", 2, ms=350, size=700),
            Route("GET", "/api/checkout/session", 5, ms=12, size=900),
        ),
    )
    for i, r in enumerate(reqs):
        c_pod = checkout[i % 2]
        if r.method == "POST":
            _checkout_payment(b, c_pod, payments, r, i)
        _pino_http(b, c_pod, r)
    log_envoy(
        b,
        gateway,
        reqs,
        "checkout.eval-json-payments.svc:3000",
        lambda r: f"10.244.3.{17 + int(r.t) % 2}:3000",
    )
    metrics_export_errors(b, payments[0], "payments")


def _checkout_payment(b: Builder, c_pod: str, payments: list[str], r: Request, i: int) -> None:
    """Authorize with two retries; a third timeout fails the order with a 502."""
    for attempt in (1, 2, 3):
        at = r.t + (attempt - 1) * 10.5
        if _authorize(b, payments[(i + attempt) % 2], at):
            r.ms += (attempt - 1) * 10_500
            return
        if attempt < 3:
            b.log(
                c_pod,
                "checkout",
                at + 10.0,
                pino(
                    b.at(at + 10.0),
                    "warn",
                    "retrying payment",
                    hostname=c_pod,
                    attempt=attempt + 1,
                    orderId=f"ord_{b.hex(10)}",
                ),
            )
    r.status, r.ms = 502, 31_600.0
    b.log(
        c_pod,
        "checkout",
        r.t + 31.5,
        pino(
            b.at(r.t + 31.5),
            "error",
            "order failed",
            hostname=c_pod,
            err={"type": "PaymentError", "message": "payment service returned 502"},
        ),
    )


def _pino_http(b: Builder, pod: str, r: Request) -> None:
    """pino-http's per-request line."""
    end = r.t + r.ms / 1000
    level, msg = ("info", "request completed") if r.status < 500 else ("error", "request errored")
    b.log(
        pod,
        "checkout",
        end,
        pino(
            b.at(end),
            level,
            msg,
            hostname=pod,
            req={"id": r.rid, "method": r.method, "url": r.path},
            res={"statusCode": r.status},
            responseTime=round(r.ms),
        ),
    )


def _authorize(b: Builder, pod: str, t: float) -> bool:
    """One authorization in payments; False when the processor timed out."""
    rng = b.rng
    fields: dict[str, object] = {
        "amount_cents": rng.randrange(900, 40_000),
        "currency": rng.choice(("EUR", "EUR", "USD")),
        "idempotency_key": b.uuid(),
        "trace_id": b.hex(32),
    }
    if t >= PROCESSOR_TIMEOUTS_AT and rng.random() < 0.45:
        done = t + 10.0
        b.log(
            pod,
            "payments",
            done,
            zap(
                b.at(done),
                "error",
                "processor/client.go:144",
                "payment declined",
                error="card_processor: upstream timeout",
                **fields,
            ),
        )
        return False
    latency = rng.uniform(2400, 9000) if t >= PROCESSOR_SLOW_AT else rng.uniform(180, 600)
    if latency > 2000:
        b.log(
            pod,
            "payments",
            t + latency / 1000,
            zap(
                b.at(t + latency / 1000),
                "warn",
                "processor/client.go:131",
                "card processor slow",
                latency_ms=round(latency),
                trace_id=fields["trace_id"],
            ),
        )
    if rng.random() < 0.06:
        b.log(
            pod,
            "payments",
            t + latency / 1000,
            zap(
                b.at(t + latency / 1000),
                "info",
                "processor/client.go:152",
                "payment declined",
                reason="insufficient_funds",
                **fields,
            ),
        )
    else:
        b.log(
            pod,
            "payments",
            t + latency / 1000,
            zap(
                b.at(t + latency / 1000),
                "info",
                "processor/client.go:158",
                "payment authorized",
                **fields,
            ),
        )
    return True


CARD_PROCESSOR = Spec(
    Case(
        name="json-card-processor-timeout",
        story=(
            "From 18:15 the external card processor slows down and from 18:16 about half of "
            "the authorizations time out after 10 s: payments logs 'payment declined' with "
            "error 'card_processor: upstream timeout', checkout retries twice and then fails "
            "the order with a 502. Ordinary declines (insufficient_funds) are normal noise."
        ),
        namespace="eval-json-payments",
        start=window("2026-11-26T18:00:00Z", 30)[0],
        end=window("2026-11-26T18:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"card_processor: upstream timeout",
            cause_keywords=("card_processor", "upstream timeout"),
        ),
        forbidden=(),
        tags=("payments", "json", "node", "go", "envoy", "third-party"),
        approx_lines=3500,
        question="Why are orders failing with 502?",
    ),
    gen_card_processor,
)

# --- kafka-message-too-large ----------------------------------------------------------------

FAT_EVENTS_AT = 602.0


def gen_kafka_too_large(b: Builder) -> None:
    """orders 5.1.0 embeds line items in events; big orders exceed the broker's 1 MB limit."""
    rng = b.rng
    orders = b.pods("orders", 2)
    stuck: list[tuple[float, int]] = []
    for i, t in enumerate(b.poisson(b.lo, b.hi, 0.2)):
        pod = orders[i % 2]
        order = rng.randrange(400_000, 499_999)
        items = rng.randrange(1, 12) if rng.random() > 0.06 else rng.randrange(900, 4000)
        size = 800 + items * (350 if t >= FAT_EVENTS_AT else 40)
        b.log(
            pod,
            "orders",
            t,
            zap(b.at(t), "info", "api/orders.go:71", "order created", order_id=order, items=items),
        )
        if size <= 1_048_576:
            b.log(
                pod,
                "orders",
                t + 0.2,
                zap(
                    b.at(t + 0.2),
                    "debug",
                    "outbox/relay.go:58",
                    "event published",
                    topic="order-events",
                    order_id=order,
                    bytes=size,
                ),
            )
            continue
        for attempt in (1, 2, 3):
            at = t + 0.2 + 5 * (attempt - 1)
            b.log(
                pod,
                "orders",
                at,
                zap(
                    b.at(at),
                    "error",
                    "outbox/relay.go:64",
                    "failed to publish event",
                    topic="order-events",
                    order_id=order,
                    bytes=size,
                    attempt=attempt,
                    error="kafka server: Message was too large, server rejected it to avoid "
                    "allocation error",
                ),
            )
        b.log(
            pod,
            "orders",
            t + 10.3,
            zap(
                b.at(t + 10.3),
                "warn",
                "outbox/relay.go:77",
                "outbox event parked",
                order_id=order,
                event="OrderCreated",
            ),
        )
        stuck.append((t, order))
    _status_polls(b, orders, stuck)
    metrics_export_errors(b, orders[1], "orders")
    for pod in b.pods("fulfillment", 2):
        for t in b.ticks(b.lo, b.hi, 30.0):
            b.log(
                pod,
                "fulfillment",
                t,
                spring(
                    b.at(t),
                    "INFO",
                    "ntainer#0-0-C-1",
                    "com.acme.fulfillment.OrderListener",
                    f"processed {rng.randrange(0, 9)} OrderCreated events, lag=0",
                    "fulfillment",
                ),
            )


def _status_polls(b: Builder, orders: list[str], stuck: list[tuple[float, int]]) -> None:
    """Customers of stuck orders reload the status page every few seconds."""
    rng = b.rng
    for created, order in stuck:
        t = created + 60
        end = min(b.hi, created + rng.uniform(400, 1200))
        while t < end:
            age = int(t - created)
            b.log(
                orders[order % 2],
                "orders",
                t,
                zap(
                    b.at(t),
                    "warn",
                    "api/status.go:40",
                    "order stuck in PENDING",
                    order_id=order,
                    age_s=age,
                ),
            )
            t += rng.uniform(4, 9)


KAFKA_TOO_LARGE = Spec(
    Case(
        name="kafka-message-too-large",
        story=(
            "orders 5.1.0 (rolled out at 07:10) embeds every line item in the OrderCreated "
            "event. Bulk orders now produce events over the broker's 1 MB limit: the outbox "
            "relay fails with 'Message was too large', parks the event, fulfillment never "
            "hears of those orders and their customers keep polling an order stuck in PENDING."
        ),
        namespace="eval-kafka",
        start=window("2026-11-27T07:00:00Z", 30)[0],
        end=window("2026-11-27T07:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"Message was too large",
            cause_keywords=("too large",),
        ),
        forbidden=(),
        tags=("kafka", "json", "go", "java", "deploy"),
        approx_lines=2400,
        question="Some orders stay in PENDING forever. Why?",
    ),
    gen_kafka_too_large,
)

# --- kafka-consumer-schema-change -----------------------------------------------------------

SCHEMA_DEPLOY_AT = 497.0


def gen_schema_change(b: Builder) -> None:
    """orders v3 writes created_at as `dd/MM/yyyy HH:mm:ss`; fulfillment cannot parse it."""
    rng = b.rng
    producer_old = b.pod(b.replicaset("orders"))
    producer_new = b.pod(b.replicaset("orders"))
    consumers = b.pods("fulfillment", 2)
    b.log(
        producer_new,
        "orders",
        SCHEMA_DEPLOY_AT,
        pylog(
            b.at(SCHEMA_DEPLOY_AT),
            "INFO",
            "orders.events",
            "using event serializer v3 (created_at format %d/%m/%Y %H:%M:%S)",
        ),
    )
    for i, t in enumerate(b.poisson(b.lo, b.hi, 0.07)):
        new = t >= SCHEMA_DEPLOY_AT + 2
        order = rng.randrange(40_000, 99_999)
        producer = producer_new if new else producer_old
        b.log(
            producer,
            "orders",
            t,
            pylog(
                b.at(t),
                "INFO",
                "orders.events",
                f"published OrderCreated order_id={order} topic=order-events",
            ),
        )
        consumer = consumers[order % 2]
        if not new:
            b.log(
                consumer,
                "fulfillment",
                t + 0.3,
                spring(
                    b.at(t + 0.3),
                    "INFO",
                    "ntainer#0-0-C-1",
                    "com.acme.fulfillment.OrderListener",
                    f"Shipment requested for order {order}",
                    "fulfillment",
                ),
            )
            continue
        _listener_failure(b, consumer, t + 2.4, order, i)
    for pod in consumers:
        _commit_timeouts(b, pod)
        for t in b.ticks(SCHEMA_DEPLOY_AT + 120, b.hi, 60.0):
            b.log(
                pod,
                "fulfillment",
                t,
                spring(
                    b.at(t),
                    "WARN",
                    "scheduling-1",
                    "com.acme.fulfillment.SlaMonitor",
                    f"{int((t - SCHEMA_DEPLOY_AT) * 0.035)} paid orders without shipment for more "
                    "than 15 minutes",
                    "fulfillment",
                ),
            )


def _commit_timeouts(b: Builder, pod: str) -> None:
    """A steady Kafka client warning in both windows."""
    for t in b.ticks(b.lo, b.hi, 420.0, jitter=0.5):
        partition = b.rng.randrange(6)
        msg = (
            f"[Consumer clientId=consumer-fulfillment-1, groupId=fulfillment] Offset commit "
            f"failed on partition order-events-{partition} at offset "
            f"{b.rng.randrange(78_000, 81_000)}: The request timed out."
        )
        b.log(
            pod,
            "fulfillment",
            t,
            spring(
                b.at(t),
                "WARN",
                "ntainer#0-0-C-1",
                "org.apache.kafka.clients.consumer.internals.ConsumerCoordinator",
                msg,
                "fulfillment",
            ),
        )


def _listener_failure(b: Builder, pod: str, t: float, order: int, offset: int) -> None:
    sent = iso(b.at(t - 2.4), 0)
    bad = f"{sent[8:10]}/{sent[5:7]}/{sent[0:4]} {sent[11:19]}"
    partition = order % 6
    head = spring(
        b.at(t),
        "ERROR",
        "ntainer#0-0-C-1",
        "org.springframework.kafka.listener.DefaultErrorHandler",
        f"Backoff FixedBackOff{{interval=1000, currentAttempts=3, maxAttempts=2}} exhausted for "
        f"order-events-{partition}@{81_000 + offset}",
        "fulfillment",
    )
    jackson = (
        f'Cannot deserialize value of type `java.time.Instant` from String "{bad}": Failed to '
        "deserialize java.time.Instant: (java.time.format.DateTimeParseException) Text "
        f"'{bad}' could not be parsed at index 0"
    )
    lines = [
        head,
        "",
        "org.springframework.kafka.listener.ListenerExecutionFailedException: Listener method "
        "'public void com.acme.fulfillment.OrderListener.onOrder(com.acme.fulfillment.OrderEvent)'"
        " threw exception",
        *java_trace(
            (
                "org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer"
                ".decorateException(KafkaMessageListenerContainer.java:2869)",
                "org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer"
                ".doInvokeOnMessage(KafkaMessageListenerContainer.java:2814)",
                "java.base/java.lang.Thread.run(Thread.java:1583)",
            )
        ),
        "Caused by: org.springframework.messaging.converter.MessageConversionException: Could "
        f"not read JSON: {jackson}",
        *java_trace(
            (
                "org.springframework.messaging.converter.MappingJackson2MessageConverter"
                ".convertFromInternal(MappingJackson2MessageConverter.java:279)",
            ),
            omitted=12,
        ),
        "Caused by: com.fasterxml.jackson.databind.exc.InvalidFormatException: " + jackson,
        " at [Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); line: "
        '1, column: 58] (through reference chain: com.acme.fulfillment.OrderEvent["createdAt"])',
        *java_trace(
            (
                "com.fasterxml.jackson.databind.exc.InvalidFormatException.from"
                "(InvalidFormatException.java:67)",
                "com.fasterxml.jackson.datatype.jsr310.deser.InstantDeserializer.deserialize"
                "(InstantDeserializer.java:276)",
            ),
            omitted=31,
        ),
    ]
    b.block(pod, "fulfillment", t, lines, stream="stdout")
    dlt = t + 0.05
    b.log(
        pod,
        "fulfillment",
        dlt,
        spring(
            b.at(dlt),
            "WARN",
            "ntainer#0-0-C-1",
            "org.springframework.kafka.listener.DeadLetterPublishingRecoverer",
            f"Sent order-events-{partition}@{81_000 + offset} to order-events.DLT (order {order})",
            "fulfillment",
        ),
    )


SCHEMA_CHANGE = Spec(
    Case(
        name="kafka-consumer-schema-change",
        story=(
            "orders v3 (deployed 10:08) serialises createdAt as 'dd/MM/yyyy HH:mm:ss' instead "
            "of ISO 8601. Every OrderCreated event then fails in fulfillment: Jackson cannot "
            "deserialize java.time.Instant from that string, the retries are exhausted and the "
            "event goes to the dead-letter topic, so no shipment is requested."
        ),
        namespace="eval-schema-change",
        start=window("2026-11-28T10:00:00Z", 30)[0],
        end=window("2026-11-28T10:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"Cannot deserialize value of type `java\.time\.Instant` from String",
            cause_keywords=("deserialize",),
        ),
        forbidden=(),
        tags=("kafka", "java", "spring", "multiline", "schema", "python", "deploy"),
        approx_lines=1700,
        question="Paid orders are not shipped since this morning. What is wrong?",
    ),
    gen_schema_change,
)

# --- node-typeerror -------------------------------------------------------------------------

CART_DEPLOY_AT = 1102.0


def gen_node_typeerror(b: Builder) -> None:
    """cart 4.12.0's promotion code reads `price.amount` of gift cards, which have no price."""
    rng = b.rng
    web = b.pod(b.replicaset("web"))
    old = b.pods("cart", 2)
    new = b.pods("cart", 2)
    ui = b.pod(b.replicaset("checkout-ui"))
    for pod in new:
        t = CART_DEPLOY_AT + rng.uniform(0, 3)
        b.log(
            pod,
            "cart",
            t,
            pino(
                b.at(t), "info", "cart service listening", hostname=pod, port=3000, version="4.12.0"
            ),
        )
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.28,
        (
            Route("GET", "/api/cart", 6, ms=20, size=2200),
            Route("POST", "/api/cart/items", 2, ms=35, size=600),
            Route("GET", "/api/cart/summary", 2, ms=15, size=700),
        ),
    )
    retries: list[Request] = []
    for i, r in enumerate(reqs):
        pods = old if r.t < CART_DEPLOY_AT + 5 else new
        pod = pods[i % 2]
        broken = r.t >= CART_DEPLOY_AT + 5 and r.method == "GET" and rng.random() < 0.12
        tries = [r] + (
            [
                Request(r.t + 1.0 * k, r.route, r.path, 500, 4.0, 140, b.uuid(), r.ip, r.ua)
                for k in (1, 2)
            ]
            if broken
            else []
        )
        for attempt in tries:
            if broken:
                attempt.status, attempt.ms = 500, rng.uniform(3, 9)
                _type_error(b, pod, attempt.t)
                _ui_failure(b, ui, attempt.t + 0.01)
            b.log(
                pod,
                "cart",
                attempt.t + attempt.ms / 1000,
                morgan(
                    b.at(attempt.t + attempt.ms / 1000),
                    ip=attempt.ip,
                    method=attempt.method,
                    path=attempt.path,
                    status=attempt.status,
                    size=attempt.size,
                    ms=attempt.ms,
                ),
            )
        retries.extend(tries[1:])
    log_nginx(b, web, "nginx", sorted([*reqs, *retries], key=lambda r: r.t), "10.96.80.5:3000")
    nginx_favicon_errors(b, web)


def _type_error(b: Builder, pod: str, t: float) -> None:
    b.block(
        pod,
        "cart",
        t,
        [
            "TypeError: Cannot read properties of undefined (reading 'amount')",
            "    at applyPromotions (/app/src/pricing/promotions.js:88:41)",
            "    at Array.reduce (<anonymous>)",
            "    at computeTotals (/app/src/pricing/totals.js:23:18)",
            "    at /app/src/routes/cart.js:57:26",
            "    at Layer.handle [as handle_request] "
            "(/app/node_modules/express/lib/router/layer.js:95:5)",
            "    at next (/app/node_modules/express/lib/router/route.js:149:13)",
            "    at Route.dispatch (/app/node_modules/express/lib/router/route.js:119:3)",
        ],
    )


def _ui_failure(b: Builder, pod: str, t: float) -> None:
    b.log(
        pod,
        "checkout-ui",
        t,
        pino(
            b.at(t),
            "error",
            "failed to load cart",
            hostname=pod,
            err={
                "type": "AxiosError",
                "message": "Request failed with status code 500",
                "code": "ERR_BAD_RESPONSE",
            },
            url="http://cart:3000/api/cart",
        ),
    )


NODE_TYPEERROR = Spec(
    Case(
        name="node-typeerror",
        story=(
            "cart 4.12.0 (deployed 20:18) adds promotions that read item.price.amount; gift "
            "card items have no price, so every cart containing one fails with 'TypeError: "
            "Cannot read properties of undefined (reading 'amount')' and a 500. The UI and the "
            "browser retry, so 500s and 'failed to load cart' errors outnumber the stack traces."
        ),
        namespace="eval-node",
        start=window("2026-11-29T20:00:00Z", 30)[0],
        end=window("2026-11-29T20:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"TypeError: Cannot read properties of undefined \(reading 'amount'\)",
            cause_keywords=("Cannot read properties of undefined",),
        ),
        forbidden=(),
        tags=("node", "javascript", "multiline", "deploy", "json", "nginx"),
        approx_lines=2500,
        question=None,
    ),
    gen_node_typeerror,
)

# --- rabbitmq-memory-alarm ------------------------------------------------------------------

ALARM_AT = 903.318
RABBIT_NODE = "rabbit@rabbitmq-0.rabbitmq-nodes.eval-rabbitmq"


def gen_rabbitmq(b: Builder) -> None:
    """A bulk import floods a queue nobody consumes; RabbitMQ raises its memory alarm."""
    rabbit = "rabbitmq-0"
    importer = f"catalog-import-{b.token(5)}"
    orders = b.pods("orders", 2)
    gateway = b.pod(b.replicaset("gateway"))
    _rabbit_logs(b, rabbit)
    for t in b.ticks(b.lo, b.hi, 300.0, jitter=0.4):
        b.log(
            orders[0],
            "orders",
            t,
            pylog(
                b.at(t),
                "ERROR",
                "orders.email",
                "failed to render template order_shipped_v1: 'tracking_url' is undefined",
            ),
        )
    for k, t in enumerate(b.ticks(300.0, ALARM_AT, 30.0, jitter=0.05)):
        b.log(
            importer,
            "import",
            t,
            pylog(
                b.at(t),
                "INFO",
                "importer",
                f"published {(k + 1) * 50_000}/2000000 messages to product-updates",
            ),
        )
    b.log(
        importer,
        "import",
        ALARM_AT + 2,
        pylog(
            b.at(ALARM_AT + 2),
            "WARNING",
            "pika.connection",
            "Connection blocked by broker: low on memory",
        ),
    )
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.35,
        (
            Route("POST", "/api/orders", 1, ms=70, size=500),
            Route("GET", "/api/orders/{id}", 3, ms=12, size=1400),
        ),
    )
    for pod, r in spread(reqs, orders):
        if r.method == "POST" and r.t > ALARM_AT:
            r.status, r.ms = 504, 15_000.0
            b.log(
                pod,
                "orders",
                r.t + 5,
                pylog(
                    b.at(r.t + 5),
                    "ERROR",
                    "orders.events",
                    f"publish timed out after 5.0s; order {b.rng.randrange(10_000, 99_999)} saved "
                    "but OrderCreated not sent",
                ),
            )
        log_gunicorn(b, pod, "orders", [r])
    for pod in orders:
        b.log(
            pod,
            "orders",
            ALARM_AT + 0.4,
            pylog(
                b.at(ALARM_AT + 0.4),
                "WARNING",
                "pika.connection",
                "Connection blocked by broker: low on memory",
            ),
        )
    log_envoy(
        b,
        gateway,
        reqs,
        "orders.eval-rabbitmq.svc:8000",
        lambda r: f"10.244.2.{40 + int(r.t) % 2}:8000",
        flags=lambda r: "UT" if r.status == 504 else "-",
    )


def _rabbit_logs(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 45.0, jitter=0.5):
        peer = f"10.244.{rng.randrange(1, 6)}.{rng.randrange(2, 250)}"
        b.log(
            pod,
            "rabbitmq",
            t,
            f"{rabbit_time(b.at(t))} [info] <0.{rng.randrange(900, 9999)}.0> "
            f"accepting AMQP connection {peer}:{rng.randrange(32768, 60999)} "
            "-> 10.244.2.9:5672",
        )
    t = ALARM_AT
    pid = "<0.498.0>"
    stamp = rabbit_time(b.at(t))
    b.block(
        pod,
        "rabbitmq",
        t,
        [
            f"{stamp} [info] {pid} vm_memory_high_watermark set. Memory used:1719451648 "
            "allowed:1717986918",
            f"{stamp} [warning] {pid} memory resource limit alarm set on node '{RABBIT_NODE}'.",
            f"{stamp} [warning] {pid} ",
            f"{stamp} [warning] {pid} **********************************************************",
            f"{stamp} [warning] {pid} *** Publishers will be blocked until this alarm clears ***",
            f"{stamp} [warning] {pid} **********************************************************",
            f"{stamp} [warning] {pid} ",
        ],
        stream="stdout",
    )


RABBITMQ = Spec(
    Case(
        name="rabbitmq-memory-alarm",
        story=(
            "A catalog import job publishes two million messages to product-updates, a queue "
            "without consumers. At 15:15 RabbitMQ crosses its memory high watermark and sets "
            "the memory alarm: all publishers are blocked, orders cannot publish OrderCreated "
            "and order creation times out with 504 at the gateway."
        ),
        namespace="eval-rabbitmq",
        start=window("2026-11-30T15:00:00Z", 30)[0],
        end=window("2026-11-30T15:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"memory resource limit alarm set|vm_memory_high_watermark set",
            cause_keywords=("memory", "alarm"),
        ),
        forbidden=(),
        tags=("rabbitmq", "messaging", "python", "envoy", "multiline"),
        approx_lines=2700,
        question="Creating an order times out. Why?",
    ),
    gen_rabbitmq,
)

SPECS = (
    RED_HERRING,
    QUIET,
    HEALTHY,
    CARD_PROCESSOR,
    KAFKA_TOO_LARGE,
    SCHEMA_CHANGE,
    NODE_TYPEERROR,
    RABBITMQ,
)
