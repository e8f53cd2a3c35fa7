"""Last-Event-ID at the edges: a client that has seen everything of an ended job, and values
that are no event id at all."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.incident import job_request
from tests.support.sse import collect
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def ended_job(stack: ServiceStack) -> tuple[str, int]:
    """A cancelled job and the id of its last event (`done`)."""
    response = stack.http.post(f"{stack.api_url}/v1/jobs", json=job_request())
    assert response.status_code == 202, response.text
    job_id = str(response.json()["job_id"])
    assert stack.http.delete(f"{stack.api_url}/v1/jobs/{job_id}").status_code == 202
    events = collect(stack.http, f"{stack.api_url}/v1/jobs/{job_id}/events", timeout=10)
    assert events[-1].event == "done", [e.event for e in events]
    return job_id, int(events[-1].id or 0)


def read_for(url: str, last_event_id: str, seconds: float) -> tuple[int, str, float]:
    """Status, body and how long the server took to end the response (at most `seconds`)."""
    started = time.monotonic()
    body = ""
    headers = {"Last-Event-ID": last_event_id}
    with httpx.Client(timeout=httpx.Timeout(seconds, connect=5)) as http:
        with http.stream("GET", url, headers=headers) as response:
            for chunk in response.iter_text():
                body += chunk
                if time.monotonic() - started > seconds:
                    break
            return response.status_code, body, time.monotonic() - started


@pytest.mark.parametrize("past", [0, 1, 1000])
def test_resuming_at_or_past_the_end_of_an_ended_job_closes_at_once(
    stack: ServiceStack, past: int
) -> None:
    job_id, last = ended_job(stack)
    url = f"{stack.api_url}/v1/jobs/{job_id}/events"
    status, body, took = read_for(url, str(last + past), seconds=4)
    assert took < 2, f"the stream stayed open {took:.1f} s (keep-alives: {body[:80]!r})"
    assert status == 204 and body == "", (status, body)


@pytest.mark.parametrize("value", [str(2**64), str(2**63), "+3", "1_0"])
def test_a_last_event_id_that_is_no_event_id_is_422_naming_the_header(
    stack: ServiceStack, value: str
) -> None:
    job_id, _ = ended_job(stack)
    for path in (f"/v1/jobs/{job_id}/events", "/v1/backfills/none/events"):
        status, body, _ = read_for(f"{stack.api_url}{path}", value, seconds=3)
        assert status == 422, (path, value, status, body[:200])
        (detail,) = json.loads(body)["detail"]
        assert detail["loc"] == ["header", "Last-Event-ID"], detail


def test_resuming_past_the_last_event_of_a_running_job_is_422(stack: ServiceStack) -> None:
    stack.loki.hang_next(5)  # the job stays in query_loki meanwhile
    job_id = stack.submit()
    status, body, _ = read_for(f"{stack.api_url}/v1/jobs/{job_id}/events", "1000", seconds=3)
    assert status == 422, (status, body[:200])
    (detail,) = json.loads(body)["detail"]
    assert detail["loc"] == ["header", "Last-Event-ID"] and "past" in detail["msg"], detail
    events = collect(stack.http, f"{stack.api_url}/v1/jobs/{job_id}/events", timeout=30)
    assert events[-1].event == "done"
