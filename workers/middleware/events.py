"""`stage` events around the work: started (job running), finished with counts, and the
job's success after the last stage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.schemas import EventType, JobStatus, StageEventData
from workers.runner import StageRun, StageSkipped

logger = logging.getLogger(__name__)


def stage_events(run: StageRun, call_next: Callable[[], None]) -> None:
    stage = run.stage
    started_fields = {"status": JobStatus.RUNNING.value, "stage": stage.value}
    if not run.emit(
        EventType.STAGE, StageEventData(stage=stage, state="started"), fields=started_fields
    ):
        raise StageSkipped("job ended or attempt stale")
    started = time.monotonic()
    call_next()
    run.duration_s = time.monotonic() - started
    if run.counts is None:
        raise RuntimeError(f"stage {stage.value} set no counts")
    finished = StageEventData(
        stage=stage,
        state="finished",
        counts=run.counts,
        duration_ms=round(run.duration_s * 1000, 1),
    )
    counts_field = {f"counts:{stage.value}": run.counts.model_dump_json()}
    if not run.emit(EventType.STAGE, finished, fields=counts_field):
        raise StageSkipped("job ended or attempt stale")
    if run.result is not None:
        run.finish(JobStatus.SUCCEEDED, result=run.result)
    logger.info(
        "stage finished",
        extra={"duration_ms": finished.duration_ms, **run.counts.model_dump()},
    )
