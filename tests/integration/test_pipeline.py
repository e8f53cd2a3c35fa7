"""The whole path through real processes: API → Redis → Celery worker → pub/sub → SSE."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from cli.harness import wait_until
from tests.support.incident import job_request
from tests.support.sse import SseEvent, collect, covered_seqs, iter_sse
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def events_url(stack: ServiceStack, job_id: str) -> str:
    return f"{stack.api_url}/v1/jobs/{job_id}/events"


def seqs(events: list[SseEvent]) -> list[int]:
    return covered_seqs(events)  # a token event merged for a client behind covers first_seq..id


def tokens_text(events: list[SseEvent]) -> str:
    return "".join(e.json["data"]["text"] for e in events if e.event == "token")


def test_happy_path_streams_stages_tokens_result(stack: ServiceStack) -> None:
    response = stack.http.post(f"{stack.api_url}/v1/jobs", json=job_request())
    assert response.status_code == 202
    body = response.json()
    assert response.headers["Location"] == body["status_url"]
    events = collect(stack.http, body["events_url"])

    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and events[-1].json["data"]["status"] == "succeeded"
    assert seqs(events) == list(range(1, len(seqs(events)) + 1))
    stages = [
        (e.json["data"]["stage"], e.json["data"]["state"]) for e in events if e.event == "stage"
    ]
    assert stages == [
        (s, state)
        for s in ("query_loki", "flatten", "normalize", "call_llm")
        for state in ("started", "finished")
    ]
    assert tokens_text(events) == stack.llama.config.reply
    result = next(e for e in events if e.event == "result").json["data"]
    assert result["analysis"] == stack.llama.config.reply
    assert result["evidence"], "the model was given no evidence"
    assert any("No space left on device" in item["template"] for item in result["evidence"])
    assert result["timings"]["predicted_n"] == result["tokens_generated"]

    view = stack.job(body["job_id"])
    assert view["status"] == "succeeded"
    assert view["result"]["analysis"] == stack.llama.config.reply
    # No log_filter: every line of the window (the 200 INFO lines too), as the budget holds them.
    query = view["counts"]["query_loki"]
    assert query["kept"] == 603
    assert query["coverage"]["mode"] == "complete"
    assert result["findings"]["searched"]["coverage"]["lines_read"] == 603
    assert view["started_at"] and view["finished_at"]


def test_late_join_replays_everything(stack: ServiceStack) -> None:
    job_id = stack.submit()
    stack.wait_terminal(job_id)
    events = collect(stack.http, events_url(stack, job_id))
    assert seqs(events) == list(range(1, len(seqs(events)) + 1))
    assert events[-1].event == "done"
    assert tokens_text(events) == stack.llama.config.reply


def test_reconnect_with_last_event_id_resumes_without_gap_or_duplicate(stack: ServiceStack) -> None:
    stack.llama.config.token_interval_s = 0.02
    job_id = stack.submit()
    url = events_url(stack, job_id)
    first = collect(stack.http, url, stop_after=12)
    assert len(first) == 12
    rest = collect(stack.http, url, last_event_id=int(first[-1].id or 0))
    combined = seqs(first) + seqs(rest)
    assert combined == list(range(1, len(combined) + 1))
    assert rest[-1].event == "done"
    assert tokens_text(first + rest) == stack.llama.config.reply


def test_two_clients_see_the_same_stream(stack: ServiceStack) -> None:
    stack.llama.config.token_interval_s = 0.01
    job_id = stack.submit()
    url = events_url(stack, job_id)
    results: dict[int, list[SseEvent]] = {}

    def follow(index: int) -> None:
        with httpx.Client() as client:
            results[index] = collect(client, url)

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # The same events; tokens may come merged differently to a client that fell behind.
    assert seqs(results[0]) == seqs(results[1])
    assert tokens_text(results[0]) == tokens_text(results[1])
    others = [[e.data for e in results[i] if e.event != "token"] for i in (0, 1)]
    assert others[0] == others[1]
    assert results[0][-1].event == "done"


def test_cancel_stops_llm_and_ends_stream_with_cancelled(stack: ServiceStack) -> None:
    stack.llama.config.token_interval_s = 0.2
    job_id = stack.submit()
    url = events_url(stack, job_id)
    seen: list[SseEvent] = []
    with stack.http.stream("GET", url, timeout=30) as response:
        stream = iter_sse(response)
        for event in stream:
            seen.append(event)
            if event.event == "token":
                cancel = stack.http.delete(f"{stack.api_url}/v1/jobs/{job_id}")
                assert cancel.status_code == 202
                assert cancel.json()["status"] == "cancelled"
                break
        seen.extend(stream)
    kinds = [e.event for e in seen]
    assert kinds[-2:] == ["cancelled", "done"]
    assert stack.job(job_id)["status"] == "cancelled"
    wait_until(lambda: stack.llama.busy_slots == 0, 3, "the LLM slot stayed busy after cancel")
    time.sleep(0.5)
    late = collect(stack.http, url)
    assert [e.event for e in late][-2:] == ["cancelled", "done"], "events were written after done"


def test_loki_rejection_becomes_error_event_and_failed_job(stack: ServiceStack) -> None:
    stack.loki.fail_next(400, 10, body="max entries limit per query exceeded")
    job_id = stack.submit()
    events = collect(stack.http, events_url(stack, job_id))
    error = next(e for e in events if e.event == "error").json["data"]
    assert error["code"] == "loki_rejected"
    assert error["stage"] == "query_loki"
    assert "max entries limit" in error["message"]
    assert events[-1].event == "done"
    assert stack.job(job_id)["status"] == "failed"
    stack.loki.fail_next(400, 0)


def test_a_loki_that_cannot_count_is_read_forward_and_says_so(stack: ServiceStack) -> None:
    # The count query (all lines; tiers are counted only after it) refused: the read goes on.
    stack.loki.fail_next(400, 1, body="metric queries are disabled")
    job_id = stack.submit(scan_limit=100)
    view = stack.wait_terminal(job_id)
    assert view["status"] == "succeeded"
    coverage = view["result"]["findings"]["searched"]["coverage"]
    assert (coverage["mode"], coverage["lines_read"], coverage["lines_in_window"]) == (
        "cut",
        100,
        None,
    )
    assert "was not read" in view["result"]["findings"]["summary"]


def test_loki_down_fails_the_job_after_retries(stack: ServiceStack) -> None:
    stack.loki.fail_next(503, 10)
    job_id = stack.submit()
    events = collect(stack.http, events_url(stack, job_id))
    error = next(e for e in events if e.event == "error").json["data"]
    assert error["code"] == "loki_unavailable"
    assert stack.job(job_id)["status"] == "failed"
    stack.loki.fail_next(503, 0)


def test_a_failing_model_still_delivers_the_findings_and_evidence(stack: ServiceStack) -> None:
    stack.llama.config.fail_next = [500] * 10
    job_id = stack.submit()
    events = collect(stack.http, events_url(stack, job_id))
    kinds = [e.event for e in events if e.id]
    assert "token" not in kinds
    # The findings come as soon as normalize ends, before the model is even asked; the
    # model's failure is said with its code as it happens, and the job goes on to its result.
    error = next(e for e in events if e.event == "error").json["data"]
    assert (error["code"], error["stage"]) == ("llm_unavailable", "call_llm")
    assert kinds.index("findings") < kinds.index("error") < kinds.index("result")
    view = stack.wait_terminal(job_id)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert result["model_status"] == "failed" and result["analysis"] == ""
    assert result["model_error"]["code"] == "llm_unavailable"
    assert result["model_error"]["stage"] == "call_llm"
    assert result["evidence"] and result["findings"]["probable_causes"]
    cause = result["findings"]["probable_causes"][0]
    assert "No space left on device" in cause["template"]


def test_an_empty_window_gets_an_honest_answer_without_the_model(stack: ServiceStack) -> None:
    job_id = stack.submit(filters={"namespace": "nothing-here"})
    events = collect(stack.http, events_url(stack, job_id))
    assert "token" not in [e.event for e in events]
    view = stack.wait_terminal(job_id)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert result["model_status"] == "skipped"
    assert result["model_skip_reason"] == "no_matching_lines"
    assert result["findings"]["empty"] is True
    assert result["findings"]["searched"]["lines_scanned"] == 0
    assert "nothing-here" in result["findings"]["searched"]["query"]
    assert "No log line matched" in result["analysis"]
    assert not [r for r in stack.llama.requests if "nothing-here" in str(r)]


def test_legacy_stream_endpoint_streams_plain_text(stack: ServiceStack) -> None:
    with stack.http.stream(
        "POST", f"{stack.api_url}/v1/analyze/stream", json=job_request(), timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = "".join(response.iter_text())
    assert text.startswith("Read 603 log lines")
    assert "Summary:" in text
    assert text.endswith(stack.llama.config.reply)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (
            {"time_range": {"start": "2026-11-24T07:00:00Z", "end": "2026-11-24T06:00:00Z"}},
            "time_range",
        ),
        (
            {"time_range": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-24T05:00:00Z"}},
            "time_range",
        ),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"filters": {"namespace": "shop", "pod": "api-(unclosed"}}, "pod"),
        ({"filters": {"pod": "api"}}, "namespace"),
        ({"filters": {"namespace": "Shop_Prod"}}, "namespace"),
        ({"log_filter": '|~ "(?i)(error"'}, "log_filter"),
        ({"log_filter": '} or {namespace=~".+"'}, "log_filter"),
        ({"scan_limit": 1_000_001}, "scan_limit"),
    ],
)
def test_validation_errors_name_the_field(
    stack: ServiceStack, patch: dict[str, Any], field: str
) -> None:
    response = stack.http.post(f"{stack.api_url}/v1/jobs", json=job_request(**patch))
    assert response.status_code == 422, response.text
    locations = [".".join(str(p) for p in item["loc"]) for item in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations


def test_unknown_job_is_404_everywhere(stack: ServiceStack) -> None:
    for method, suffix in (("GET", ""), ("GET", "/events"), ("DELETE", "")):
        response = stack.http.request(method, f"{stack.api_url}/v1/jobs/nope{suffix}")
        assert response.status_code == 404


def test_health_and_ready(stack: ServiceStack) -> None:
    health = stack.http.get(f"{stack.api_url}/health").json()
    assert health["status"] == "ok" and health["version"]
    ready = stack.http.get(f"{stack.api_url}/ready")
    assert ready.status_code == 200 and int(ready.json()["checks"]["workers"]) >= 1
