"""`GET /v1/findings` against the real app and a real Redis: its query parameters."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from shared.findings_store import record_sightings
from shared.schemas import AnalysisRequest
from shared.settings import Settings
from shared.tenancy import DEFAULT_TENANT
from tests.support.findings import result_with_cause
from tests.support.incident import job_request

pytestmark = pytest.mark.integration

KEY = f"findings-{uuid.uuid4().hex[:8]}"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    settings = Settings(redis_url=redis_url, otel_sdk_disabled=True, api_keys=[digest])
    with TestClient(create_app(settings, enqueue=lambda job_id: None)) as test_client:
        yield test_client


@pytest.fixture
def a_finding(redis_url: str) -> str:
    """One finding in `shop`, last seen 2026-11-24 07:00 UTC; its job id."""
    job_id = uuid.uuid4().hex
    request = AnalysisRequest.model_validate(job_request())
    result = result_with_cause("fp-disk", request.time_range.start)
    with redis.Redis.from_url(redis_url) as sync:
        record_sightings(sync, DEFAULT_TENANT, job_id, request, result, ttl_s=3600)
    return job_id


@pytest.mark.parametrize(
    "since", ["2026-11-24T06:00:00", "2026-11-24T06:00", "2026-11-24", "-40271", "1764547200", "x"]
)
def test_a_since_without_a_time_zone_is_a_422_naming_it(
    client: TestClient, a_finding: str, since: str
) -> None:
    response = client.get("/v1/findings", params={"since": since}, headers=HEADERS)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["query", "since"] and "time zone" in detail["msg"]


@pytest.mark.parametrize(
    ("since", "listed"),
    [
        ("2026-11-24T06:59:59Z", True),
        ("2026-11-24T08:59:59+02:00", True),  # 06:59:59 UTC
        ("2026-11-24T07:00:01Z", False),
        (datetime(2030, 1, 1, tzinfo=UTC).isoformat(), False),
    ],
)
def test_since_with_a_time_zone_filters_by_last_seen(
    client: TestClient, a_finding: str, since: str, listed: bool
) -> None:
    response = client.get("/v1/findings", params={"since": since}, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert [f["recent"][0]["job_id"] for f in response.json()] == ([a_finding] if listed else [])
