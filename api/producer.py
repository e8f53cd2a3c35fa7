"""Publish a job's chain of stage tasks by name: the API's only contact with Celery.

The API imports no worker code. It builds a producer-only Celery app with the same broker
settings as the workers (`shared.queues.broker_settings`) and sends `query_loki → flatten →
normalize → call_llm` as signatures by task name, each carrying only the job id.
"""

from __future__ import annotations

from celery import Celery, chain, signature

from shared import queues
from shared.schemas import STAGES
from shared.settings import Settings


class Producer:
    """Sends job chains to the broker."""

    def __init__(self, settings: Settings):
        self.app = Celery("log_analyzer", set_as_current=False)
        self.app.conf.update(**queues.broker_settings(settings))

    def enqueue(self, job_id: str, queue: str = queues.INTERACTIVE, backfill_id: str = "") -> None:
        """Publish the job's chain on `queue` (blocking; the caller bounds it). A backfill
        item's tasks carry the backfill id too, so Flower shows what they belong to."""
        kwargs = {"backfill_id": backfill_id} if backfill_id else {}
        steps = [
            signature(
                queues.task_name(stage),
                args=(job_id,),
                kwargs=kwargs,
                immutable=True,
                app=self.app,
                queue=queue,
            )
            for stage in STAGES
        ]
        chain(*steps).apply_async()
