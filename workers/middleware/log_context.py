"""Every log line written during a stage carries the job id, the stage and the namespace."""

from __future__ import annotations

from collections.abc import Callable

from shared.telemetry import log_context
from workers.runner import StageRun


def job_log_context(run: StageRun, call_next: Callable[[], None]) -> None:
    with log_context(
        job_id=run.job_id, stage=run.stage.value, namespace=run.request.filters.namespace
    ):
        call_next()
