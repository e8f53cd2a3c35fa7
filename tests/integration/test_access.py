"""API keys, rotation and per-key limits, against the real app and a real Redis."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.auth
from api.main import create_app
from shared.settings import Settings
from tests.support.incident import job_request

pytestmark = pytest.mark.integration

# Fresh keys per run: rate-limit windows live in Redis for two minutes.
KEY_A, KEY_B = f"key-a-{uuid.uuid4().hex[:8]}", f"key-b-{uuid.uuid4().hex[:8]}"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def make_client(redis_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        settings = Settings(redis_url=redis_url, otel_sdk_disabled=True, **overrides)
        client = TestClient(create_app(settings, enqueue=lambda job_id: None))
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


def test_no_keys_means_loopback_only(make_client: Any) -> None:
    client = make_client()  # TestClient's server address is not a loopback interface
    response = client.post("/v1/jobs", json=job_request())
    assert response.status_code == 401 and "no API keys" in response.json()["detail"]


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
