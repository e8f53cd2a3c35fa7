"""Tell a webhook about each new finding, once: a JSON body (naming the finding's tenant)
signed with HMAC-SHA256, retried with backoff, and every delivery (or its failure) recorded
in Redis among the tenant's deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence

import httpx
import redis

from shared import redis_keys
from shared.retry import RetryPolicy
from shared.schemas.backfills import Finding

SIGNATURE_HEADER = "X-Log-Analyzer-Signature"
DELIVERIES_KEPT = 1000
RETRY = RetryPolicy(attempts=4, base_s=1.0, cap_s=30.0)


class _Retryable(Exception):
    pass


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>` of the body, keyed by the shared secret (what receivers check)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(finding: Finding, job_id: str, tenant: str) -> bytes:
    event = {
        "event": "new_finding",
        "tenant": tenant,
        "job_id": job_id,
        "finding": finding.model_dump(mode="json"),
    }
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def deliver(
    http: httpx.Client,
    client: redis.Redis,
    url: str,
    secret: str,
    findings: Sequence[Finding],
    job_id: str,
    *,
    tenant: str,
    retry: RetryPolicy = RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST each finding to `url`; how many were accepted (2xx). Failures are recorded, not
    raised: a webhook that is down must not fail the job that found something."""
    delivered = 0
    for finding in findings:
        body = payload(finding, job_id, tenant)
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, body)
        attempts = 0

        def post(body: bytes = body, headers: dict[str, str] = headers) -> int:
            nonlocal attempts
            attempts += 1
            try:
                response = http.post(url, content=body, headers=headers, timeout=10)
            except httpx.HTTPError as exc:
                raise _Retryable(str(exc)) from exc
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(f"HTTP {response.status_code}")
            return response.status_code

        try:
            status = retry.call(
                post, retry_if=lambda e: isinstance(e, _Retryable), what="webhook", sleep=sleep
            )
            outcome = "delivered" if 200 <= status < 300 else f"refused {status}"
        except _Retryable as exc:
            outcome = f"failed: {exc}"
        delivered += outcome == "delivered"
        record = {
            "at": time.time(),
            "namespace": finding.namespace,
            "fingerprint": finding.fingerprint,
            "job_id": job_id,
            "attempts": attempts,
            "outcome": outcome,
        }
        deliveries = redis_keys.webhook_deliveries(tenant)
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(deliveries, json.dumps(record))
            pipe.ltrim(deliveries, 0, DELIVERIES_KEPT - 1)
            pipe.execute()
    return delivered
