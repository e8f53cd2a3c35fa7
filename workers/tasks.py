"""Celery glue: one thin task per stage around the pure stage functions.

Tasks pass only the job id; each stage reads its input from Redis and writes its output
there. Every transition goes through the job record, which refuses writes once the job is
terminal, so a cancelled or failed job stops its chain at the next stage or token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import Ignore, SoftTimeLimitExceeded
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from shared import metrics, redis_keys
from shared.errors import JobCancelledError, LogAnalyzerError
from shared.job_store import JobStore, encode_event
from shared.logql import build_query, parse_log_filter
from shared.metrics import MetricsRecorder
from shared.schemas import (
    AnalysisRequest,
    EventType,
    JobError,
    JobResult,
    JobStatus,
    NormalizeResult,
    Stage,
)
from shared.telemetry import log_context, tracer
from workers import context
from workers.call_llm import analyze
from workers.celery_app import celery_app
from workers.codec import decode_entries, decode_fetch, encode_entries, encode_fetch
from workers.flatten import flatten
from workers.heartbeat import job_heartbeat
from workers.llm_slots import LlmSlot
from workers.normalize import normalize
from workers.pipeline import task_name
from workers.redact import redact

logger = logging.getLogger(__name__)


def _to_ns(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class StageRun:
    """One execution of one stage of one job."""

    def __init__(self, store: JobStore, job_id: str, stage: Stage):
        self.store = store
        self.job_id = job_id
        self.stage = stage
        fields = store.fields(job_id)
        self.request = AnalysisRequest.model_validate_json(fields["request"])
        self.attempt = int(fields.get("attempt", "0"))
        self.result: JobResult | None = None

    def event(self, event_type: EventType, data: dict[str, Any], *, fenced: bool = False) -> bool:
        body = encode_event(event_type, self.job_id, self.attempt, data)
        return (
            self.store.commit(self.job_id, events=[body], attempt=self.attempt if fenced else None)
            > 0
        )


STAGE_SPANS: dict[Stage, str] = {
    Stage.QUERY_LOKI: "query_loki",
    Stage.FLATTEN: "flatten_logs",
    Stage.NORMALIZE: "normalize_logs",
    Stage.CALL_LLM: "call_llm",
}


def run_stage(job_id: str, stage: Stage, work: Callable[[StageRun], dict[str, Any]]) -> None:
    """Run `work` as one stage of the job and record its outcome; stop the chain on failure."""
    store = context.job_store()
    status = store.status(job_id)
    if status is None or status.terminal:
        raise Ignore()
    with (
        tracer().start_as_current_span(
            STAGE_SPANS[stage], record_exception=False, set_status_on_exception=False
        ) as span,
        log_context(job_id=job_id, stage=stage.value),
    ):
        span.set_attribute("job.id", job_id)
        if not _admit(store, job_id, stage):
            raise Ignore()
        run = StageRun(store, job_id, stage)
        with (
            log_context(namespace=run.request.filters.namespace),
            job_heartbeat(store.redis, job_id, context.settings().job_heartbeat_s),
        ):
            _execute(run, span, work)


def _admit(store: JobStore, job_id: str, stage: Stage) -> bool:
    """Count this start of the stage; fail the job when a stage keeps killing its worker."""
    runs = store.redis.hincrby(redis_keys.job(job_id), f"runs:{stage.value}", 1)
    max_attempts = context.settings().max_attempts
    if runs > max_attempts:
        error = JobError(
            code="too_many_attempts",
            stage=stage,
            message=f"stage {stage.value} was started {runs - 1} times without finishing "
            "(its worker died each time); giving up",
        )
        logger.error("poison job stopped", extra={"runs": runs})
        store.finish(job_id, JobStatus.FAILED, error=error)
        return False
    store.redis.hsetnx(redis_keys.job(job_id), "started_at", datetime.now(UTC).isoformat())
    return True


def _job_error(stage: Stage, exc: BaseException) -> JobError:
    if isinstance(exc, LogAnalyzerError):
        return JobError(code=exc.code, message=exc.message, stage=stage)
    if isinstance(exc, SoftTimeLimitExceeded):
        return JobError(
            code="stage_timeout",
            stage=stage,
            message=f"stage {stage.value} ran past its time limit",
        )
    return JobError(
        code="internal_error",
        stage=stage,
        message=f"unexpected {type(exc).__name__} in {stage.value}",
    )


def _execute(run: StageRun, span: trace.Span, work: Callable[[StageRun], dict[str, Any]]) -> None:
    store, job_id, stage = run.store, run.job_id, run.stage
    recorder = MetricsRecorder(store.redis)
    store.commit(
        job_id,
        fields={"status": JobStatus.RUNNING.value, "stage": stage.value},
        events=[
            encode_event(
                EventType.STAGE, job_id, run.attempt, {"stage": stage.value, "state": "started"}
            )
        ],
    )
    started = time.monotonic()
    try:
        counts = work(run)
    except JobCancelledError:
        logger.info("stage stopped: job cancelled")
        raise Ignore() from None
    except Exception as exc:
        error = _job_error(stage, exc)
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, error.message)
        logger.warning(
            "stage failed",
            extra={"code": error.code, "error": error.message},
            exc_info=error.code == "internal_error",
        )
        recorder.inc(metrics.STAGE_FAILURES, stage=stage.value, code=error.code)
        recorder.observe(metrics.STAGE_DURATION, time.monotonic() - started, stage=stage.value)
        fence = run.attempt if stage is Stage.CALL_LLM else None
        store.finish(job_id, JobStatus.FAILED, attempt=fence, error=error)
        if error.code == "internal_error":
            raise
        raise Ignore() from None
    duration = time.monotonic() - started
    recorder.observe(metrics.STAGE_DURATION, duration, stage=stage.value)
    fence = run.attempt if run.result is not None else None
    store.commit(
        job_id,
        fields={f"counts:{stage.value}": json.dumps(counts)},
        events=[
            encode_event(
                EventType.STAGE,
                job_id,
                run.attempt,
                {
                    "stage": stage.value,
                    "state": "finished",
                    "counts": counts,
                    "duration_ms": round(duration * 1000, 1),
                },
            )
        ],
        attempt=fence,
    )
    if run.result is not None:
        store.finish(job_id, JobStatus.SUCCEEDED, attempt=run.attempt, result=run.result)
    logger.info("stage finished", extra={"duration_ms": round(duration * 1000, 1), **counts})


def _query_loki(run: StageRun) -> dict[str, Any]:
    settings = context.settings()
    request = run.request
    log_filter = parse_log_filter(request.log_filter)
    start_ns, end_ns = _to_ns(request.time_range.start), _to_ns(request.time_range.end)
    if settings.log_source == "files":
        from pathlib import Path

        from workers.file_source import read_files

        result = read_files(
            Path(settings.log_files_root),
            request.filters,
            log_filter,
            start_ns,
            end_ns,
            scan_limit=request.scan_limit,
            node_name=settings.node_name or None,
        )
    else:
        from workers.loki_client import fetch_range

        result = fetch_range(
            context.http_client(),
            settings.loki_url,
            build_query(request.filters, log_filter),
            start_ns,
            end_ns,
            scan_limit=request.scan_limit,
            page_size=settings.loki_page_size,
            max_retries=settings.loki_max_retries,
            timeout_s=settings.loki_timeout_s,
        )
    # Redact before anything is stored: no stage output may hold a secret, even briefly.
    redactions = 0
    for raw in result.lines:
        raw.line, found = redact(raw.line)
        redactions += found
    span = trace.get_current_span()
    span.set_attribute("logql.query", result.query)
    span.set_attribute("logs.redactions", redactions)
    span.set_attribute("loki.pages", result.pages)
    span.set_attribute("loki.entries", result.kept)
    MetricsRecorder(run.store.redis).inc(metrics.LOKI_LINES, result.seen)
    run.store.put_stage_data(run.job_id, Stage.QUERY_LOKI, encode_fetch(result))
    return {
        "query": result.query,
        "seen": result.seen,
        "kept": result.kept,
        "dropped": result.dropped,
        "pages": result.pages,
        "redactions": redactions,
    }


def _flatten(run: StageRun) -> dict[str, Any]:
    lines = decode_fetch(run.store.get_stage_data(run.job_id, Stage.QUERY_LOKI))
    entries = flatten(lines)
    run.store.put_stage_data(run.job_id, Stage.FLATTEN, encode_entries(entries))
    trace.get_current_span().set_attribute("logs.flattened_count", len(entries))
    return {"lines": len(lines), "entries": len(entries)}


def _normalize(run: StageRun) -> dict[str, Any]:
    entries = decode_entries(run.store.get_stage_data(run.job_id, Stage.FLATTEN))
    result = normalize(entries, max_evidence=max(run.request.limit, 50))
    run.store.put_stage_data(run.job_id, Stage.NORMALIZE, result.model_dump(mode="json"))
    span = trace.get_current_span()
    span.set_attribute("logs.templates", result.templates)
    span.set_attribute("logs.redactions", result.redactions)
    return {
        "entries": result.entries,
        "templates": result.templates,
        "redactions": result.redactions,
        "evidence": len(result.evidence),
    }


class JobTokenSink:
    """Publishes the answer into the job's event log, fenced by the attempt number."""

    def __init__(self, run: StageRun):
        self.run = run
        self.slot: LlmSlot | None = None

    def token(self, text: str) -> bool:
        # One Redis script per token: a span each would bury the trace under hundreds.
        with suppress_instrumentation():
            if self.slot is not None:
                self.slot.renew()
            return self.run.event(EventType.TOKEN, {"text": text}, fenced=True)

    def restart(self, reason: str) -> bool:
        return self.run.event(EventType.RETRY, {"reason": reason}, fenced=True)

    def stopped(self) -> bool:
        # Called every half second while the server is still on the prompt: keep the lease.
        with suppress_instrumentation():
            if self.slot is not None:
                self.slot.renew()
            fields = self.run.store.fields(self.run.job_id)
        return fields.get("status") in ("succeeded", "failed", "cancelled", None) or fields.get(
            "attempt"
        ) != str(self.run.attempt)


def _call_llm(run: StageRun) -> dict[str, Any]:
    settings = context.settings()
    store = run.store
    # Each start of this stage is a new attempt: older duplicates lose their fence and stop.
    run.attempt = int(store.redis.hincrby(redis_keys.job(run.job_id), "attempt", 1))
    if run.attempt > 1:
        run.event(
            EventType.RETRY,
            {"reason": "the LLM stage was restarted; discard the partial answer"},
            fenced=True,
        )
    normalized = NormalizeResult.model_validate(store.get_stage_data(run.job_id, Stage.NORMALIZE))
    client = context.llama_client()
    sink = JobTokenSink(run)

    def slot(total_slots: int) -> LlmSlot:
        sink.slot = LlmSlot(store.redis, total_slots, wait_s=settings.llm_slot_wait_s)
        return sink.slot

    result = analyze(
        normalized,
        request=run.request,
        client=client,
        sink=sink,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        max_restarts=settings.llm_max_retries,
        slot=slot,
    )
    span = trace.get_current_span()
    span.set_attribute("llm.model", result.model)
    span.set_attribute("llm.tokens_generated", result.tokens_generated)
    span.set_attribute("llm.evidence_items", len(result.evidence))
    recorder = MetricsRecorder(store.redis)
    recorder.inc(metrics.LLM_TOKENS, result.tokens_generated)
    if result.prompt_tokens is not None:
        span.set_attribute("llm.prompt_tokens", result.prompt_tokens)
        span.set_attribute("llm.prompt_tokens_cached", result.prompt_tokens_cached)
        recorder.inc(metrics.LLM_PROMPT_TOKENS, result.prompt_tokens)
        recorder.inc(metrics.LLM_PROMPT_TOKENS_CACHED, result.prompt_tokens_cached)
    if result.time_to_first_token_s is not None:
        span.set_attribute("llm.time_to_first_token_s", result.time_to_first_token_s)
        recorder.observe(metrics.LLM_TTFT, result.time_to_first_token_s)
    if result.timings is not None and result.timings.predicted_per_second:
        span.set_attribute("llm.tokens_per_second", result.timings.predicted_per_second)
        recorder.observe(metrics.LLM_TOKENS_PER_SECOND, result.timings.predicted_per_second)
    run.result = result
    return {
        "prompt_tokens": result.prompt_tokens,
        "prompt_tokens_cached": result.prompt_tokens_cached,
        "tokens_generated": result.tokens_generated,
        "evidence": len(result.evidence),
        "evidence_omitted": result.evidence_omitted,
    }


@celery_app.task(name=task_name(Stage.QUERY_LOKI))
def query_loki(job_id: str) -> None:
    """Stage 1: read every matching log line of the window."""
    run_stage(job_id, Stage.QUERY_LOKI, _query_loki)


@celery_app.task(name=task_name(Stage.FLATTEN))
def flatten_logs(job_id: str) -> None:
    """Stage 2: streams → entries, multi-line events joined."""
    run_stage(job_id, Stage.FLATTEN, _flatten)


@celery_app.task(name=task_name(Stage.NORMALIZE))
def normalize_logs(job_id: str) -> None:
    """Stage 3: redact, mine templates, rank evidence."""
    run_stage(job_id, Stage.NORMALIZE, _normalize)


@celery_app.task(name=task_name(Stage.CALL_LLM))
def call_llm(job_id: str) -> None:
    """Stage 4: stream the model's answer."""
    run_stage(job_id, Stage.CALL_LLM, _call_llm)
