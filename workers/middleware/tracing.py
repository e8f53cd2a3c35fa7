"""A span per stage run, named after the stage, marked as an error when the stage fails."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace

from shared.telemetry import tracer
from workers.runner import StageFailed, StageRun


def stage_span(run: StageRun, call_next: Callable[[], None]) -> None:
    with tracer().start_as_current_span(
        run.stage.value, record_exception=False, set_status_on_exception=False
    ) as span:
        span.set_attribute("job.id", run.job_id)
        span.set_attribute("k8s.namespace.name", run.request.filters.namespace)
        try:
            call_next()
        except StageFailed as exc:
            span.record_exception(exc.__cause__ or exc)
            span.set_status(trace.StatusCode.ERROR, exc.error.message)
            raise
