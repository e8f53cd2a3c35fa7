"""The glue between a stage's pure function and the job: read its input from Redis, give it
its clients, store its output, and report its counts (and span attributes).

One function per stage, each `(run) -> None`; `workers.tasks` runs them inside the
middleware chain.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from redis.exceptions import RedisError

from shared import metrics
from shared.metrics import MetricsRecorder
from shared.schemas import (
    TERMINAL_STATUSES,
    EventType,
    ProgressData,
    QueryCounts,
    RetryData,
    Stage,
    TokenData,
)
from workers import context, stage_data
from workers.llm.slots import LlmSlot
from workers.runner import StageRun, Work
from workers.stages import call_llm, flatten, normalize, query_loki


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a stage's bulk work. Lines and entries hold no
    reference cycles, so reference counting frees them as they go; the collector would only
    rescan the worker's own long-lived objects on every pass: a quarter of the time of
    flatten and normalize at a million lines (bench/scale.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_query_loki(run: StageRun) -> None:
    lines = stage_data.RedisLines(run.store, run.job_id)
    lines.clear()
    with gc_paused():
        counts = query_loki.run(
            run.request,
            context.log_source(tenant=run.tenant),
            lines,
            previous_budget=min(run.settings.previous_window_scan_limit, run.request.scan_limit),
            context=flatten.may_be_multiline,
        )
    span = trace.get_current_span()
    span.set_attribute("logql.query", counts.query)
    span.set_attribute("logs.redactions", counts.redactions)
    span.set_attribute("loki.pages", counts.pages)
    span.set_attribute("loki.entries", counts.kept)
    if counts.coverage is not None:
        span.set_attribute("logs.coverage", counts.coverage.mode)
        if counts.coverage.lines_in_window is not None:
            span.set_attribute("logs.lines_in_window", counts.coverage.lines_in_window)
    MetricsRecorder(run.store.redis).inc(metrics.LOKI_LINES, counts.seen)
    run.counts = counts


def query_counts(run: StageRun) -> QueryCounts:
    """What the query stage of this job read (its counts, with the coverage)."""
    return QueryCounts.model_validate_json(run.store.fields(run.job_id)["counts:query_loki"])


def run_flatten(run: StageRun) -> None:
    lines = stage_data.RedisLines(run.store, run.job_id)
    entries = stage_data.RedisEntries(run.store, run.job_id)
    entries.clear()
    previous = (
        lines.lines(query_loki.PREVIOUS) if query_counts(run).previous_seen is not None else None
    )
    with gc_paused():
        counts = flatten.run(lines.lines(query_loki.CURRENT), previous, entries)
    trace.get_current_span().set_attribute("logs.flattened_count", counts.entries)
    run.counts = counts


def run_normalize(run: StageRun) -> None:
    stored = stage_data.RedisEntries(run.store, run.job_id)
    query = query_counts(run)
    previous = stored.entries(query_loki.PREVIOUS) if query.previous_seen is not None else None
    with gc_paused():
        result, counts = normalize.run(
            stored.entries(query_loki.CURRENT),
            limit=run.request.limit,
            previous=previous,
            window=normalize.window_info(run.request, query),
        )
    stage_data.save_evidence(run.store, run.job_id, result)
    span = trace.get_current_span()
    span.set_attribute("logs.templates", counts.templates)
    span.set_attribute("logs.redactions", counts.redactions)
    if result.findings is not None:
        # The findings reach clients now, before the model is even asked.
        run.emit(EventType.FINDINGS, result.findings)
    run.counts = counts


class JobTokenSink:
    """Publishes the answer into the job's event log, fenced by the run's attempt."""

    def __init__(self, run: StageRun):
        self.run = run
        self.slot: LlmSlot | None = None

    def token(self, text: str) -> bool:
        # One Redis script per token: a span each would bury the trace under hundreds.
        with suppress_instrumentation():
            if self.slot is not None:
                self.slot.renew()
            return self.run.emit(EventType.TOKEN, TokenData(text=text))

    def restart(self, reason: str) -> bool:
        return self.run.emit(EventType.RETRY, RetryData(reason=reason, stage=Stage.CALL_LLM))

    def progress(self, data: ProgressData) -> bool:
        """Tell clients the model is still on the prompt; False means stop."""
        with suppress_instrumentation():
            if self.slot is not None:
                self.slot.renew()
            return self.run.emit(EventType.PROGRESS, data)

    def stopped(self) -> bool:
        # Called every half second while the server is still on the prompt: keep the lease.
        with suppress_instrumentation():
            if self.slot is not None:
                self.slot.renew()
            fields = self.run.store.fields(self.run.job_id)
        status = fields.get("status")
        return (
            status is None
            or status in TERMINAL_STATUSES
            or fields.get("attempt") != str(self.run.attempt)
        )


def run_call_llm(run: StageRun) -> None:
    settings = run.settings
    store = run.store
    normalized = stage_data.load_evidence(store, run.job_id)
    sink = JobTokenSink(run)

    def slot(total_slots: int) -> LlmSlot:
        limit = total_slots
        if run.backfill_id:
            # Backfill items leave slots free for interactive jobs, but never all of them:
            # with one slot they share it (an interactive job waits for one answer at most).
            limit = max(1, total_slots - settings.backfill_reserved_llm_slots)
        sink.slot = LlmSlot(store.redis, limit, wait_s=settings.llm_slot_wait_s)
        return sink.slot

    options = call_llm.LlmOptions(
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        max_restarts=settings.llm_max_retries,
        sampling=settings.llm_sampling(),
        grounding_threshold=settings.llm_grounding_threshold,
        answer_format=settings.llm_answer_format,
        structured_max_context=settings.llm_structured_max_context,
    )
    result, counts = call_llm.run(
        normalized,
        request=run.request,
        client=context.llama_client(),
        sink=sink,
        options=options,
        slot=slot,
        progress=sink.progress,
        # The time limit, and Redis failing under the job's own records: not the model's part.
        fatal=(SoftTimeLimitExceeded, RedisError),
    )
    if result.model_error is not None:
        # Said as it happens, with its code; the findings and the evidence follow in `result`
        # and the job still succeeds.
        run.emit(EventType.ERROR, result.model_error)
    span = trace.get_current_span()
    span.set_attribute("llm.model", result.model)
    span.set_attribute("llm.status", result.model_status)
    recorder = MetricsRecorder(store.redis)
    recorder.inc(metrics.LLM_CALLS, status=result.model_status)
    if result.model_error is not None:
        span.set_attribute("llm.error", result.model_error.code)
    span.set_attribute("llm.tokens_generated", result.tokens_generated)
    span.set_attribute("llm.evidence_items", len(result.evidence))
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
    run.counts = counts


WORK: dict[Stage, Work] = {
    Stage.QUERY_LOKI: run_query_loki,
    Stage.FLATTEN: run_flatten,
    Stage.NORMALIZE: run_normalize,
    Stage.CALL_LLM: run_call_llm,
}
