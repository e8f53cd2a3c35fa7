"""The job's chain of stage tasks, built by task name so the API needs no worker code."""

from __future__ import annotations

from celery import chain, signature

from shared.schemas import STAGES
from shared.settings import Settings
from workers.celery_app import INTERACTIVE_QUEUE, celery_app

TASK_PREFIX = "log_analyzer."


def task_name(stage: str) -> str:
    return f"{TASK_PREFIX}{stage}"


def enqueue_pipeline(job_id: str, settings: Settings, queue: str = INTERACTIVE_QUEUE) -> None:
    """Publish `query_loki → flatten → normalize → call_llm` for one job."""
    del settings  # the chain carries only the job id; stages read everything else from Redis
    steps = [
        signature(task_name(stage), args=(job_id,), immutable=True, app=celery_app, queue=queue)
        for stage in STAGES
    ]
    chain(*steps).apply_async()
