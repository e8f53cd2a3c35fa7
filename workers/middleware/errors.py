"""Turn what a stage raised into the job's failure: one `error` event, status `failed`.

Errors the service raises on purpose (LogAnalyzerError) keep their code and message; a
Celery soft time limit becomes `stage_timeout`; anything else is `internal_error` and is
raised again so the task fails visibly in Celery and Flower too. Cancellation is no error:
the stage just stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded

from shared.errors import JobCancelledError, LogAnalyzerError
from shared.schemas import JobError, JobStatus, Stage
from workers.runner import StageFailed, StageRun, StageSkipped

logger = logging.getLogger(__name__)


def job_error(stage: Stage, exc: BaseException) -> JobError:
    """The JobError clients see for `exc` raised in `stage`."""
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


def error_mapping(run: StageRun, call_next: Callable[[], None]) -> None:
    try:
        call_next()
    except (StageSkipped, StageFailed):
        raise
    except JobCancelledError:
        logger.info("stage stopped: job cancelled")
        raise StageSkipped("cancelled") from None
    except Exception as exc:
        error = job_error(run.stage, exc)
        internal = error.code == "internal_error"
        logger.warning(
            "stage failed", extra={"code": error.code, "error": error.message}, exc_info=internal
        )
        run.finish(JobStatus.FAILED, error=error)
        raise StageFailed(error, internal=internal) from exc
