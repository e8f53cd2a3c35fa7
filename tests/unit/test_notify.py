"""The webhook sender (workers.notify): signature, retries, recorded outcomes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import fakeredis
import httpx

from shared import redis_keys
from shared.schemas import Level
from shared.schemas.backfills import Finding
from workers.notify import SIGNATURE_HEADER, deliver

TENANT = "team-a"
T0 = datetime(2026, 11, 24, 6, tzinfo=UTC)
FINDING = Finding(
    namespace="shop", fingerprint="fp", template="disk full", level=Level.ERROR,
    first_seen=T0, last_seen=T0, sightings=1, lines=3,
)  # fmt: skip


def recorded(client: fakeredis.FakeRedis) -> list[dict[str, object]]:
    return [json.loads(r) for r in client.lrange(redis_keys.webhook_deliveries(TENANT), 0, -1)]


def test_a_5xx_is_retried_and_the_body_is_signed() -> None:
    answers = iter([503, 502, 204])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    client = fakeredis.FakeRedis()
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        sent = deliver(
            http,
            client,
            "http://hook",
            "shh",
            [FINDING],
            "job-1",
            tenant=TENANT,
            sleep=lambda _s: None,
        )
    assert sent == 1 and len(seen) == 3
    body = seen[-1].content
    assert seen[-1].headers[SIGNATURE_HEADER] == (
        "sha256=" + hmac.new(b"shh", body, hashlib.sha256).hexdigest()
    )
    assert json.loads(body)["tenant"] == TENANT  # one URL hears every tenant: say whose
    (record,) = recorded(client)
    assert (record["outcome"], record["attempts"], record["fingerprint"]) == ("delivered", 3, "fp")


def test_a_webhook_that_stays_down_is_recorded_not_raised() -> None:
    client = fakeredis.FakeRedis()
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    with httpx.Client(transport=transport) as http:
        sent = deliver(
            http,
            client,
            "http://hook",
            "",
            [FINDING],
            "job-1",
            tenant=TENANT,
            sleep=lambda _s: None,
        )
    assert sent == 0
    (record,) = recorded(client)
    assert str(record["outcome"]).startswith("failed") and record["attempts"] == 5


def test_a_4xx_is_not_retried() -> None:
    client = fakeredis.FakeRedis()
    transport = httpx.MockTransport(lambda request: httpx.Response(410))
    with httpx.Client(transport=transport) as http:
        deliver(
            http,
            client,
            "http://hook",
            "",
            [FINDING],
            "job-1",
            tenant=TENANT,
            sleep=lambda _s: None,
        )
    (record,) = recorded(client)
    assert (record["outcome"], record["attempts"]) == ("refused 410", 1)
