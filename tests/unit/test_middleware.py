"""Each stage middleware on its own, against fakeredis (the job store's Lua script included)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import redis_keys
from shared.errors import JobCancelledError, LokiError
from shared.job_store import JobStore
from shared.schemas import (
    AnalysisRequest,
    FlattenCounts,
    JobError,
    JobResult,
    JobStatus,
    Stage,
)
from shared.settings import Settings
from shared.telemetry import ContextFilter, log_context
from shared.tenancy import DEFAULT_TENANT
from tests.support.findings import result_with_cause
from tests.support.incident import job_request
from workers.middleware import CHAIN
from workers.middleware import tracing as tracing_module
from workers.middleware.admission import admit
from workers.middleware.attempts import attempt_fence
from workers.middleware.errors import error_mapping
from workers.middleware.events import stage_events
from workers.middleware.heartbeat import job_heartbeat
from workers.middleware.log_context import job_log_context
from workers.middleware.metrics import stage_metrics
from workers.middleware.tracing import stage_span
from workers.runner import StageFailed, StageRun, StageSkipped, load_run, run_stage

JOB = "job-1"


@pytest.fixture
def store() -> Iterator[JobStore]:
    client = fakeredis.FakeRedis()
    request = AnalysisRequest.model_validate(job_request())
    client.hset(
        redis_keys.job(JOB),
        mapping={
            "status": "queued",
            "request": request.model_dump_json(),
            "seq": 0,
            "attempt": 0,
            "created_at": "2026-11-24T06:00:00+00:00",
        },
    )
    yield JobStore(client, ttl_s=60, backlog_max=100)
    client.close()


def new_run(store: JobStore, stage: Stage = Stage.FLATTEN, **settings: Any) -> StageRun:
    return load_run(store, Settings(**settings), JOB, stage)


def events(store: JobStore) -> list[dict[str, Any]]:
    entries = store.redis.xrange(redis_keys.job_events(JOB)) or []
    return [json.loads(fields[b"e"]) for _, fields in entries if fields]


def done(run: StageRun) -> Callable[[], None]:
    """A stage's work that just reports its counts."""

    def work() -> None:
        run.counts = FlattenCounts(lines=3, entries=2)

    return work


def raising(exc: BaseException) -> Callable[[], None]:
    def work() -> None:
        raise exc

    return work


# --- load_run -------------------------------------------------------------------------------


def test_a_finished_or_missing_job_is_skipped(store: JobStore) -> None:
    store.redis.hset(redis_keys.job(JOB), "status", "cancelled")
    with pytest.raises(StageSkipped):
        new_run(store)
    with pytest.raises(StageSkipped):
        load_run(store, Settings(), "no-such-job", Stage.FLATTEN)


# --- stage_events ---------------------------------------------------------------------------


def test_stage_events_announce_start_and_finish_with_counts(store: JobStore) -> None:
    run = new_run(store)
    stage_events(run, done(run))
    started, finished = events(store)
    assert started["data"] == {
        "stage": "flatten",
        "state": "started",
        "counts": None,
        "duration_ms": None,
    }
    assert finished["data"]["counts"] == {"lines": 3, "entries": 2, "previous_entries": None}
    fields = store.fields(JOB)
    assert fields["status"] == "running" and fields["stage"] == "flatten"
    assert json.loads(fields["counts:flatten"]) == {
        "lines": 3,
        "entries": 2,
        "previous_entries": None,
    }


def test_stage_events_finish_the_job_after_the_last_stage(store: JobStore) -> None:
    run = new_run(store, Stage.CALL_LLM)

    def work() -> None:
        run.counts = FlattenCounts(lines=0, entries=0)
        run.result = JobResult(analysis="ok", evidence=[], model="m")

    stage_events(run, work)
    assert store.status(JOB) is JobStatus.SUCCEEDED
    assert [e["type"] for e in events(store)][-2:] == ["result", "done"]


def test_stage_events_stop_when_the_job_was_cancelled_meanwhile(store: JobStore) -> None:
    run = new_run(store)

    def work() -> None:
        store.finish(JOB, JobStatus.CANCELLED)
        run.counts = FlattenCounts(lines=1, entries=1)

    with pytest.raises(StageSkipped):
        stage_events(run, work)
    assert "counts:flatten" not in store.fields(JOB)


# --- admission ------------------------------------------------------------------------------


def test_admission_counts_starts_and_stops_a_poison_job(store: JobStore) -> None:
    calls = []
    for _ in range(3):
        run = new_run(store, max_attempts=3)
        admit(run, lambda: calls.append(1))
    assert len(calls) == 3 and run.starts == 3
    run = new_run(store, max_attempts=3)
    with pytest.raises(StageSkipped):
        admit(run, lambda: calls.append(1))
    assert len(calls) == 3
    view = store.view(JOB)
    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.code == "too_many_attempts"


# --- attempt_fence --------------------------------------------------------------------------


def test_a_first_start_keeps_the_attempt(store: JobStore) -> None:
    run = new_run(store)
    run.starts = 1
    attempt_fence(run, lambda: None)
    assert run.attempt == 0 and events(store) == []


def test_a_second_start_fences_out_the_first_and_says_retry(store: JobStore) -> None:
    first = new_run(store)
    first.starts = 1
    again = new_run(store)
    again.starts = 2
    attempt_fence(again, lambda: None)
    assert again.attempt == 1
    (retry,) = events(store)
    assert retry["type"] == "retry" and retry["data"]["stage"] == "flatten"
    assert retry["attempt"] == 1
    # Whatever the first run still writes is refused.
    with pytest.raises(StageSkipped):
        stage_events(first, done(first))


# --- error_mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "internal"),
    [
        (LokiError("Loki is down"), "loki_unavailable", False),
        (SoftTimeLimitExceeded(), "stage_timeout", False),
        (KeyError("boom"), "internal_error", True),
    ],
)
def test_errors_fail_the_job_with_a_code(
    store: JobStore, exc: BaseException, code: str, internal: bool
) -> None:
    run = new_run(store)
    with pytest.raises(StageFailed) as caught:
        error_mapping(run, raising(exc))
    assert caught.value.error.code == code and caught.value.internal is internal
    view = store.view(JOB)
    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.code == code and view.error.stage is Stage.FLATTEN
    assert [e["type"] for e in events(store)] == ["error", "done"]


def test_cancellation_is_not_an_error(store: JobStore) -> None:
    run = new_run(store)
    with pytest.raises(StageSkipped):
        error_mapping(run, raising(JobCancelledError("cancelled")))
    assert store.status(JOB) is JobStatus.QUEUED


# --- stage_metrics --------------------------------------------------------------------------


def metric_fields(store: JobStore) -> dict[str, float]:
    raw = store.redis.hgetall(redis_keys.METRICS)
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}


def test_metrics_observe_durations_and_count_failures_by_code(store: JobStore) -> None:
    run = new_run(store)
    stage_metrics(run, lambda: None)
    assert metric_fields(store)["log_analyzer_stage_duration_seconds|stage=flatten|b|+Inf"] == 1
    error = StageFailed(JobError(code="x", message="m"), internal=False)
    with pytest.raises(StageFailed):
        stage_metrics(run, raising(error))
    fields = metric_fields(store)
    assert fields["log_analyzer_stage_failures|code=x,stage=flatten|c"] == 1
    assert fields["log_analyzer_stage_duration_seconds|stage=flatten|b|+Inf"] == 2
    with pytest.raises(StageSkipped):
        stage_metrics(run, raising(StageSkipped("gone")))
    assert metric_fields(store)["log_analyzer_stage_duration_seconds|stage=flatten|b|+Inf"] == 2


# --- heartbeat ------------------------------------------------------------------------------


def test_heartbeat_stamps_the_job_while_the_stage_runs(store: JobStore) -> None:
    run = new_run(store, job_heartbeat_s=0.01)
    seen: list[bool] = []

    def work() -> None:
        seen.append(store.redis.zscore(redis_keys.ACTIVE_JOBS, JOB) is not None)
        seen.append(bool(store.redis.hget(redis_keys.job(JOB), "heartbeat")))

    job_heartbeat(run, work)
    assert seen == [True, True]


# --- tracing and log context ----------------------------------------------------------------


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_SDK_DISABLED")  # else the SDK hands out no-op tracers
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing_module, "tracer", lambda: provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_tracing_names_the_span_after_the_stage_and_marks_failures(
    store: JobStore, spans: InMemorySpanExporter
) -> None:
    run = new_run(store)
    stage_span(run, lambda: None)
    error = StageFailed(JobError(code="x", message="bad"), internal=False)
    with pytest.raises(StageFailed):
        stage_span(run, raising(error))
    ok, failed = spans.get_finished_spans()
    assert ok.name == failed.name == "flatten"
    assert ok.attributes is not None and ok.attributes["job.id"] == JOB
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.status.description == "bad"


def test_log_context_tags_every_record(store: JobStore, caplog: pytest.LogCaptureFixture) -> None:
    run = new_run(store)
    logger = logging.getLogger("test.middleware")
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="test.middleware"), log_context():
        job_log_context(run, lambda: logger.info("inside"))
    record = caplog.records[-1]
    tags = (getattr(record, "job_id", None), getattr(record, "stage", None))
    assert tags == (JOB, "flatten") and getattr(record, "namespace", None) == "shop"


# --- the whole chain ------------------------------------------------------------------------


def test_the_chain_runs_the_work_once_inside_every_middleware(store: JobStore) -> None:
    run = new_run(store)
    run_stage(run, lambda r: setattr(r, "counts", FlattenCounts(lines=1, entries=1)), CHAIN)
    assert [e["data"]["state"] for e in events(store)] == ["started", "finished"]
    assert store.redis.hget(redis_keys.job(JOB), "runs:flatten") == b"1"


# --- record_findings ------------------------------------------------------------------------


def a_disk_full_result() -> JobResult:
    from datetime import UTC, datetime

    return result_with_cause("fp-disk", datetime(2026, 11, 24, 6, 20, tzinfo=UTC))


def stored_findings(store: JobStore) -> dict[str, Any]:
    raw = store.redis.hgetall(redis_keys.findings(DEFAULT_TENANT, "shop"))
    return {str(k): json.loads(v) for k, v in raw.items()}


def test_a_successful_job_adds_one_sighting_per_cause_once(store: JobStore) -> None:
    from workers.middleware.findings import record_findings

    run = new_run(store, Stage.CALL_LLM)
    run.result = a_disk_full_result()
    store.redis.hset(redis_keys.job(JOB), "status", "succeeded")
    record_findings(run, lambda: None)
    record_findings(run, lambda: None)  # a redelivered stage counts nothing twice
    (finding,) = stored_findings(store).values()
    assert finding["sightings"] == 1 and finding["lines"] == 4
    assert finding["recent"][0]["job_id"] == JOB


def test_a_job_that_did_not_succeed_adds_no_sighting(store: JobStore) -> None:
    from workers.middleware.findings import record_findings

    run = new_run(store, Stage.CALL_LLM)
    run.result = a_disk_full_result()
    store.redis.hset(redis_keys.job(JOB), "status", "cancelled")
    record_findings(run, lambda: None)
    assert stored_findings(store) == {}
