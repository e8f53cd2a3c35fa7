"""Keys that own their jobs and see only their namespaces: the real app on a real Redis, and
one stack of real API and worker processes for what crosses into the worker (the Loki
tenant) and what must reach an open stream (a revoked key)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import api.auth
from api.main import create_app
from shared.settings import Settings
from tests.support.incident import job_request
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]  # fresh keys per run: rate windows live in Redis for two minutes
PAYMENTS, SEARCH, OPS, LEGACY = (f"{name}-{RUN}" for name in ("pay", "search", "ops", "legacy"))


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_file(*entries: dict[str, Any]) -> str:
    return json.dumps({"keys": list(entries)})


def entry(key: str, name: str, namespaces: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "sha256": sha(key), "namespaces": namespaces, **extra}


TEAMS = key_file(
    entry(PAYMENTS, "payments", ["shop", "payments-[a-z]+"], tenant="team-payments"),
    entry(SEARCH, "search", ["search"]),
    entry(OPS, "ops", [".*"], role="admin"),
)


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture
def keyfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(api.auth, "FILE_RECHECK_S", 0.0)
    path = tmp_path / "keys.json"
    path.write_text(TEAMS)
    return path


@pytest.fixture
def client(redis_url: str, keyfile: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, otel_sdk_disabled=True, api_keys_file=str(keyfile))
    with TestClient(create_app(settings, enqueue=lambda job_id: None)) as test_client:
        yield test_client


def submit(client: TestClient, key: str, namespace: str = "shop") -> str:
    body = job_request(filters={"namespace": namespace})
    response = client.post("/v1/jobs", json=body, headers=as_key(key))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_another_keys_job_is_indistinguishable_from_no_job(client: TestClient) -> None:
    job_id = submit(client, PAYMENTS)
    unknown = uuid.uuid4().hex
    for method, path in (("GET", ""), ("GET", "/events"), ("DELETE", "")):
        theirs = client.request(method, f"/v1/jobs/{job_id}{path}", headers=as_key(SEARCH))
        missing = client.request(method, f"/v1/jobs/{unknown}{path}", headers=as_key(SEARCH))
        assert theirs.status_code == missing.status_code == 404, (method, path)
        assert theirs.json()["code"] == missing.json()["code"] == "job_not_found"
    owner_view = client.get(f"/v1/jobs/{job_id}", headers=as_key(PAYMENTS))
    assert owner_view.status_code == 200 and owner_view.json()["status"] == "queued"


def test_an_admin_sees_and_cancels_any_job(client: TestClient) -> None:
    job_id = submit(client, PAYMENTS)
    assert client.get(f"/v1/jobs/{job_id}", headers=as_key(OPS)).status_code == 200
    cancelled = client.delete(f"/v1/jobs/{job_id}", headers=as_key(OPS))
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    # An admin may also analyse any namespace its entry allows.
    submit(client, OPS, namespace="search")


@pytest.mark.parametrize("namespace", ["search", "payments", "payments-eu2", "xshop", "shop-x"])
def test_a_namespace_outside_the_scope_is_403_naming_the_field(
    client: TestClient, redis_url: str, namespace: str
) -> None:
    body = job_request(filters={"namespace": namespace})
    for path in ("/v1/jobs", "/v1/analyze/stream"):
        response = client.post(path, json=body, headers=as_key(PAYMENTS))
        assert response.status_code == 403, (path, response.text)
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", "filters", "namespace"]
        assert namespace in detail["msg"]


def test_regex_scopes_match_whole_names(client: TestClient) -> None:
    submit(client, PAYMENTS, namespace="payments-eu")
    submit(client, SEARCH, namespace="search")


def test_per_key_limits_override_the_global_ones(client: TestClient, keyfile: Path) -> None:
    capped = f"capped-{RUN}"
    keyfile.write_text(key_file(entry(capped, "capped", ["shop"], limits={"max_active_jobs": 1})))
    submit(client, capped)
    second = client.post("/v1/jobs", json=job_request(), headers=as_key(capped))
    assert second.status_code == 429 and "1 jobs queued or running" in second.json()["detail"]


def test_the_old_key_file_format_gives_unscoped_analysts(client: TestClient, keyfile: Path) -> None:
    other = f"legacy-other-{RUN}"
    keyfile.write_text(f"# digests, one per line\n{sha(LEGACY)}\n{sha(other)}\n")
    job_id = submit(client, LEGACY, namespace="anything-at-all")
    assert client.get(f"/v1/jobs/{job_id}", headers=as_key(other)).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=as_key(LEGACY)).status_code == 200


def test_a_broken_key_file_refuses_every_key_until_fixed(
    client: TestClient, keyfile: Path, caplog: pytest.LogCaptureFixture
) -> None:
    submit(client, PAYMENTS)
    keyfile.write_text('{"keys": [{"name": "half-writ')
    with caplog.at_level(logging.ERROR, logger="api.auth"):
        refused = client.post("/v1/jobs", json=job_request(), headers=as_key(PAYMENTS))
    assert refused.status_code == 503 and refused.json()["code"] == "keys_unavailable"
    assert any("every request is refused" in r.getMessage() for r in caplog.records)
    keyfile.write_text(TEAMS)
    submit(client, PAYMENTS)


def test_audit_lines_name_the_key_and_never_hold_it(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="log_analyzer.audit"):
        job_id = submit(client, PAYMENTS)
        client.post(
            "/v1/jobs",
            json=job_request(filters={"namespace": "search"}),
            headers=as_key(PAYMENTS),
        )
        client.delete(f"/v1/jobs/{job_id}", headers=as_key(SEARCH))
        client.delete(f"/v1/jobs/{job_id}", headers=as_key(PAYMENTS))
    lines = [r for r in caplog.records if r.name == "log_analyzer.audit"]
    seen = [(r.__dict__["action"], r.__dict__["outcome"], r.__dict__["key_name"]) for r in lines]
    assert seen == [
        ("submit", "accepted", "payments"),
        ("submit", "denied", "payments"),
        ("cancel", "denied", "search"),
        ("cancel", "accepted", "payments"),
    ]
    assert lines[0].__dict__["job_id"] == job_id and lines[1].__dict__["namespace"] == "search"
    text = json.dumps([r.__dict__ for r in lines], default=str)
    for secret in (PAYMENTS, SEARCH, sha(PAYMENTS), sha(SEARCH)):
        assert secret not in text
    metrics = client.get("/metrics", headers=as_key(OPS)).text
    assert 'log_analyzer_access_decisions_total{action="submit",outcome="denied"}' in metrics


# --- through real API and worker processes -----------------------------------------------


@pytest.fixture
def tenant_stack(fresh_stack: ServiceStack, tmp_path: Path) -> Iterator[ServiceStack]:
    keys = tmp_path / "keys.json"
    keys.write_text(TEAMS)
    fresh_stack.env["API_KEYS_FILE"] = str(keys)
    fresh_stack.start_worker()
    fresh_stack.start_api()
    fresh_stack.wait_ready()
    yield fresh_stack


def submit_as(stack: ServiceStack, key: str) -> str:
    response = stack.http.post(f"{stack.api_url}/v1/jobs", json=job_request(), headers=as_key(key))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def wait_terminal(stack: ServiceStack, job_id: str, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view = stack.http.get(f"{stack.api_url}/v1/jobs/{job_id}", headers=as_key(key)).json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return dict(view)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end\n{stack.logs()}")


def test_the_keys_loki_tenant_is_sent_on_its_queries(tenant_stack: ServiceStack) -> None:
    before = len(tenant_stack.loki.requests)
    paying = submit_as(tenant_stack, PAYMENTS)
    assert wait_terminal(tenant_stack, paying, PAYMENTS)["status"] == "succeeded"
    tenants = {r.tenant for r in tenant_stack.loki.requests[before:]}
    assert tenants == {"team-payments"}
    before = len(tenant_stack.loki.requests)
    ops = submit_as(tenant_stack, OPS)
    assert wait_terminal(tenant_stack, ops, OPS)["status"] == "succeeded"
    assert {r.tenant for r in tenant_stack.loki.requests[before:]} == {None}


def test_a_revoked_key_loses_its_own_running_jobs_stream(
    tenant_stack: ServiceStack, tmp_path: Path
) -> None:
    tenant_stack.loki.hang_next(8, times=4)  # the job stays in query_loki
    job_id = submit_as(tenant_stack, PAYMENTS)
    url = f"{tenant_stack.api_url}/v1/jobs/{job_id}/events"
    lines: list[str] = []
    try:
        with httpx.Client(timeout=httpx.Timeout(10, read=15)) as http:
            with http.stream("GET", url, headers=as_key(PAYMENTS)) as response:
                assert response.status_code == 200
                revoked_at = None
                for line in response.iter_lines():
                    lines.append(line)
                    if revoked_at is None and any(x.startswith("event: stage") for x in lines):
                        (tmp_path / "keys.json").write_text(
                            key_file(entry(OPS, "ops", [".*"], role="admin"))
                        )
                        revoked_at = time.monotonic()
                ended_after = time.monotonic() - (revoked_at or 0)
    finally:
        tenant_stack.loki.clear_faults()
    assert "event: error" in lines and any("key_revoked" in line for line in lines), lines
    assert ended_after < 2.0 + 1.0 + 1.0  # one re-read of the file, one watch, slack
    again = tenant_stack.http.get(url, headers=as_key(PAYMENTS))
    assert again.status_code == 401
