"""API keys, rotation and per-key limits, against the real app and a real Redis."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import api.auth
from api.main import create_app
from cli.harness import wait_until
from shared.settings import Settings
from tests.support.incident import job_request
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

# Fresh keys per run: rate-limit windows live in Redis for two minutes.
KEY_A, KEY_B = f"key-a-{uuid.uuid4().hex[:8]}", f"key-b-{uuid.uuid4().hex[:8]}"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def make_client(redis_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        app_options = {k: overrides.pop(k) for k in ("bind_host",) if k in overrides}
        settings = Settings(redis_url=redis_url, otel_sdk_disabled=True, **overrides)
        client = TestClient(create_app(settings, enqueue=lambda job_id: None, **app_options))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def test_keys_required_when_configured(make_client: Any) -> None:
    client = make_client(api_keys=[sha(KEY_A)])
    assert client.post("/v1/jobs", json=job_request()).status_code == 401
    bad = client.post("/v1/jobs", json=job_request(), headers={"X-API-Key": "nope"})
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
    assert (
        client.post("/v1/jobs", json=job_request(), headers={"X-API-Key": KEY_A}).status_code == 202
    )
    assert (
        client.post(
            "/v1/jobs", json=job_request(), headers={"Authorization": f"Bearer {KEY_A}"}
        ).status_code
        == 202
    )
    for path in ("/v1/jobs/x", "/v1/jobs/x/events", "/metrics"):
        assert client.get(path).status_code == 401, path
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code in (200, 503)


def test_keys_rotate_from_a_file_without_restart(
    make_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.auth, "FILE_RECHECK_S", 0.0)
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"# rotated by ops\n{sha(KEY_A)}\n")
    client = make_client(api_keys_file=str(keyfile))
    assert client.get("/v1/jobs", headers={"X-API-Key": KEY_A}).status_code == 200
    keyfile.write_text(f"{sha(KEY_B)}\n\n")
    assert client.get("/v1/jobs", headers={"X-API-Key": KEY_A}).status_code == 401
    assert client.get("/v1/jobs", headers={"X-API-Key": KEY_B}).status_code == 200


def test_submissions_per_minute_are_limited(make_client: Any) -> None:
    key = f"key-rate-{uuid.uuid4().hex[:8]}"
    client = make_client(api_keys=[sha(key), sha(KEY_B)], rate_limit_per_minute=3)
    codes = [
        client.post("/v1/jobs", json=job_request(), headers={"X-API-Key": key}).status_code
        for _ in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    limited = client.post("/v1/jobs", json=job_request(), headers={"X-API-Key": key})
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert (
        client.post("/v1/jobs", json=job_request(), headers={"X-API-Key": KEY_B}).status_code == 202
    ), "limits are per key"


def test_active_jobs_per_key_are_limited(make_client: Any) -> None:
    key = f"key-active-{uuid.uuid4().hex[:8]}"
    client = make_client(api_keys=[sha(key)], max_active_jobs_per_key=2)
    headers = {"X-API-Key": key}
    ids = [
        client.post("/v1/jobs", json=job_request(), headers=headers).json()["job_id"]
        for _ in range(2)
    ]
    refused = client.post("/v1/jobs", json=job_request(), headers=headers)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
    client.delete(f"/v1/jobs/{ids[0]}", headers=headers)
    assert client.post("/v1/jobs", json=job_request(), headers=headers).status_code == 202


def test_streams_per_key_are_limited(make_client: Any) -> None:
    client = make_client(api_keys=[sha(KEY_A)], max_streams_per_key=1)
    headers = {"X-API-Key": KEY_A}
    job_id = client.post("/v1/jobs", json=job_request(), headers=headers).json()["job_id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as first:
        assert first.status_code == 200
        second = client.get(f"/v1/jobs/{job_id}/events", headers=headers)
        assert second.status_code == 429
        client.delete(f"/v1/jobs/{job_id}", headers=headers)
        assert "done" in first.read().decode()
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as again:
        assert again.status_code == 200, "the slot was given back when the stream ended"


def test_oversized_bodies_are_refused(make_client: Any) -> None:
    client = make_client(api_keys=[sha(KEY_A)], max_body_bytes=2048)
    body = job_request(question="x" * 1500, log_filter='|= "' + "y" * 1000 + '"')
    declared = client.post("/v1/jobs", json=body, headers={"X-API-Key": KEY_A})
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(10):
            yield b"z" * 500
        yield b'"}'

    streamed = client.post(
        "/v1/jobs",
        content=chunks(),
        headers={"X-API-Key": KEY_A, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


def test_keys_never_reach_the_logs(make_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    client = make_client(api_keys=[sha(KEY_A)], log_level="DEBUG")
    client.post("/v1/jobs", json=job_request(), headers={"X-API-Key": KEY_A})
    client.post("/v1/jobs", json=job_request(), headers={"Authorization": f"Bearer {KEY_B}"})
    logged = capsys.readouterr().err
    assert '"message": "job queued"' in logged, "nothing was logged: the check proves nothing"
    assert KEY_A not in logged and KEY_B not in logged


# --- failing closed (issue 20.10) ----------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["", "# every key removed\n", '{"keys": []}', '{"keys": [{"name": "half-writ', None],
    ids=["empty", "comments-only", "no-keys", "unparsable", "missing"],
)
def test_an_unusable_key_file_refuses_every_request(
    make_client: Any, tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    keyfile = tmp_path / "keys"
    if content is not None:
        keyfile.write_text(content)
    # No-auth mode asked for too: a configured key file still decides.
    client = make_client(api_keys_file=str(keyfile), api_no_auth=True, bind_host="::1")
    for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/metrics")):
        response = client.request(method, path, json=job_request(), headers={"X-API-Key": KEY_A})
        assert response.status_code == 503, (path, response.text)
        assert response.json()["code"] == "keys_unavailable"
    assert client.get("/health").status_code == 200
    lines = capsys.readouterr().err.splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    errors = [r["message"] for r in logged if r["level"] == "ERROR"]
    assert len(errors) == 1 and str(keyfile) in errors[0], errors


def test_without_keys_only_an_explicit_loopback_no_auth_mode_serves(make_client: Any) -> None:
    with pytest.raises(Exception, match="API_NO_AUTH"):
        make_client()
    with pytest.raises(Exception, match="loopback"):
        make_client(api_no_auth=True, bind_host="0.0.0.0")
    # TestClient's addresses are no loopback ones: the explicit setting is what grants access.
    local = make_client(api_no_auth=True, bind_host="127.0.0.1")
    assert local.post("/v1/jobs", json=job_request()).status_code == 202


def test_a_request_through_a_local_proxy_gets_nothing_without_keys(
    fresh_stack: ServiceStack,
) -> None:
    # A same-pod proxy or a port-forward reaches the API on loopback, like the demo's client.
    url = fresh_stack.start_api(API_NO_AUTH="false")
    process = fresh_stack.api_process()

    def settled() -> str | None:
        if not process.running():
            return "exited"
        with contextlib.suppress(httpx.HTTPError):
            return str(httpx.post(f"{url}/v1/jobs", json=job_request(), timeout=2).status_code)
        return None

    outcome = wait_until(settled, 30, "the API neither answered nor exited")
    assert outcome == "exited", f"a loopback request without a key got {outcome}"
    assert "API_NO_AUTH" in process.tail()
