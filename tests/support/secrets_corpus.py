"""Secrets as they show up in log lines (and their kinds), and ordinary lines that must stay
as they are. Used by the redaction unit tests and the end-to-end leak test."""

from __future__ import annotations

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
    ("config api_key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY loaded", "AIzaSyD-9tSrke72", "secret"),
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
