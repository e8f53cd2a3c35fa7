"""Secrets as they show up in log lines (and their kinds), and ordinary lines that must stay
as they are. Used by the redaction unit tests and the end-to-end leak test."""

from __future__ import annotations

import base64
import functools
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8d6dM3w7m9N0bTq4bT0a1Vq2s\n"
    "Yx9nQk1Vq7rR0Zq3c5b4mWqX8kE=\n"
    "-----END RSA PRIVATE KEY-----"
)

# (line, the secret that must vanish, placeholder kind that must appear)
SECRETS = [
    ("GET /api Authorization: Bearer abc123.DEF-456_ghi~jkl", "abc123.DEF-456_ghi~jkl", "token"),
    ('headers={"authorization": "bearer sk-live-9f8e7d6c5b4a"}', "sk-live-9f8e7d6c5b4a", "token"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "token"),
    (f"verified token {JWT} for user", JWT, "jwt"),
    (f"cookie session={JWT}; Path=/", JWT, "jwt"),
    ("using access key AKIAIOSFODNN7EXAMPLE in us-east-1", "AKIAIOSFODNN7EXAMPLE", "aws_key_id"),
    ("sts creds ASIAY34FZKBOKMUTVV7A expire soon", "ASIAY34FZKBOKMUTVV7A", "aws_key_id"),
    (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY region=eu-west-1",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "secret",
    ),
    (
        '{"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG"}',
        "wJalrXUtnFEMI/K7MDENG",
        "secret",
    ),
    ("clone with ghp_1234567890abcdefghijABCDEFGHIJ123456 failed", "ghp_1234567890abcd", "github"),
    ("oauth gho_16C7e42F292c6912E7710c838347Ae178B4a ok", "gho_16C7e42F292c6912E", "github"),
    ("app token ghs_abcdefghijklmnopqrstuvwxyz0123 ok", "ghs_abcdefghijklmnop", "github"),
    ("user token ghu_ABCDEFGHIJKLMNOPQRSTUVWX12 ok", "ghu_ABCDEFGHIJKLMNOP", "github"),
    (
        "GITHUB_TOKEN github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF set",
        "github_pat_11ABCDEFG0123456789",
        "github",
    ),
    ("slack: xoxb-2048123456-1234567890123-AbCdEfGhIjKlMnOpQrStUv", "xoxb-2048123456", "slack"),
    ("slack user xoxp-1234567890-0987654321-abcdef123456", "xoxp-1234567890", "slack"),
    (
        "POST https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX 200",
        "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "slack_webhook",
    ),
    ("connecting with password=hunter2 to db", "hunter2", "secret"),
    ('msg="login" user=bob passwd="correct horse battery"', "correct horse battery", "secret"),
    ("env PWD=s3cr3tPWD shell=bash", "s3cr3tPWD", "secret"),
    ("client_secret=Zm9vYmFyYmF6 grant_type=client_credentials", "Zm9vYmFyYmF6", "secret"),
    ("config api_key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY loaded", "AIzaSyD-9tSrke72", "google"),
    ("x-api-key=0f1e2d3c4b5a69788796a5b4c3d2e1f0 rejected", "0f1e2d3c4b5a6978", "secret"),
    ("apikey=live_6f1c2a9b rejected", "live_6f1c2a9b", "secret"),
    ("refresh_token=1//0gLkZzA9-xyz expired", "1//0gLkZzA9-xyz", "secret"),
    ("secret=topsecretvalue loaded", "topsecretvalue", "secret"),
    ("key=abcd1234efgh5678 rotated", "abcd1234efgh5678", "secret"),
    ('{"user": "app", "password": "Pa$$w0rd!", "host": "db"}', "Pa$$w0rd!", "secret"),
    ("{'password': 'hunter2', 'user': 'app'}", "hunter2", "secret"),
    ('{"db": {"password":"nested-secret"}}', "nested-secret", "secret"),
    ('"token": "tkn_live_abcdef"', "tkn_live_abcdef", "secret"),
    ("GET /cb?code=ok&access_token=ya29.a0AfH6SMB&state=1 200", "ya29.a0AfH6SMB", "secret"),
    ("GET /download?file=a.txt&token=deadbeefcafe 200", "deadbeefcafe", "secret"),
    ("db password: hunter2", "hunter2", "secret"),
    ("dial postgres://app:S3cr3t!@db.prod.svc:5432/app failed", "S3cr3t!", "credentials"),
    ("proxy http://admin:admin123@10.0.0.5:3128 up", "admin123", "credentials"),
    ("amqp://guest:guest@rabbitmq:5672/ connected", "guest:guest", "credentials"),
    (f"loaded key {PEM} from secret", "MIIEpAIBAAKCAQEA3Tz2", "private_key"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "private_key",
    ),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA (truncated",
        "b3BlbnNzaC1rZXktdjEAAAAA",
        "private_key",
    ),
    ("invite sent to jane.doe+k8s@example.co.uk", "jane.doe+k8s@example.co.uk", "email"),
    ("user=ops@corp.example.com logged in", "ops@corp.example.com", "email"),
]


KEEP = [
    "GET /healthz 200 1.2ms",
    'FATAL: password authentication failed for user "app"',
    "Readiness probe failed: Get http://10.1.2.3:8080/ready: dial tcp: connection refused",
    "max_tokens=512 temperature=0.2 tokens_total=180",
    "monkey=banana status=200 token_count=5 keyspace=users",
    "invalid token: expired",
    "key not found in cache",
    "cache hit ratio 0.93 for key space users",
    "secret rotation completed",
    "password reset requested",
    "Container api OOMKilled (exit code 137)",
    "git clone https://github.com/org/repo.git",
    "visit https://example.com/docs?page=2&lang=en",
    "Back-off restarting failed container app in pod api-7d9f8c6b5-x2x4k",
    "2024-05-01T12:00:00Z level=info msg=started",
    "scheduled on node ip-10-0-1-23.eu-west-1.compute.internal",
    "",
]


# Ordinary `key=value` lines (config names, cache, object, routing and idempotency keys, ids,
# digests): redacting any of them is a false positive that erases what the reader needs.
ORDINARY = [
    'level=fatal msg="missing required config" key=DATABASE_URL hint="set DATABASE_URL"',
    "config key=LOG_LEVEL value=debug source=env",
    '{"level":"error","msg":"missing required config","key":"PAYMENTS_API_URL"}',
    "cache miss cache_key=user:42:profile ttl=300",
    '{"msg":"cache set","key":"session:9f2c","ttl":60}',
    "put object_key=uploads/2026/11/report.pdf bucket=invoices size=20431",
    "get object_key=exports/2026/11/24/orders bucket=warehouse",
    "retrying request idempotency_key=7f3c9e2a-1b4d-4e8a-9c6f-2d5e8a1b3c7f attempt=2",
    "kafka produce key=order-1029384756 partition=3 offset=882731",
    "routing_key=orders.created exchange=events delivery_mode=2",
    "partition_key=eu-west-1 sort_key=2026-11-24T10:00:00Z",
    'duplicate key value violates unique constraint "orders_pkey"',
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 sampled=1",
    "pulled image registry.example.com/shop/api@sha256:"
    "9b2a6c1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "pod uid 5c1f2a3b-7d4e-4f6a-8b9c-0d1e2f3a4b5c scheduled on node-3",
    "feature flag key=checkout-v2-rollout enabled=true",
    "hash_key=customer_id range_key=created_at table=orders",
    "sharding key=tenant_id shards=16",
    "deployment api-7d9f8c6b5 rolled out revision=42",
    "GET /api/v1/orders/8f14e45fceea167a5a36dedd4bea2543 200 12ms",
]


# The measured corpus (docs/redaction.md, bench/redaction.py): secrets in the formats their
# providers document, each in a log line of the kind that carries it, and look-alikes that
# must come out unchanged. Values are generated from each documented shape with a fixed seed
# (no real credential is stored here); a few are the providers' own published examples.

_RNG = random.Random(2011)
_UPPER = string.ascii_uppercase
_LOWER = string.ascii_lowercase
_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"
_B64URL = _ALNUM + "-_"
_HEX = "0123456789abcdef"


def _r(alphabet: str, n: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _b64(raw: bytes, *, url: bool = False, pad: bool = True) -> str:
    text = (base64.urlsafe_b64encode if url else base64.b64encode)(raw).decode()
    return text if pad else text.rstrip("=")


def _jwt(claims: dict[str, object]) -> str:
    header = _b64(
        json.dumps({"alg": "RS256", "typ": "JWT", "kid": _r(_HEX, 8)}).encode(), url=True, pad=False
    )
    payload = _b64(json.dumps(claims).encode(), url=True, pad=False)
    return f"{header}.{payload}.{_r(_B64URL, 86)}"


def _pem(label: str) -> str:
    body = "\n".join(_r(_B64, 64) for _ in range(3))
    return f"-----BEGIN {label}-----\n{body}\n{_r(_B64, 40)}==\n-----END {label}-----"


# Contexts for a bare token: unlabelled, JSON under a neutral name, logfmt under a neutral name.
_BARE = (
    "ERROR upstream call failed, credential {s} rejected (401)",
    '{{"level":"error","msg":"auth failed","credential":"{s}","status":401}}',
    'level=warn msg="retrying" cred={s} attempt=2',
)


def _bare(make: Callable[[], str], n: int = 3) -> list[tuple[str, str]]:
    return [(_BARE[i % len(_BARE)].format(s=(s := make())), s) for i in range(n)]


def _documented() -> list[tuple[str, str, str]]:
    """(format, line, the secret that must vanish)."""
    rows: list[tuple[str, str, str]] = []

    def add(fmt: str, pairs: list[tuple[str, str]]) -> None:
        rows.extend((fmt, line, secret) for line, secret in pairs)

    # Cloud keys.
    add("aws_access_key_id", _bare(lambda: "AKIA" + _r(_UPPER + "234567", 16)))
    add("aws_access_key_id", _bare(lambda: "ASIA" + _r(_UPPER + "234567", 16), 1))
    add("aws_access_key_id", [("aws: using AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE")])
    aws_secret = _r(_B64, 40)
    add(
        "aws_secret_access_key",
        [
            (f"aws_secret_access_key = {aws_secret}", aws_secret),
            (f"AWS_SECRET_ACCESS_KEY={(s := _r(_B64, 40))} exported", s),
            (
                f'{{"AccessKeyId":"ASIA{_r(_UPPER, 16)}",'
                f'"SecretAccessKey":"{(t := _r(_B64, 40))}"}}',
                t,
            ),
            (f"X-Amz-Security-Token: {(u := _r(_B64, 120))}", u),
        ],
    )
    add(
        "aws_sigv4",
        [
            (
                "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1"
                f"/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={(s := _r(_HEX, 64))}",
                s,
            ),
            (
                f"GET /bucket/a.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Signature={(t := _r(_HEX, 64))}",
                t,
            ),
        ],
    )
    add("gcp_api_key", _bare(lambda: "AIza" + _r(_B64URL, 35)))
    add("gcp_oauth_token", _bare(lambda: "ya29." + _r(_B64URL, 120), 2))
    sa_key = _pem("PRIVATE KEY")
    escaped = sa_key.replace("\n", "\\n")
    add(
        "gcp_service_account",
        [(f'{{"type":"service_account","private_key":"{escaped}"}}', sa_key.splitlines()[1])],
    )
    acct = _b64(_RNG.randbytes(64))
    sas_sig = _b64(_RNG.randbytes(32)).replace("+", "%2B").replace("/", "%2F")
    bot_token = _r(string.digits, 10) + ":AA" + _r(_B64URL, 33)
    add(
        "azure_storage_key",
        [
            (
                f"DefaultEndpointsProtocol=https;AccountName=shop;AccountKey={acct};EndpointSuffix=core.windows.net",
                acct,
            ),
            (
                f"Endpoint=sb://bus.servicebus.windows.net/;SharedAccessKeyName=send"
                f";SharedAccessKey={(s := _b64(_RNG.randbytes(32)))}",
                s,
            ),
            (
                f"PUT https://shop.blob.core.windows.net/c/a.txt?sv=2022-11-02&se=2024-01-01&sp=rw"
                f"&sig={sas_sig} 403",
                sas_sig,
            ),
        ],
    )
    add("digitalocean_token", _bare(lambda: "dop_v1_" + _r(_HEX, 64), 2))
    add("databricks_token", _bare(lambda: "dapi" + _r(_HEX, 32), 2))
    # Code hosts and package registries.
    for prefix in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"):
        add("github_token", _bare(functools.partial(str.__add__, prefix, _r(_ALNUM, 36)), 1))
    add("github_token", _bare(lambda: f"github_pat_{_r(_ALNUM, 22)}_{_r(_ALNUM, 59)}", 2))
    add("gitlab_token", _bare(lambda: "glpat-" + _r(_B64URL, 20)))
    add("gitlab_token", [(f"PRIVATE-TOKEN: {(s := 'glpat-' + _r(_ALNUM, 20))}", s)])
    add("npm_token", _bare(lambda: "npm_" + _r(_ALNUM, 36), 2))
    add("npm_token", [(f"//registry.npmjs.org/:_authToken={(s := 'npm_' + _r(_ALNUM, 36))}", s)])
    add("pypi_token", _bare(lambda: "pypi-AgEIcHlwaS5vcmc" + _r(_B64URL, 120), 2))
    # Chat, payments, mail, monitoring, AI APIs.
    add(
        "slack_token",
        _bare(lambda: f"xoxb-{_r(string.digits, 12)}-{_r(string.digits, 13)}-{_r(_ALNUM, 24)}"),
    )
    add(
        "slack_token",
        _bare(
            lambda: (
                f"xoxp-{_r(string.digits, 12)}-{_r(string.digits, 12)}"
                f"-{_r(string.digits, 13)}-{_r(_HEX, 32)}"
            ),
            1,
        ),
    )
    add(
        "slack_token",
        _bare(
            lambda: (
                f"xapp-1-A{_r(_UPPER + string.digits, 10)}-{_r(string.digits, 13)}-{_r(_HEX, 64)}"
            ),
            1,
        ),
    )
    add(
        "slack_webhook",
        [
            (
                f"POST https://hooks.slack.com/services/T{_r(_UPPER + string.digits, 8)}"
                f"/B{_r(_UPPER + string.digits, 8)}/{(s := _r(_ALNUM, 24))} 404",
                s,
            )
        ],
    )
    add(
        "discord_webhook",
        [
            (
                f"POST https://discord.com/api/webhooks/{_r(string.digits, 18)}"
                f"/{(s := _r(_B64URL, 68))} 429",
                s,
            )
        ],
    )
    add(
        "telegram_bot_token",
        [
            (
                f"GET https://api.telegram.org/bot{bot_token}/getMe 401",
                bot_token,
            )
        ],
    )
    add("stripe_key", _bare(lambda: "sk_live_" + _r(_ALNUM, 99), 2))
    add("stripe_key", _bare(lambda: "rk_live_" + _r(_ALNUM, 99), 1))
    add("stripe_key", [(f"webhook secret whsec_{(s := _r(_ALNUM, 32))} loaded", s)])
    add("square_token", _bare(lambda: "EAAA" + _r(_B64URL, 60), 1))
    add("square_token", _bare(lambda: "sq0atp-" + _r(_B64URL, 22), 1))
    add("shopify_token", _bare(lambda: "shpat_" + _r(_HEX, 32), 2))
    add("sendgrid_key", _bare(lambda: f"SG.{_r(_B64URL, 22)}.{_r(_B64URL, 43)}", 2))
    add("mailgun_key", _bare(lambda: "key-" + _r(_HEX, 32), 1))
    add("newrelic_key", _bare(lambda: "NRAK-" + _r(_UPPER + string.digits, 27), 1))
    add("grafana_token", _bare(lambda: f"glsa_{_r(_ALNUM, 32)}_{_r(_HEX, 8)}", 1))
    add(
        "atlassian_token",
        _bare(lambda: "ATATT3xFfGF0" + _r(_B64URL, 170) + "=" + _r(_HEX.upper(), 8), 1),
    )
    add("openai_key", _bare(lambda: f"sk-proj-{_r(_B64URL, 74)}T3BlbkFJ{_r(_B64URL, 74)}", 2))
    add("anthropic_key", _bare(lambda: f"sk-ant-api03-{_r(_B64URL, 93)}AA", 2))
    add("huggingface_token", _bare(lambda: "hf_" + _r(_ALNUM, 34), 2))
    add("vault_token", _bare(lambda: "hvs.CAESI" + _r(_B64URL, 86), 2))
    add("vault_token", _bare(lambda: "hvb.AAAAAQ" + _r(_B64URL, 120), 1))
    add("vault_token", [(f"X-Vault-Token: {(s := 's.' + _r(_ALNUM, 24))}", s)])
    # Tokens in HTTP headers and cookies.
    add(
        "authorization_header",
        [
            (f"Authorization: Bearer {(s := _r(_B64URL, 40))}", s),
            (f'headers={{"Authorization": "Bearer {(t := _r(_ALNUM, 32))}"}}', t),
            (f"Authorization: Basic {(u := _b64(b'deploy:' + _r(_ALNUM, 16).encode()))}", u),
            (f'authorization="Basic {(v := _b64(b"svc:" + _r(_ALNUM, 12).encode()))}"', v),
            (
                f"Authorization: ApiKey "
                f"{(w := _b64((_r(_ALNUM, 20) + ':' + _r(_B64URL, 22)).encode()))}",
                w,
            ),
            (f"Authorization: Token {(x := _r(_HEX, 40))}", x),
            (f"Proxy-Authorization: Basic {(y := _b64(b'proxy:' + _r(_ALNUM, 10).encode()))}", y),
            (f"Authorization: SSWS 00{(z := _r(_B64URL, 40))}", z),
        ],
    )
    add(
        "cookie",
        [
            (f"Set-Cookie: sessionid={(s := _r(_LOWER + string.digits, 32))}; HttpOnly; Secure", s),
            (
                f"Cookie: csrftoken={_r(_ALNUM, 32)}"
                f"; sessionid={(t := _r(_LOWER + string.digits, 32))}",
                t,
            ),
            (f"Cookie: JSESSIONID={(u := _r(_HEX.upper(), 32))}; Path=/", u),
            (f"Cookie: PHPSESSID={(v := _r(_LOWER + string.digits, 26))}", v),
            (f"session_id={(w := _r(_B64URL, 43))} expired for user=42", w),
        ],
    )
    jwts = [
        _jwt({"sub": _r(string.digits, 10), "iss": "https://auth.example.com", "exp": 1893456000}),
        _jwt({"sub": "svc-payments", "aud": "api", "scope": "read write"}),
        _jwt({"email_verified": True, "azp": _r(_ALNUM, 20)}),
    ]
    add(
        "jwt",
        [
            (f"verify failed for token {jwts[0]}", jwts[0]),
            (f'{{"msg":"bad token","id_token":"{jwts[1]}"}}', jwts[1]),
            (f"cookie session={jwts[2]}; Path=/", jwts[2]),
        ],
    )
    # Private keys.
    for label in (
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
        "DSA PRIVATE KEY",
    ):
        pem = _pem(label)
        add("pem_private_key", [(f"loaded key from secret:\n{pem}", pem.splitlines()[1])])
    # Connection strings and DSNs.
    for url in (
        "postgres://app:{p}@db.prod.svc:5432/app?sslmode=require",
        "postgresql://reporting:{p}@10.0.3.4/analytics",
        "mysql://root:{p}@mysql-0.mysql:3306/shop",
        "mongodb://admin:{p}@mongo-0.mongo,mongo-1.mongo:27017/?replicaSet=rs0",
        "mongodb+srv://svc:{p}@cluster0.ab1cd.mongodb.net/orders",
        "redis://:{p}@redis-master:6379/0",
        "rediss://default:{p}@cache.example.com:6380",
        "amqp://orders:{p}@rabbitmq:5672/%2f",
        "amqps://svc:{p}@mq.example.com:5671/prod",
        "https://deploy:{p}@artifacts.example.com/repo/pkg.tgz",
        "ftp://backup:{p}@ftp.example.com/dumps",
        "jdbc:postgresql://db:5432/app?user=app&password={p}",
        "sqlserver://sa:{p}@mssql:1433?database=shop",
    ):
        pw = _r(_ALNUM, 14) + "!"
        add("dsn", [(f"connect to {url.format(p=pw)} failed: timeout", pw)])
    for dsn in (
        "app:{p}@tcp(mysql.prod:3306)/shop?parseTime=true",
        "root:{p}@tcp(127.0.0.1:3306)/test",
        "svc:{p}@unix(/var/run/mysqld/mysqld.sock)/orders",
    ):
        pw = _r(_ALNUM, 12)
        add("go_mysql_dsn", [(f"open db: dial {dsn.format(p=pw)}: i/o timeout", pw)])
    add(
        "dsn_keywords",
        [
            (f"Server=mssql;Database=shop;User Id=sa;Password={(s := _r(_ALNUM, 16))};", s),
            (f"host=db port=5432 user=app password={(t := _r(_ALNUM, 16))} dbname=app", t),
            (f"mysql -u root --password={(u := _r(_ALNUM, 12))} -h db", u),
            (f"curl -u deploy:{(v := _r(_ALNUM, 14))} https://artifacts.internal", v),
        ],
    )
    # Secrets by the name of their field.
    for name in (
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "access_token",
        "refresh_token",
        "auth_token",
        "secret_key",
        "private_key",
        "pass",
    ):
        value = _r(_ALNUM, 20)
        add("named_field", [(f"config loaded {name}={value} env=prod", value)])
    for name in ("password", "pass", "secret", "token", "apiKey", "client_secret"):
        value = _r(_ALNUM, 18)
        add("json_field", [(f'{{"user":"app","{name}":"{value}","host":"db"}}', value)])
    add(
        "yaml_field",
        [
            (f"db password: {(s := _r(_ALNUM, 16))}", s),
            (f'DB_PASSWORD: "{(t := _r(_ALNUM, 16))}"', t),
            (f"smtp_pass = '{(u := _r(_ALNUM, 16))}'", u),
        ],
    )
    return rows


DOCUMENTED_SECRETS = _documented()


def _uuid() -> str:
    return str(uuid.UUID(int=_RNG.getrandbits(128), version=4))


def _look_alikes() -> list[tuple[str, str]]:
    """(kind, line) that redaction must leave exactly as it is."""
    rows: list[tuple[str, str]] = []
    for template in (
        "GET /api/v1/orders/{u} 200 12ms",
        "PUT /v2/tenants/{u}/users/{v}/avatar 204",
        "DELETE https://api.example.com/projects/{u}/members/{v} 404",
        "com.apple.ical.sync.x-coredata://{U}/CalDAVPrincipal/p11: job deferred",
        "file:///private/var/folders/1x/{U}/T/com.apple.Safari/cache.db opened",
        "/var/lib/kubelet/pods/{u}/volumes/kubernetes.io~secret/token mounted",
        "s3://exports/{u}/2026/11/24/part-00000.parquet written",
        "idempotency_key={u} replayed",
        "GET /v1/files/{h}/download?version=3 200",
        "GET /objects/{h}/{h2} 304",
    ):
        line = template.format(
            u=_uuid(), v=_uuid(), U=_uuid().upper(), h=_r(_HEX, 40), h2=_r(_HEX, 64)
        )
        rows.append(("id_in_path", line))
    for line in (
        "node rabbit@rabbitmq-0.rabbitmq-headless.default.svc.cluster.local down",
        "Node 'rabbit@ip-10-0-1-23.eu-west-1.compute.internal' not responding",
        "rabbit@rabbit2.example.com: partial partition detected",
        "ejabberd@localhost started",
        "emqx@10.0.0.5 joined the cluster",
        "couchdb@couchdb-1.couchdb.db.svc.cluster.local is unreachable",
        "connected to riak@riak-2.internal",
        "Cloning into 'payments'... git@github.com:org/payments.git",
        "fatal: Could not read from remote repository git@gitlab.com:group/proj.git",
        "fetch ssh://git@bitbucket.org/team/repo.git failed",
        "remote deploy@web-1.prod.example.com:/var/www/releases updated",
        "pulling registry.example.com/shop/api@sha256:" + _r(_HEX, 64),
        "installed @types/node@20.11.5 and @babel/core@7.24.0",
        "postgres@db-0 restarted",
    ):
        rows.append(("at_sign", line))
    for line in (
        f"commit {_r(_HEX, 40)} merged into main",
        f"sha256={_r(_HEX, 64)} verified",
        f"md5 {_r(_HEX, 32)} matches",
        f'etag "{_r(_HEX, 32)}" unchanged',
        f"integrity sha512-{_b64(_RNG.randbytes(64))} ok",
        f"digest: sha256:{_r(_HEX, 64)} size: 1573",
        f"checksum={_r(_HEX.upper(), 64)} ok",
        f"git rev-parse HEAD -> {_r(_HEX, 12)}",
        f"content hash {_b64(_RNG.randbytes(32), url=True, pad=False)}",
        f"file id {_r(_HEX, 24)} uploaded",
    ):
        rows.append(("hash", line))
    for line in (
        f"request_id={_uuid()} status=200",
        f"X-Request-Id: {_uuid()}",
        f"trace_id={_r(_HEX, 32)} span_id={_r(_HEX, 16)} sampled=1",
        f"traceparent: 00-{_r(_HEX, 32)}-{_r(_HEX, 16)}-01",
        f"x-amzn-RequestId: {_uuid()}",
        f"x-amz-request-id: {_r(_HEX.upper(), 16)} x-amz-id-2: {_r(_ALNUM, 56)}=",
        f"cf-ray: {_r(_HEX, 16)}-FRA",
        f"Stripe request req_{_r(_ALNUM, 14)} failed",
        f"job 01H{_r('0123456789ABCDEFGHJKMNPQRSTVWXYZ', 23)} queued",
        f"event {_r(_ALNUM, 27)} published",
        f"order {_r(string.digits, 19)} created",
        f"correlation-id={_r(_B64URL, 21)}",
        f'ObjectId("{_r(_HEX, 24)}") not found',
        f"grpc-trace-bin missing for call {_r(_HEX, 16)}",
        f"build {_r(string.digits, 5)} of pipeline {_uuid()} finished",
    ):
        rows.append(("request_id", line))
    for line in (
        "Back-off restarting failed container app in pod api-7d9f8c6b5-x2x4k",
        "Successfully assigned shop/payments-5c9f7b8d6-qwz7p"
        " to ip-10-0-1-23.eu-west-1.compute.internal",
        "arn:aws:iam::123456789012:role/service-role/payments-lambda-role assumed",
        "arn:aws:s3:::shop-exports-eu-west-1/2026/11/24/orders.csv read",
        "image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:v2.14.3 pulled",
        "Failed to renew lease for [DFSClient_NONMAPREDUCE_1537864556_1] for 30 seconds",
        "Installing package Microsoft-Windows-PlatformUpdate-Win7-SRV08R2-Package-TopLevel"
        "~31bf3856ad364e35~amd64~~7.1.7601.16492",
        "ciod: Error loading /bgl/apps/scaletest/performance/MINIBEN/mb_243_0810/allreduce.rts",
        "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator:"
        " Assigned container container_1445144423722_0020_01_000002",
        "printFreezingDisplayLogsopening app wtoken = AppWindowToken{9f4ef63"
        " token=Token{a64f992 ActivityRecord{de9231d u0}}}",
        "java.lang.NullPointerException at com.example.payments.CheckoutController.handle"
        "(CheckoutController.java:142)",
        "kafka produce key=order-1029384756 partition=3 offset=882731",
        "cache miss cache_key=user:42:profile ttl=300",
        "put object_key=uploads/2026/11/report.pdf bucket=invoices size=20431",
        "feature flag key=checkout-v2-rollout enabled=true",
        "config key=DATABASE_URL missing",
        "LD_LIBRARY_PATH=/usr/local/lib64:/opt/nvidia/lib64 set",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "GOFLAGS=-mod=vendor GOPROXY=off",
        "k8s.io/client-go/tools/cache/reflector.go:169: watch of *v1.Pod ended",
        "base64 payload size=4096 encoding=base64url",
        "TLS handshake ok: TLS_AES_256_GCM_SHA384 ECDHE-RSA-AES128-GCM-SHA256",
        "resourceVersion=1234567 uid=5c1f2a3b-7d4e-4f6a-8b9c-0d1e2f3a4b5c",
    ):
        rows.append(("identifier", line))
    for line in (
        "invalid bearer token",
        "Bearer token expired, refreshing",
        'WWW-Authenticate: Bearer realm="api", error="invalid_token"',
        "Authorization header missing",
        "authorization failed for user bob",
        "token expired",
        "invalid token: expired",
        'password authentication failed for user "app"',
        "password reset requested for user=42",
        "secret rotation completed",
        "key not found in cache",
        "max_tokens=512 temperature=0.2 tokens_total=180",
        "token_count=5 keyspace=users",
        "bypass=true reason=maintenance",
        "tests passed=42 failed=0 skipped=1",
        "session opened for user root by (uid=0)",
        "pam_unix(sshd:session): session closed for user admin",
        "Accepted publickey for deploy from 10.0.0.5 port 52144 ssh2",
        "Failed password for invalid user oracle from 61.187.54.9 port 43004 ssh2",
        "SSL_CTX_use_PrivateKey_file failed",
        "loading private key from /etc/ssl/private/server.key",
        "-----BEGIN CERTIFICATE----- received, chain length 3",
        "mysql connect app@tcp(db:3306)/shop",
        "dial redis://redis-master:6379/0 ok",
        "connected to postgres://db.prod.svc:5432/app",
        "mongodb://mongo-0.mongo:27017/?replicaSet=rs0 primary changed",
        "amqp://rabbitmq:5672/ connection closed",
        "GET https://api.example.com:8443/v1/health?verbose=true 200",
        "POST /oauth/token grant_type=client_credentials 200",
        "vault: token renewed, ttl=768h",
        "hvs token lookup ok",
        "x-api-key header missing",
        "ApiKey auth disabled",
        "sessionid cookie missing",
        "pass 3 of 5 complete",
        "retry 3/5 after 2s",
        "2026-11-24T10:00:00Z level=info msg=started version=v1.2.3",
        "GET /static/js/main.4f2c9a1b.chunk.js 200",
        "GET /favicon.ico 404",
        "worker-3 picked job 42 from queue=default",
        "user alice@ logged out",
        '{"test": "login", "pass": true, "fail": 0}',
        '{"token": null, "error": "unauthenticated"}',
        'password="" rejected: empty',
    ):
        rows.append(("word", line))
    return rows


LOOK_ALIKES = _look_alikes()


@dataclass(frozen=True)
class Score:
    """How a redaction function does on the measured corpus."""

    secrets: int
    look_alikes: int
    missed: list[tuple[str, str]]  # (format, line) whose secret survived
    changed: list[tuple[str, str]]  # (kind, line) of look-alikes that did not come out as-is
    by_format: dict[str, tuple[int, int]]  # format -> (caught, total)

    @property
    def recall(self) -> float:
        return 1 - len(self.missed) / self.secrets

    @property
    def false_positive_rate(self) -> float:
        return len(self.changed) / self.look_alikes


def score(redact: Callable[[str], tuple[str, int]]) -> Score:
    """A secret is caught when it is gone and a redaction was counted; a look-alike is a
    false positive when its line comes out changed in any way."""
    missed: list[tuple[str, str]] = []
    by_format: dict[str, tuple[int, int]] = {}
    for fmt, line, secret in DOCUMENTED_SECRETS:
        text, count = redact(line)
        caught = secret not in text and count >= 1
        if not caught:
            missed.append((fmt, line))
        hit, total = by_format.get(fmt, (0, 0))
        by_format[fmt] = (hit + caught, total + 1)
    changed = [(kind, line) for kind, line in LOOK_ALIKES if redact(line)[0] != line]
    return Score(len(DOCUMENTED_SECRETS), len(LOOK_ALIKES), missed, changed, by_format)
