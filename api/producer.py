"""Publish a job's chain of stage tasks by name: the API's only contact with Celery.

The API imports no worker code. It builds a producer-only Celery app with the same broker
settings as the workers (`shared.queues.broker_settings`) and sends `query_loki → flatten →
normalize → call_llm` as signatures by task name, each carrying only the job id (and, when
the reaper sends the rest of a chain again, the dispatch it belongs to).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain, signature

from shared import queues
from shared.schemas import STAGES, Stage
from shared.settings import Settings


class Producer:
    """Sends job chains to the broker."""

    def __init__(self, settings: Settings):
        self.app = Celery("log_analyzer", set_as_current=False)
        self.app.conf.update(**queues.broker_settings(settings))

    def enqueue(
        self,
        job_id: str,
        queue: str = queues.INTERACTIVE,
        backfill_id: str = "",
        *,
        start: Stage = STAGES[0],
        dispatch: int = 0,
    ) -> None:
        """Publish the job's chain on `queue` (blocking; the caller bounds it)."""
        self.steps(job_id, queue, backfill_id, start=start, dispatch=dispatch).apply_async()

    def steps(
        self,
        job_id: str,
        queue: str = queues.INTERACTIVE,
        backfill_id: str = "",
        *,
        start: Stage = STAGES[0],
        dispatch: int = 0,
    ) -> Any:
        """The job's chain from `start` on. A backfill item's tasks carry the backfill id
        too, so Flower shows what they belong to; the stages of a job the reaper took over
        carry its new `dispatch`."""
        kwargs: dict[str, Any] = {"backfill_id": backfill_id} if backfill_id else {}
        if dispatch:
            kwargs["dispatch"] = dispatch
        steps = [
            signature(
                queues.task_name(stage),
                args=(job_id,),
                kwargs=kwargs,
                immutable=True,
                app=self.app,
                queue=queue,
            )
            for stage in STAGES[STAGES.index(start) :]
        ]
        return chain(*steps)

    def rerun(self, job_id: str, stage: Stage, dispatch: int, backfill_id: str) -> None:
        """Send the job's chain again from `stage` under `dispatch`, on the job's own queue."""
        queue = queues.BACKFILL if backfill_id else queues.INTERACTIVE
        self.enqueue(job_id, queue, backfill_id, start=stage, dispatch=dispatch)
