"""The Celery tasks: one per stage, named after it (`log_analyzer.<stage>`), each running the
stage's binding inside the middleware chain. Tasks pass only the job id; stages read and
write their data in Redis.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import Ignore

from shared.queues import task_name
from shared.schemas import STAGES, Stage
from workers import context
from workers.bindings import WORK
from workers.celery_app import celery_app
from workers.middleware import CHAIN
from workers.runner import StageFailed, StageSkipped, load_run, run_stage


def execute(job_id: str, stage: Stage, dispatch: int = 0) -> None:
    """Run `stage` of the job (a message sent under `dispatch`); Ignore (the chain stops)
    when it is skipped or has failed."""
    try:
        run = load_run(context.job_store(), context.settings(), job_id, stage, dispatch)
        run_stage(run, WORK[stage], CHAIN)
    except StageSkipped:
        raise Ignore() from None
    except StageFailed as exc:
        if exc.internal and exc.__cause__ is not None:
            raise exc.__cause__ from None  # Celery and Flower show the task as failed
        raise Ignore() from None


def register(stage: Stage) -> Any:
    """The task that runs `stage`."""

    def run(job_id: str, backfill_id: str = "", dispatch: int = 0) -> None:
        # `backfill_id` is only shown (Flower lists a task's arguments); the job record has it.
        # `dispatch` is set on the stages the reaper sent again (shared.liveness).
        execute(job_id, stage, dispatch)

    run.__name__ = run.__qualname__ = stage.value
    run.__doc__ = f"Run the {stage.value} stage of one job."
    return celery_app.task(name=task_name(stage))(run)


TASKS = {stage: register(stage) for stage in STAGES}
