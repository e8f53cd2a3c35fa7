"""Network and identity incidents: DNS, TLS, rate limits, tokens, cloud credentials."""

from __future__ import annotations

import base64
import json
import random

from eval.incidents.builder import Builder, case_seed, go_log, iso
from eval.incidents.common import metrics_export_errors, nginx_favicon_errors, redis_background
from eval.incidents.formats import Value, logfmt, postgres, pylog, slog, zap
from eval.incidents.model import Case, Expected
from eval.incidents.spec import Spec, window
from eval.incidents.traffic import Request, Route, log_nginx, requests

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# --- dns-no-such-host -----------------------------------------------------------------------

DNS_DEPLOY_AT = 540.0
BAD_PAYMENTS_URL = "http://payments.svc.cluster.local:8080"


def gen_dns_no_such_host(b: Builder) -> None:
    """checkout is redeployed with PAYMENTS_URL missing the namespace: NXDOMAIN."""
    rng = b.rng
    frontend = b.pod(b.replicaset("frontend"))
    old = b.pods("checkout", 2)
    new = b.pods("checkout", 2)
    payments = b.pods("payments", 2)
    for pod in new:
        _checkout_boot(b, pod, DNS_DEPLOY_AT + rng.uniform(0, 2))
    for pod in old:
        b.log(
            pod,
            "checkout",
            DNS_DEPLOY_AT + 6,
            zap(
                b.at(DNS_DEPLOY_AT + 6),
                "info",
                "server/server.go:97",
                "shutting down",
                signal="terminated",
            ),
        )
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.3,
        (
            Route("GET", "/", 5, ms=6, size=12_000),
            Route("GET", "/api/cart", 3, ms=25, size=1800),
            Route("POST", "/api/checkout", 1, ms=240, size=500),
        ),
    )
    extra: list[Request] = []
    for i, r in enumerate(reqs):
        if r.path != "/api/checkout":
            continue
        if r.t < DNS_DEPLOY_AT + 5:
            _payment_ok(b, old[i % 2], payments[i % 2], r.t)
            continue
        for k in range(3):  # the web app retries a failed checkout twice
            attempt = (
                r
                if k == 0
                else Request(r.t + 1.5 * k, r.route, r.path, 502, 0, 0, b.uuid(), r.ip, r.ua)
            )
            attempt.status, attempt.ms = 502, rng.uniform(3, 12)
            _payment_dns_failure(b, new[(i + k) % 2], attempt.t)
            if k:
                extra.append(attempt)
    log_nginx(b, frontend, "nginx", sorted([*reqs, *extra], key=lambda r: r.t), "10.96.51.20:8080")
    nginx_favicon_errors(b, frontend)
    for pod in old:
        metrics_export_errors(b, pod, "checkout", until=DNS_DEPLOY_AT + 6)
    for pod in payments:
        for t in b.ticks(b.lo, b.hi, 60.0):
            b.log(
                pod,
                "payments",
                t,
                logfmt(
                    [
                        ("level", "info"),
                        ("msg", "processor health"),
                        ("processor", "adyen"),
                        ("latency_ms", rng.randrange(40, 90)),
                    ]
                ),
            )


def _checkout_boot(b: Builder, pod: str, t: float) -> None:
    lines = (
        ("main.go:41", "starting checkout", {"version": "3.7.0"}),
        (
            "config/config.go:88",
            "config loaded",
            {
                "payments_url": BAD_PAYMENTS_URL,
                "cart_url": "http://cart.eval-dns.svc.cluster.local:8080",
            },
        ),
        ("server/server.go:64", "listening", {"addr": ":8080"}),
    )
    for i, (caller, msg, fields) in enumerate(lines):
        at = t + 0.02 * i
        b.log(pod, "checkout", at, zap(b.at(at), "info", caller, msg, **fields))


def _payment_ok(b: Builder, checkout: str, payments: str, t: float) -> None:
    order = b.rng.randrange(100_000, 999_999)
    b.log(
        payments,
        "payments",
        t + 0.1,
        logfmt(
            [
                ("level", "info"),
                ("msg", "payment authorized"),
                ("order_id", order),
                ("amount_cents", b.rng.randrange(900, 40_000)),
                ("idempotency_key", b.uuid()),
            ]
        ),
    )
    b.log(
        checkout,
        "checkout",
        t + 0.2,
        zap(b.at(t + 0.2), "info", "checkout/handler.go:88", "checkout completed", order_id=order),
    )


def _payment_dns_failure(b: Builder, pod: str, t: float) -> None:
    b.log(
        pod,
        "checkout",
        t,
        zap(
            b.at(t),
            "error",
            "checkout/payments.go:57",
            "payment authorization failed",
            order_id=b.rng.randrange(100_000, 999_999),
            error=f'Post "{BAD_PAYMENTS_URL}/v1/authorize": dial tcp: lookup '
            "payments.svc.cluster.local on 10.96.0.10:53: no such host",
            trace_id=b.hex(32),
        ),
    )


DNS_NXDOMAIN = Spec(
    Case(
        name="dns-no-such-host",
        story=(
            "checkout 3.7.0 is deployed at 10:09 with PAYMENTS_URL=http://payments.svc."
            "cluster.local:8080, a name without the namespace. The lookup fails (no such host "
            "from the cluster DNS 10.96.0.10), every checkout answers 502 and the web app "
            "retries twice. payments itself is healthy and idle."
        ),
        namespace="eval-dns",
        start=window("2026-11-18T10:00:00Z", 30)[0],
        end=window("2026-11-18T10:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"lookup payments\.svc\.cluster\.local on \S+: no such host",
            cause_keywords=("no such host", "payments.svc.cluster.local"),
        ),
        forbidden=(),
        tags=("dns", "deploy", "config", "json", "go", "nginx", "logfmt"),
        approx_lines=1800,
        question="Why do checkouts fail since 10:09?",
    ),
    gen_dns_no_such_host,
)

# --- dns-lookup-timeout ---------------------------------------------------------------------

DNS_SLOW_AT = 312.0
REDIS_HOST = "redis.eval-dns-timeout.svc.cluster.local"


def gen_dns_timeout(b: Builder) -> None:
    """CoreDNS drops queries under a conntrack race; new Redis connections time out."""
    rng = b.rng
    ingress = b.pod(b.replicaset("web"))
    catalog = b.pods("catalog", 3)
    pg = "postgres-0"
    redis_background(b, "redis-0", b.lo, b.hi)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        0.55,
        (
            Route("GET", "/api/products/{id}", 6, ms=8),
            Route("GET", "/api/categories/{id}/products", 2, ms=20, size=9000),
        ),
    )
    for i, r in enumerate(reqs):
        pod = catalog[i % 3]
        degraded = r.t > DNS_SLOW_AT and rng.random() < 0.45
        if degraded:
            _cache_bypass(b, pod, pg, r)
        b.log(
            pod,
            "catalog",
            r.t + r.ms / 1000,
            slog(
                b.at(r.t + r.ms / 1000),
                "INFO",
                "request",
                ("method", r.method),
                ("path", r.path),
                ("status", r.status),
                ("duration", f"{r.ms:.1f}ms"),
            ),
        )
    for pod in catalog:
        for t in b.ticks(DNS_SLOW_AT, b.hi, 40.0, jitter=0.8):
            ip = f"10.244.{rng.randrange(1, 6)}.{rng.randrange(2, 250)}"
            port = rng.randrange(32768, 60999)
            b.log(
                pod,
                "catalog",
                t,
                slog(
                    b.at(t),
                    "ERROR",
                    "redis: dial failed",
                    ("addr", f"{REDIS_HOST}:6379"),
                    (
                        "err",
                        f"dial tcp: lookup {REDIS_HOST} on 10.96.0.10:53: read udp "
                        f"{ip}:{port}->10.96.0.10:53: i/o timeout",
                    ),
                ),
            )
    log_nginx(b, ingress, "nginx", reqs, "10.96.60.2:8080")
    nginx_favicon_errors(b, ingress)


def _cache_bypass(b: Builder, pod: str, pg: str, r: Request) -> None:
    rng = b.rng
    r.ms = 5000 + rng.uniform(400, 2400)
    if r.ms > 7000:
        r.status = 504
    key = f"product:{r.path.rsplit('/', 1)[-1]}"
    b.log(
        pod,
        "catalog",
        r.t + 5.0,
        slog(
            b.at(r.t + 5.0),
            "WARN",
            "cache unavailable, falling back to database",
            ("cache_key", key),
            ("waited", "5s"),
        ),
    )
    if rng.random() < 0.5:
        q = r.t + r.ms / 1000 - 0.01
        b.log(
            pg,
            "postgres",
            q,
            postgres(
                b.at(q),
                rng.randrange(900, 4000),
                "LOG",
                f"duration: {(r.ms - 5000):.3f} ms  execute <unnamed>: SELECT p.id, p.name, "
                "p.price_cents, s.qty FROM products p JOIN stock s ON s.product_id = p.id "
                "WHERE p.id = $1",
                "catalog@catalog",
            ),
            stream="stderr",
        )


DNS_TIMEOUT = Spec(
    Case(
        name="dns-lookup-timeout",
        story=(
            "From 21:05 the cluster DNS (10.96.0.10) drops a share of UDP queries. catalog "
            "cannot resolve the Redis service when it opens new connections (lookup ... i/o "
            "timeout), waits 5 s, falls back to Postgres for those requests, and slow queries "
            "and 504s follow. Redis and Postgres are healthy: the DNS lookups are the cause."
        ),
        namespace="eval-dns-timeout",
        start=window("2026-11-19T21:00:00Z", 15)[0],
        end=window("2026-11-19T21:00:00Z", 15)[1],
        expected=Expected(
            cause_pattern=r"lookup redis\.eval-dns-timeout\.svc\.cluster\.local on \S+: "
            r"read udp \S+: i/o timeout",
            cause_keywords=("lookup", "i/o timeout"),
        ),
        forbidden=(),
        tags=("dns", "redis", "logfmt", "go", "postgres", "nginx"),
        approx_lines=2300,
        question="catalog latency jumped after 21:05. Is Redis down?",
    ),
    gen_dns_timeout,
)

# --- tls-cert-expired -----------------------------------------------------------------------

CERT_EXPIRES_AT = 1800.0  # 03:00:00Z, the ledger's serving certificate notAfter


def gen_tls_expired(b: Builder) -> None:
    """The ledger's internal certificate expires; cert-manager had stopped renewing it."""
    rng = b.rng
    workers = b.pods("transfer-worker", 2)
    ledger = b.pods("ledger", 2)
    api = b.pods("transfer-api", 2)
    for pod in workers:
        _transfer_worker(b, pod, ledger)
    for pod in ledger:
        for t in b.ticks(b.lo, b.hi, 60.0):
            b.log(
                pod,
                "ledger",
                t,
                f"{go_log(b.at(t))} entries: committed "
                f"{rng.randrange(0, 40) if t < CERT_EXPIRES_AT else 0} "
                f"in last 60s, open transactions 0",
            )
    for pod in api:
        for t in b.poisson(b.lo, b.hi, 0.07):
            b.log(
                pod,
                "api",
                t,
                slog(
                    b.at(t),
                    "INFO",
                    "transfer accepted",
                    ("transfer_id", f"tr_{b.hex(14)}"),
                    ("amount_cents", rng.randrange(1000, 500_000)),
                    ("status", 202),
                ),
            )
        for t in b.ticks(CERT_EXPIRES_AT + 120, b.hi, 60.0):
            pending = int((t - CERT_EXPIRES_AT) * 0.25)
            b.log(
                pod,
                "api",
                t,
                slog(
                    b.at(t),
                    "WARN",
                    "transfer backlog above threshold",
                    ("pending", pending),
                    ("threshold", 25),
                ),
            )


def _transfer_worker(b: Builder, pod: str, ledger: list[str]) -> None:
    rng = b.rng
    open_until = -1e9
    for t in b.poisson(b.lo, b.hi, 0.15):
        tid = f"tr_{b.hex(14)}"
        if t < CERT_EXPIRES_AT:
            b.log(
                pod,
                "worker",
                t,
                slog(
                    b.at(t),
                    "INFO",
                    "transfer posted",
                    ("transfer_id", tid),
                    ("duration", f"{rng.uniform(20, 90):.1f}ms"),
                ),
            )
            continue
        if t < open_until:
            b.log(
                pod,
                "worker",
                t,
                slog(
                    b.at(t),
                    "WARN",
                    "ledger circuit open, transfer requeued",
                    ("transfer_id", tid),
                    ("retry_in", "60s"),
                ),
            )
            continue
        now = b.at(t)
        b.log(
            pod,
            "worker",
            t,
            slog(
                now,
                "ERROR",
                "ledger call failed",
                ("transfer_id", tid),
                (
                    "err",
                    'Post "https://ledger.eval-tls.svc:8443/v1/entries": tls: failed to verify '
                    "certificate: x509: certificate has expired or is not yet valid: current time "
                    f"{_rfc3339_s(now)} is after 2026-11-24T03:00:00Z",
                ),
            ),
        )
        b.log(
            ledger[rng.randrange(2)],
            "ledger",
            t + 0.001,
            f"{go_log(now)} http: TLS handshake error from {b.pod_ip()}:"
            f"{rng.randrange(32768, 60999)}: remote error: tls: bad certificate",
        )
        b.log(
            pod,
            "worker",
            t + 0.002,
            slog(now, "WARN", "ledger circuit opened", ("failures", 1), ("open_for", "30s")),
        )
        open_until = t + 30


def _rfc3339_s(at: float) -> str:
    return iso(at, 0)


TLS_EXPIRED = Spec(
    Case(
        name="tls-cert-expired",
        story=(
            "The ledger's internal serving certificate expires at 03:00:00Z (its cert-manager "
            "renewal had been failing for weeks). transfer-worker's calls fail certificate "
            "verification (x509: certificate has expired), its circuit breaker requeues every "
            "transfer and the backlog grows; ledger only sees TLS handshake errors. Fix: renew "
            "the certificate."
        ),
        namespace="eval-tls",
        start=window("2026-11-24T02:30:00Z", 60)[0],
        end=window("2026-11-24T02:30:00Z", 60)[1],
        expected=Expected(
            cause_pattern=r"certificate has expired or is not yet valid",
            cause_keywords=("certificate has expired",),
        ),
        forbidden=(),
        tags=("tls", "certificates", "logfmt", "go"),
        approx_lines=3700,
        question="Transfers are stuck in pending since 03:00. Why?",
    ),
    gen_tls_expired,
)

# --- upstream-429-storm ---------------------------------------------------------------------

STORM_DEPLOY_AT = 688.0
SMS_TOKEN = "sgw_live_7Qm2xVb9KpL4tRz8NwE3yHc6JdF1aGs5"
THROTTLED_AT = 721.0


def gen_retry_storm(b: Builder) -> None:
    """notifier 3.4.0 retries every 2 s without backoff; the SMS provider throttles it."""
    token = SMS_TOKEN
    old = b.pods("notifier", 3)
    new = b.pods("notifier", 3)
    for pod in new:
        _notifier_boot(b, pod, STORM_DEPLOY_AT + b.rng.uniform(0, 4), token)
    for i, t in enumerate(b.poisson(b.lo, b.hi, 0.7)):
        pod = (old if t < STORM_DEPLOY_AT + 5 else new)[i % 3]
        _send_sms(b, pod, t)
    for pod in new:
        for t in b.ticks(THROTTLED_AT + 60, b.hi, 30.0):
            lag = int((t - THROTTLED_AT) * b.rng.uniform(0.3, 0.5))
            b.log(
                pod,
                "notifier",
                t,
                pylog(
                    b.at(t),
                    "WARNING",
                    "notifier.queue",
                    f"consumer lag {lag} messages on queue sms-outbound",
                ),
            )
    for pod in b.pods("otp-service", 2):
        for t in b.poisson(THROTTLED_AT + 30, b.hi, 0.08):
            b.log(
                pod,
                "otp",
                t,
                logfmt(
                    [
                        ("level", "warn"),
                        ("msg", "OTP delivery delayed"),
                        ("user_id", b.rng.randrange(10_000, 99_999)),
                        ("waited", f"{b.rng.randrange(30, 240)}s"),
                    ]
                ),
            )


def _notifier_boot(b: Builder, pod: str, t: float, token: str) -> None:
    lines = (
        ("INFO", "notifier", "starting notifier 3.4.0 (python 3.12.7)"),
        ("INFO", "notifier.sms", "retry policy: strategy=fixed delay=2s max_attempts=10"),
        (
            "DEBUG",
            "notifier.http",
            "default headers: {'Authorization': 'Bearer "
            f"{token}', 'User-Agent': 'notifier/3.4.0'}}",
        ),
        ("INFO", "notifier.queue", "consuming from sms-outbound (prefetch=50)"),
    )
    for i, (level, logger, msg) in enumerate(lines):
        b.log(pod, "notifier", t + 0.01 * i, pylog(b.at(t + 0.01 * i), level, logger, msg))


def _send_sms(b: Builder, pod: str, t: float) -> None:
    rng = b.rng
    msg_id = f"msg_{b.hex(16)}"
    phone = f"+49******{rng.randrange(1000, 9999)}"
    attempt = 1
    while t >= THROTTLED_AT and rng.random() > 0.27:
        if attempt == 10:
            b.log(
                pod,
                "notifier",
                t,
                pylog(b.at(t), "ERROR", "notifier.sms", f"giving up on {msg_id} after 10 attempts"),
            )
            return
        b.log(
            pod,
            "notifier",
            t,
            pylog(
                b.at(t),
                "WARNING",
                "notifier.sms",
                f"upstream returned 429 Too Many Requests, retrying in 2s (attempt {attempt}/10)",
            ),
        )
        attempt += 1
        t += 2.0 + rng.uniform(0.05, 0.3)
    b.log(
        pod,
        "notifier",
        t,
        pylog(
            b.at(t), "INFO", "notifier.sms", f"sent {msg_id} to {phone} provider_id=SM{b.hex(24)}"
        ),
    )


RETRY_STORM = Spec(
    Case(
        name="upstream-429-storm",
        story=(
            "notifier 3.4.0 (deployed 16:41) replaced exponential backoff with a fixed 2 s "
            "retry and ignores Retry-After. From 16:42 the SMS provider throttles the account "
            "and answers 429 Too Many Requests; the retries multiply the traffic, the queue "
            "lags and OTP codes arrive late. The cause is the rate limiting amplified by the "
            "missing backoff, not the OTP service."
        ),
        namespace="eval-retry-storm",
        start=window("2026-11-12T16:30:00Z", 30)[0],
        end=window("2026-11-12T16:30:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"Too Many Requests, retrying in",
            cause_keywords=("429",),
        ),
        forbidden=(SMS_TOKEN,),
        tags=("rate-limit", "retries", "python", "secrets", "logfmt", "noise"),
        approx_lines=4600,
        question="Users complain that login codes arrive late. What is happening?",
    ),
    gen_retry_storm,
)

# --- jwt-unknown-kid ------------------------------------------------------------------------

KEY_ROTATED_AT = 1021.0
NEW_KID = "2026-11-b"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(rng: random.Random, sub: str, iat: int) -> str:
    """An RS256-looking JWT with the new kid (the signature is random bytes)."""
    header = {"alg": "RS256", "kid": NEW_KID, "typ": "JWT"}
    claims = {"sub": sub, "iss": "https://auth.example.com", "iat": iat, "exp": iat + 900}
    signature = bytes(rng.getrandbits(8) for _ in range(256))
    return ".".join(
        (
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            _b64url(signature),
        )
    )


def _leaked_tokens() -> tuple[str, str]:
    """The two tokens the gateways print at debug level (fixed, so `forbidden` can list them)."""
    rng = random.Random(case_seed("jwt-unknown-kid/tokens"))
    iat = 1_795_252_600  # 2026-11-21T09:16:40Z
    return make_jwt(rng, "user-4211", iat), make_jwt(rng, "user-7730", iat + 25)


LEAKED_JWTS = _leaked_tokens()


def gen_jwt_kid(b: Builder) -> None:
    """auth signs with a new key that the JWKS endpoint does not publish yet."""
    auth = b.pod(b.replicaset("auth"))
    gateways = b.pods("api-gateway", 2)
    _auth_logs(b, auth)
    for i, pod in enumerate(gateways):
        t = KEY_ROTATED_AT + 40 + 25 * i
        while t < b.hi:
            b.log(
                pod,
                "gateway",
                t,
                logfmt(
                    [
                        ("level", "error"),
                        ("msg", "jwks refresh did not contain kid"),
                        ("kid", NEW_KID),
                        ("jwks_url", "http://auth:8080/.well-known/jwks.json"),
                        ("kids", "2026-10-a"),
                    ]
                ),
            )
            t += 300 * b.rng.uniform(0.98, 1.02)
        t_leak = KEY_ROTATED_AT + 41 + 25 * i
        b.log(
            pod,
            "gateway",
            t_leak,
            logfmt(
                [
                    ("level", "debug"),
                    ("msg", "rejected request"),
                    ("path", "/api/orders"),
                    ("authorization", f"Bearer {LEAKED_JWTS[i]}"),
                ]
            ),
        )
    for i, t in enumerate(b.poisson(b.lo, b.hi, 0.8)):
        _gateway_request(b, gateways[i % 2], t)


def _gateway_request(b: Builder, pod: str, t: float) -> None:
    rng = b.rng
    share_new = min(1.0, max(0.0, (t - KEY_ROTATED_AT) / 900))
    path = rng.choice(("/api/orders", "/api/orders/{id}", "/api/profile", "/api/cart"))
    path = path.replace("{id}", str(rng.randrange(10_000, 99_999)))
    status = 200
    pairs: list[tuple[str, Value]] = [("duration_ms", rng.randrange(4, 90))]
    if rng.random() < share_new:
        status, pairs = 401, [("reason", "unknown kid"), ("kid", NEW_KID)]
    line: list[tuple[str, Value]] = [
        ("level", "info" if status == 200 else "warn"),
        ("msg", "request" if status == 200 else "token rejected"),
        ("method", "GET"),
        ("path", path),
        ("status", status),
        *pairs,
        ("client_ip", f"203.0.113.{rng.randrange(2, 250)}"),
    ]
    b.log(pod, "gateway", t, logfmt(line))


def _auth_logs(b: Builder, pod: str) -> None:
    rng = b.rng
    t = KEY_ROTATED_AT
    b.log(
        pod,
        "auth",
        t,
        pylog(
            b.at(t),
            "INFO",
            "auth.keys",
            f"rotated signing key: new kid={NEW_KID} (RS256), previous kid "
            "2026-10-a kept for verification",
        ),
    )
    b.log(
        pod,
        "auth",
        t + 0.2,
        pylog(
            b.at(t + 0.2), "INFO", "auth.keys", "published JWKS from ConfigMap auth-jwks (1 key)"
        ),
    )
    for lo, hi, rate in ((b.lo, KEY_ROTATED_AT + 300, 0.06), (KEY_ROTATED_AT + 300, b.hi, 0.2)):
        for t2 in b.poisson(lo, hi, rate):
            kid = NEW_KID if t2 > KEY_ROTATED_AT else "2026-10-a"
            b.log(
                pod,
                "auth",
                t2,
                pylog(
                    b.at(t2),
                    "INFO",
                    "auth.tokens",
                    f"issued access token sub=user-{rng.randrange(1000, 9999)} kid={kid} ttl=900",
                ),
            )


JWT_KID = Spec(
    Case(
        name="jwt-unknown-kid",
        story=(
            "At 09:17 auth rotates its signing key to kid 2026-11-b, but the JWKS it serves "
            "comes from a ConfigMap that still holds only 2026-10-a. The gateways refresh "
            "the JWKS, do not find the new kid, and reject every new token with 401; as old "
            "tokens expire more users are logged out and log in again, which does not help."
        ),
        namespace="eval-jwt",
        start=window("2026-11-21T09:00:00Z", 30)[0],
        end=window("2026-11-21T09:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"jwks refresh did not contain kid",
            cause_keywords=("JWKS", NEW_KID),
        ),
        forbidden=LEAKED_JWTS,
        tags=("auth", "jwt", "logfmt", "python", "secrets"),
        approx_lines=3100,
        question="Users get logged out and see 401 errors. Why?",
    ),
    gen_jwt_kid,
)

# --- s3-invalid-access-key ------------------------------------------------------------------

KEY_DELETED_AT = 731.0
ACCESS_KEY_ID = "AKIA4QZ7XN2W5KTB8HRE"


def gen_s3_key(b: Builder) -> None:
    """The IAM access key used by reports-worker is deleted during a key rotation."""
    rng = b.rng
    rs = b.replicaset("reports-worker")
    workers = [b.pod(rs) for _ in range(2)]
    scaled = b.pod(rs)
    api = b.pods("reports-api", 2)
    _worker_boot(b, scaled, 1312.0)
    for t in (-1204.6, 318.2):
        b.log(
            workers[0],
            "worker",
            t,
            slog(
                b.at(t),
                "INFO",
                "report uploaded",
                ("report_id", "quarterly"),
                ("bucket", "acme-reports"),
                ("object_key", "uploads/2026/11/report.pdf"),
                ("size", 1_482_113),
            ),
        )
    for i, t in enumerate(b.poisson(b.lo, b.hi, 0.06)):
        pod = workers[i % 2] if t < 1315 or i % 3 else scaled
        _generate_report(b, pod, t, api[i % 2])
    for pod in api:
        for t in b.poisson(b.lo, b.hi, 0.2):
            rid = rng.randrange(40_000, 49_999)
            state = "failed" if t > KEY_DELETED_AT + 60 and rng.random() < 0.6 else "ready"
            b.log(
                pod,
                "api",
                t,
                slog(
                    b.at(t),
                    "INFO",
                    "request",
                    ("method", "GET"),
                    ("path", f"/v1/reports/{rid}"),
                    ("status", 200),
                    ("report_status", state),
                    ("duration", f"{rng.uniform(2, 20):.1f}ms"),
                ),
            )
    for t in b.ticks(KEY_DELETED_AT + 200, b.hi, 120.0):
        b.log(
            api[0],
            "api",
            t,
            slog(
                b.at(t),
                "WARN",
                "report queue backlog",
                ("queued", int((t - KEY_DELETED_AT) / 15)),
                ("oldest", f"{int(t - KEY_DELETED_AT)}s"),
            ),
        )


def _worker_boot(b: Builder, pod: str, t: float) -> None:
    lines: tuple[tuple[str, str, list[tuple[str, Value]]], ...] = (
        ("INFO", "starting reports-worker", [("version", "2.4.1")]),
        (
            "INFO",
            "aws config",
            [
                ("region", "eu-central-1"),
                ("credentials", "static"),
                ("access_key_id", ACCESS_KEY_ID),
            ],
        ),
        ("INFO", "consuming", [("queue", "reports"), ("concurrency", 4)]),
    )
    for i, (level, msg, pairs) in enumerate(lines):
        b.log(pod, "worker", t + 0.01 * i, slog(b.at(t + 0.01 * i), level, msg, *pairs))


def _generate_report(b: Builder, pod: str, t: float, api_pod: str) -> None:
    rng = b.rng
    rid = rng.randrange(40_000, 49_999)
    key = f"uploads/2026/11/report-{rid}.pdf"
    done = t + rng.uniform(2, 14)
    if done < KEY_DELETED_AT:
        b.log(
            pod,
            "worker",
            done,
            slog(
                b.at(done),
                "INFO",
                "report uploaded",
                ("report_id", rid),
                ("bucket", "acme-reports"),
                ("object_key", key),
                ("size", rng.randrange(40_000, 900_000)),
            ),
        )
        return
    for attempt in (1, 2, 3):
        at = done + (attempt - 1) * 4 * attempt
        b.log(
            pod,
            "worker",
            at,
            slog(
                b.at(at),
                "ERROR",
                "upload failed",
                ("report_id", rid),
                ("object_key", key),
                ("attempt", attempt),
                (
                    "err",
                    "operation error S3: PutObject, https response error StatusCode: 403, "
                    f"RequestID: {b.token(16, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789')}, HostID: "
                    f"{b.token(40, ALNUM)}=, api error InvalidAccessKeyId: The AWS Access Key Id "
                    "you provided does not exist in our records.",
                ),
            ),
        )
    end = done + 25
    b.log(
        pod,
        "worker",
        end,
        slog(b.at(end), "WARN", "report failed, giving up", ("report_id", rid), ("attempts", 3)),
    )
    b.log(
        api_pod,
        "api",
        end + 1,
        slog(
            b.at(end + 1),
            "INFO",
            "request",
            ("method", "POST"),
            ("path", "/v1/reports"),
            ("status", 202),
            ("duration", f"{rng.uniform(4, 30):.1f}ms"),
        ),
    )


S3_KEY = Spec(
    Case(
        name="s3-invalid-access-key",
        story=(
            "During an IAM key rotation at 12:12 the access key that reports-worker still "
            "uses as static credentials is deleted. Every PutObject to acme-reports fails with "
            "403 InvalidAccessKeyId, reports end up failed and the backlog grows; the HPA adds "
            "a worker that uses the same key. Fix: roll the new key into the Secret."
        ),
        namespace="eval-s3",
        start=window("2026-11-25T12:00:00Z", 30)[0],
        end=window("2026-11-25T12:00:00Z", 30)[1],
        expected=Expected(
            cause_pattern=r"api error InvalidAccessKeyId",
            cause_keywords=("InvalidAccessKeyId",),
        ),
        forbidden=(ACCESS_KEY_ID,),
        tags=("aws", "s3", "credentials", "logfmt", "go", "secrets"),
        approx_lines=1900,
        question=None,
    ),
    gen_s3_key,
)

SPECS = (DNS_NXDOMAIN, DNS_TIMEOUT, TLS_EXPIRED, RETRY_STORM, JWT_KID, S3_KEY)
