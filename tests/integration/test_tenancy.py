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
import redis
from fastapi.testclient import TestClient

import api.auth
from api.main import create_app
from cli.harness import wait_until
from shared import redis_keys
from shared.findings_store import record_sightings
from shared.schemas import AnalysisRequest, JobResult
from shared.settings import Settings
from tests.support.findings import result_with_cause
from tests.support.incident import job_request
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]  # fresh keys per run: rate windows live in Redis for two minutes
PAYMENTS, SEARCH, OPS, LEGACY, RIVAL, PAY_ADMIN = (
    f"{name}-{RUN}" for name in ("pay", "search", "ops", "legacy", "rival", "pay-admin")
)


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
    entry(RIVAL, "rival", ["shop"], tenant="team-rival"),
    entry(PAY_ADMIN, "pay-admin", [".*"], role="admin", tenant="team-payments"),
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


def test_an_admin_sees_and_cancels_any_job_of_its_tenant(client: TestClient) -> None:
    job_id = submit(client, PAYMENTS)
    assert client.get(f"/v1/jobs/{job_id}", headers=as_key(PAY_ADMIN)).status_code == 200
    cancelled = client.delete(f"/v1/jobs/{job_id}", headers=as_key(PAY_ADMIN))
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    # The admin of the default tenant sees its tenant's jobs, not team-payments'.
    searching = submit(client, SEARCH, namespace="search")
    assert client.get(f"/v1/jobs/{searching}", headers=as_key(OPS)).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=as_key(OPS)).status_code == 404
    # An admin may also analyse any namespace its entry allows.
    submit(client, OPS, namespace="search")


def a_cause_seen(job_id: str) -> tuple[AnalysisRequest, JobResult]:
    """A job in `shop` and its result with one probable cause, as a worker records them."""
    request = AnalysisRequest.model_validate(job_request())
    return request, result_with_cause(f"fp-{job_id[:8]}", request.time_range.start)


def test_a_key_of_another_tenant_reads_nothing_of_this_one(
    client: TestClient, redis_url: str
) -> None:
    job_id = submit(client, PAYMENTS)
    backfill = client.post(
        "/v1/backfills",
        json={"namespaces": ["shop"], "time_range": job_request()["time_range"], "window": "1h"},
        headers=as_key(PAYMENTS),
    )
    assert backfill.status_code == 202, backfill.text
    backfill_id = backfill.json()["backfill_id"]
    with redis.Redis.from_url(redis_url) as sync:
        record_sightings(sync, "team-payments", job_id, *a_cause_seen(job_id), ttl_s=3600)
    by_id = [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/backfills/{backfill_id}"),
        ("GET", f"/v1/backfills/{backfill_id}/events"),
        ("DELETE", f"/v1/backfills/{backfill_id}"),
        ("POST", f"/v1/backfills/{backfill_id}/retry"),
    ]
    # An analyst of another tenant with `shop` in scope, and the admin of the default tenant.
    for key in (RIVAL, OPS):
        for method, path in by_id:
            answer = client.request(method, path, headers=as_key(key))
            assert answer.status_code == 404, (key, method, path, answer.text)
        assert client.get("/v1/jobs", headers=as_key(key)).json() == []
        for params in ({"namespace": "shop"}, {}):
            assert client.get("/v1/findings", params=params, headers=as_key(key)).json() == []
    # The same reads inside the tenant: its admin sees all of it, its analyst its own.
    for path in (f"/v1/jobs/{job_id}", f"/v1/backfills/{backfill_id}"):
        assert client.get(path, headers=as_key(PAY_ADMIN)).status_code == 200, path
    for key in (PAY_ADMIN, PAYMENTS):
        (found,) = client.get("/v1/findings", headers=as_key(key)).json()
        assert found["recent"][0]["job_id"] == job_id
    history = client.get("/v1/jobs", headers=as_key(PAYMENTS)).json()
    assert job_id in [j["job_id"] for j in history]


def test_findings_stored_before_tenants_move_to_the_default_tenant(
    redis_url: str, keyfile: Path
) -> None:
    job_id = uuid.uuid4().hex
    request, result = a_cause_seen(job_id)
    with redis.Redis.from_url(redis_url) as sync:
        # What the version before tenants stored: per namespace name only.
        record_sightings(sync, "-", job_id, request, result, ttl_s=3600)
        sync.rename(redis_keys.findings("-", "shop"), redis_keys.legacy_findings("shop"))
        sync.rename(redis_keys.findings_namespaces("-"), redis_keys.LEGACY_FINDINGS_NAMESPACES)
        settings = Settings(redis_url=redis_url, otel_sdk_disabled=True, api_keys_file=str(keyfile))
        with TestClient(create_app(settings, enqueue=lambda job_id: None)) as started:
            # The API moves them when it starts, before anyone reads.
            wait_until(
                lambda: not sync.exists(redis_keys.legacy_findings("shop")),
                10,
                "findings stored before tenants were not moved",
            )
            assert not sync.exists(redis_keys.LEGACY_FINDINGS_NAMESPACES)
            (found,) = started.get("/v1/findings", headers=as_key(OPS)).json()
            assert found["recent"][0]["job_id"] == job_id and found["sightings"] == 1
            for key in (PAYMENTS, RIVAL):
                assert started.get("/v1/findings", headers=as_key(key)).json() == []


def test_a_keys_history_and_backfills_of_before_tenants_move_to_its_tenant(
    client: TestClient, redis_url: str
) -> None:
    job_id = submit(client, PAYMENTS)
    body = {"namespaces": ["shop"], "time_range": job_request()["time_range"], "window": "1h"}
    backfill_id = client.post("/v1/backfills", json=body, headers=as_key(PAYMENTS)).json()[
        "backfill_id"
    ]
    owner = sha(PAYMENTS)[:16]
    old_history, old_backfill = (
        redis_keys.legacy_principal_history(owner),
        redis_keys.legacy_backfill(backfill_id),
    )
    with redis.Redis.from_url(redis_url) as sync:
        # Where the version before tenants kept them.
        sync.rename(redis_keys.principal_history("team-payments", owner), old_history)
        sync.rename(redis_keys.backfill("team-payments", backfill_id), old_backfill)
        for key in (RIVAL, PAY_ADMIN):  # not its owner: nothing read, nothing moved
            theirs = client.get(f"/v1/backfills/{backfill_id}", headers=as_key(key))
            assert theirs.status_code == 404
            assert client.get("/v1/jobs", headers=as_key(key)).json() == []
        assert sync.exists(old_backfill) and sync.exists(old_history)
        mine = client.get(f"/v1/backfills/{backfill_id}", headers=as_key(PAYMENTS))
        assert mine.status_code == 200 and mine.json()["totals"]["queued"] == 1
        history = client.get("/v1/jobs", headers=as_key(PAYMENTS)).json()
        assert job_id in [j["job_id"] for j in history]
        assert not sync.exists(old_backfill) and not sync.exists(old_history)
        assert (
            client.get(f"/v1/backfills/{backfill_id}", headers=as_key(PAY_ADMIN)).status_code == 200
        )


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


def test_metrics_are_not_for_analyst_keys(client: TestClient) -> None:
    submit(client, PAYMENTS, namespace="payments-eu")  # a namespace name, now in the metrics
    for analyst in (PAYMENTS, SEARCH, RIVAL):
        denied = client.get("/metrics", headers=as_key(analyst))
        assert denied.status_code == 403, denied.text
        assert "payments-eu" not in denied.text
        assert denied.json()["detail"][0]["loc"] == ["header", "X-API-Key"]
    assert "payments-eu" in client.get("/metrics", headers=as_key(OPS)).text


def test_a_metrics_key_reads_the_metrics_and_nothing_else(
    client: TestClient, keyfile: Path
) -> None:
    scraper = f"scraper-{RUN}"
    document = json.loads(TEAMS)
    document["keys"].append({"name": "prometheus", "sha256": sha(scraper), "role": "metrics"})
    keyfile.write_text(json.dumps(document))
    job_id = submit(client, OPS, namespace="shop")
    bearer = {"Authorization": f"Bearer {scraper}"}  # as Prometheus sends it
    scraped = client.get("/metrics", headers=bearer)
    assert scraped.status_code == 200 and "log_analyzer_jobs_by_namespace" in scraped.text
    for method, path in (
        ("GET", "/v1/jobs"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", "/v1/findings"),
        ("GET", "/v1/namespaces"),
        ("POST", "/v1/jobs"),
        ("POST", "/v1/backfills"),
    ):
        denied = client.request(method, path, headers=bearer, json=job_request())
        assert denied.status_code == 403, (method, path, denied.text)
        assert "metrics key" in denied.json()["detail"][0]["msg"]


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


def submit_as(stack: ServiceStack, key: str, **request: Any) -> str:
    body = job_request(**request)
    response = stack.http.post(f"{stack.api_url}/v1/jobs", json=body, headers=as_key(key))
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


def tenants_of_queries_holding(stack: ServiceStack, marker: str) -> set[str | None]:
    """The tenants Loki was asked as by the queries holding `marker` (the Loki stub is shared
    with every stack of the session: a job of another test may query it meanwhile)."""
    return {r.tenant for r in stack.loki.requests if marker in r.params.get("query", "")}


def test_the_keys_loki_tenant_is_sent_on_its_queries(tenant_stack: ServiceStack) -> None:
    paying = submit_as(tenant_stack, PAYMENTS, log_filter='|= "paying-probe"')
    assert wait_terminal(tenant_stack, paying, PAYMENTS)["status"] == "succeeded"
    assert tenants_of_queries_holding(tenant_stack, "paying-probe") == {"team-payments"}
    ops = submit_as(tenant_stack, OPS, log_filter='|= "ops-probe"')
    assert wait_terminal(tenant_stack, ops, OPS)["status"] == "succeeded"
    assert tenants_of_queries_holding(tenant_stack, "ops-probe") == {None}
    # The namespace picker asks Loki as the caller's tenant too (another tenant's labels are
    # Loki's to withhold), and lists only names within the caller's scope.
    before = len(tenant_stack.loki.requests)
    listed = tenant_stack.http.get(
        f"{tenant_stack.api_url}/v1/namespaces",
        params=job_request()["time_range"],
        headers=as_key(RIVAL),
    )
    assert listed.status_code == 200 and listed.json() == ["shop"], listed.text
    assert {r.tenant for r in tenant_stack.loki.requests[before:]} == {"team-rival"}


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


def test_findings_stay_in_the_tenant_whose_job_found_them(tenant_stack: ServiceStack) -> None:
    job_id = submit_as(tenant_stack, PAYMENTS)
    assert wait_terminal(tenant_stack, job_id, PAYMENTS)["status"] == "succeeded"
    url = f"{tenant_stack.api_url}/v1/findings"
    own = tenant_stack.http.get(url, params={"namespace": "shop"}, headers=as_key(PAYMENTS))
    assert own.status_code == 200 and own.json(), own.text
    assert all(job_id in [s["job_id"] for s in f["recent"]] for f in own.json())
    # The same namespace name seen by a key of another tenant (an analyst of another team,
    # an admin of the default tenant): no template, no job id.
    for key in (RIVAL, OPS):
        for params in ({"namespace": "shop"}, {}):
            theirs = tenant_stack.http.get(url, params=params, headers=as_key(key))
            assert theirs.status_code == 200 and theirs.json() == [], (key, params, theirs.text)
