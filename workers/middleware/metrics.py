"""Stage duration and failures, added to the shared metrics hash the API serves."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared import metrics
from shared.metrics import MetricsRecorder
from workers.runner import StageFailed, StageRun, StageSkipped


def stage_metrics(run: StageRun, call_next: Callable[[], None]) -> None:
    recorder = MetricsRecorder(run.store.redis)
    stage = run.stage.value
    started = time.monotonic()
    try:
        call_next()
    except StageSkipped:
        raise  # nothing ran: neither a duration nor a failure
    except StageFailed as exc:
        recorder.inc(metrics.STAGE_FAILURES, stage=stage, code=exc.error.code)
        recorder.observe(metrics.STAGE_DURATION, time.monotonic() - started, stage=stage)
        raise
    recorder.observe(metrics.STAGE_DURATION, time.monotonic() - started, stage=stage)
