"""One trace per job across the API and worker processes; logs and metrics that point to it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli.harness import wait_until
from tests.stubs.otlp_receiver import ReceivedSpan
from tests.support.incident import job_request
from tests.support.sse import collect
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

# A stage's span and its task are both named after the stage.
STAGES = ["query_loki", "flatten", "normalize", "call_llm"]


def job_spans(stack: ServiceStack, job_id: str, *, expect: list[str]) -> list[ReceivedSpan]:
    def ready() -> list[ReceivedSpan] | None:
        spans = stack.spans()
        roots = [s for s in spans if s.attributes.get("job.id") == job_id]
        if not roots:
            return None
        trace_id = roots[0].trace_id
        mine = [s for s in spans if s.trace_id == trace_id]
        names = {s.name for s in mine}
        return mine if all(name in names for name in expect) else None

    return list(wait_until(ready, 15, f"spans {expect} of job {job_id} were not exported"))


def by_name(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    matches = [s for s in spans if s.name == name]
    assert matches, f"no span {name!r} among {sorted({s.name for s in spans})}"
    return matches[0]


def test_one_trace_from_http_request_to_llm_call(stack: ServiceStack) -> None:
    job_id = stack.submit()
    events = collect(stack.http, f"{stack.api_url}/v1/jobs/{job_id}/events")
    assert events[-1].event == "done"
    spans = job_spans(
        stack,
        job_id,
        expect=["analyze_logs", *STAGES, "run/log_analyzer.call_llm"],
    )
    trace_ids = {s.trace_id for s in spans}
    assert len(trace_ids) == 1
    ids = {s.span_id: s for s in spans}

    def ancestors(span: ReceivedSpan) -> list[str]:
        chain = []
        while span.parent_span_id in ids:
            span = ids[span.parent_span_id]
            chain.append(span.name)
        return chain

    submit = by_name(spans, "analyze_logs")
    assert submit.service == "log-analyzer-api"
    assert submit.attributes["k8s.namespace.name"] == "shop"
    assert submit.attributes["log.limit"] == 15
    assert any(s.name == "POST /v1/jobs" for s in spans), "the HTTP server span is missing"
    previous = "analyze_logs"
    for name in STAGES:
        stage = by_name(spans, name)
        assert stage.service == "log-analyzer-worker"
        assert stage.resource["deployment.environment"]
        lineage = ancestors(stage)
        # stage span ← its task's run/ span ← apply_async ← the previous stage's run/ span
        assert lineage[0] == f"run/log_analyzer.{name}", lineage
        assert previous in lineage, f"{name} is not below {previous}: {lineage}"
        previous = f"run/log_analyzer.{name}"
    assert "logql.query" in by_name(spans, "query_loki").attributes
    assert by_name(spans, "flatten").attributes["logs.flattened_count"] > 0
    llm = by_name(spans, "call_llm").attributes
    assert llm["llm.model"] and llm["llm.tokens_generated"] > 0
    assert "llm.time_to_first_token_s" in llm and "llm.prompt_tokens" in llm
    follow = wait_until(
        lambda: [
            s
            for s in stack.spans()
            if s.name == "follow_job" and s.attributes.get("job.id") == job_id
        ],
        10,
        "the SSE stream's follow_job span was not exported",
    )
    assert follow[0].trace_id != submit.trace_id, "the stream has a trace of its own"
    assert follow[0].links and follow[0].links[0][0] == submit.trace_id
    assert not any(s.name.endswith("http send") for s in stack.spans())


def test_worker_log_lines_carry_the_trace_id(stack: ServiceStack) -> None:
    job_id = stack.submit()
    stack.wait_terminal(job_id)
    spans = job_spans(stack, job_id, expect=STAGES)
    trace_id = spans[0].trace_id

    def lines() -> list[dict[str, Any]]:
        found = []
        for raw in stack.workers[0].log_path.read_text().splitlines():
            if raw.startswith("{") and job_id in raw:
                record = json.loads(raw)
                if record.get("job_id") == job_id:
                    found.append(record)
        return found

    records = wait_until(lines, 5, "no JSON log line of the job in the worker log")
    assert {r["trace_id"] for r in records} == {trace_id}
    assert {r["stage"] for r in records} >= {"query_loki", "call_llm"}
    assert all(r["namespace"] == "shop" and r["span_id"] and r["level"] for r in records)


def test_failing_stage_span_has_error_status_and_trace_ends(stack: ServiceStack) -> None:
    # Every query refused: the count queries, then the forward read that replaces them.
    stack.loki.fail_next(400, 10, body="parse error : something Loki did not like")
    job_id = stack.submit()
    assert stack.wait_terminal(job_id)["status"] == "failed"
    stack.loki.fail_next(400, 0)
    spans = job_spans(stack, job_id, expect=["query_loki", "run/log_analyzer.query_loki"])
    failing = by_name(spans, "query_loki")
    assert failing.status_code == 2  # STATUS_CODE_ERROR
    assert any(name == "exception" for name, _ in failing.events)
    assert not any(s.name == "flatten" for s in spans)
    assert all(s.end_ns >= s.start_ns > 0 for s in spans)


def test_metrics_show_the_job(stack: ServiceStack) -> None:
    job_id = stack.submit(filters={"namespace": "shop"})
    stack.wait_terminal(job_id)
    text = stack.http.get(f"{stack.api_url}/metrics").text
    for name in (
        "log_analyzer_jobs_submitted_total",
        'log_analyzer_jobs_finished_total{status="succeeded"}',
        'log_analyzer_jobs_by_namespace_total{namespace="shop"}',
        'log_analyzer_stage_duration_seconds_bucket{le="+Inf",stage="call_llm"}',
        "log_analyzer_llm_time_to_first_token_seconds_count",
        "log_analyzer_llm_tokens_generated_total",
        "log_analyzer_loki_lines_scanned_total",
        'log_analyzer_queue_depth{queue="interactive"}',
        "log_analyzer_sse_streams_active",
    ):
        assert name in text, name
    assert job_request()  # the default request is what the stack submitted
