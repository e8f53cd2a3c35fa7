"""A revoked key loses every stream it holds open, not only a job's event stream: the plain-text
`POST /v1/analyze/stream` and a backfill's events too, through real API and worker processes
(the API re-reads the key file every `api.auth.FILE_RECHECK_S`)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.auth import FILE_RECHECK_S
from tests.support.incident import job_request
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
REVOKED, KEPT = f"revoked-{RUN}", f"kept-{RUN}"
# One re-read of the key file, one check of the stream, and slack for a loaded machine.
BOUND_S = FILE_RECHECK_S + 1.0 + 1.5


def key_file(*keys: tuple[str, str]) -> str:
    entries = [
        {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "namespaces": [".*"]}
        for key, name in keys
    ]
    return json.dumps({"keys": entries})


@pytest.fixture
def keyed_stack(fresh_stack: ServiceStack, tmp_path: Path) -> Iterator[ServiceStack]:
    keys = tmp_path / "keys.json"
    keys.write_text(key_file((REVOKED, "revoked"), (KEPT, "kept")))
    fresh_stack.env["API_KEYS_FILE"] = str(keys)
    fresh_stack.start_worker()
    fresh_stack.start_api()
    fresh_stack.wait_ready()
    fresh_stack.loki.hang_next(8, times=8)  # the jobs stay in query_loki meanwhile
    try:
        yield fresh_stack
    finally:
        fresh_stack.loki.clear_faults()


def revoke(stack: ServiceStack) -> float:
    Path(stack.env["API_KEYS_FILE"]).write_text(key_file((KEPT, "kept")))
    return time.monotonic()


def read_until_revoked(response: httpx.Response, stack: ServiceStack, opened: str) -> str:
    """Read the stream; revoke the key once `opened` was seen; return what came within the
    bound after the revocation."""
    text, revoked_at = "", None
    for chunk in response.iter_text():
        text += chunk
        if revoked_at is None and opened in text:
            revoked_at = revoke(stack)
        if revoked_at is not None and time.monotonic() - revoked_at > BOUND_S:
            break
    return text


def test_a_revoked_key_loses_its_analyze_stream(keyed_stack: ServiceStack) -> None:
    url = f"{keyed_stack.api_url}/v1/analyze/stream"
    timeout = httpx.Timeout(10, read=BOUND_S + 2)
    with httpx.Client(timeout=timeout) as http:
        with http.stream("POST", url, json=job_request(), headers={"X-API-Key": REVOKED}) as r:
            assert r.status_code == 200
            # The text stream says nothing until the read ends: revoke once it is open.
            revoked_at = revoke(keyed_stack)
            text = ""
            for chunk in r.iter_text():
                text += chunk
                if time.monotonic() - revoked_at > BOUND_S:
                    break
            ended_after = time.monotonic() - revoked_at
    assert "ERROR [key_revoked]" in text, text
    assert ended_after <= BOUND_S, f"the stream went on {ended_after:.1f} s after revocation"
    again = keyed_stack.http.post(url, json=job_request(), headers={"X-API-Key": REVOKED})
    assert again.status_code == 401


def test_a_revoked_key_loses_its_backfill_stream(keyed_stack: ServiceStack) -> None:
    body = {
        "namespaces": ["shop"],
        "time_range": {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"},
        "window": "30m",
        "question": f"revoked? {RUN}",
    }
    accepted = keyed_stack.http.post(
        f"{keyed_stack.api_url}/v1/backfills", json=body, headers={"X-API-Key": REVOKED}
    )
    assert accepted.status_code == 202, accepted.text
    url = f"{keyed_stack.api_url}/v1/backfills/{accepted.json()['backfill_id']}/events"
    with httpx.Client(timeout=httpx.Timeout(10, read=BOUND_S + 2)) as http:
        with http.stream("GET", url, headers={"X-API-Key": REVOKED}) as response:
            assert response.status_code == 200
            text = read_until_revoked(response, keyed_stack, opened="event: progress")
    assert "event: error" in text and '"key_revoked"' in text, text
    assert "event: done" not in text
