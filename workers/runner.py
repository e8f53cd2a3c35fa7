"""Run one stage of one job: load the job, pass through the middleware, call the stage.

The cross-cutting concerns of a stage (tracing, log context, metrics, admission of a
redelivered task, attempt fencing, heartbeat, events, error mapping) are middleware: small
callables `(run, call_next) -> None` applied in order around the stage's work, in the
spirit of dramatiq's middleware. Each lives in `workers/middleware/` with its own test;
adding a concern (a per-tenant quota, say) is one more entry in `workers.middleware.CHAIN`.

A stage's work reads its input and writes its output through `run.store`, and leaves its
typed counts in `run.counts` (the last stage also its `run.result`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from shared.job_store import JobStore, encode_event
from shared.schemas import (
    AnalysisRequest,
    EventType,
    JobError,
    JobResult,
    JobStatus,
    Stage,
    StageCountsBase,
)
from shared.settings import Settings


class StageSkipped(Exception):
    """Raised when the stage must not run or go on (job ended or cancelled, stale attempt,
    poison job already failed); the task ends quietly and the chain stops."""


class StageFailed(Exception):
    """Raised once the job has been marked failed with `error`; `internal` is True for an
    unexpected exception (the task then fails visibly in Celery too)."""

    def __init__(self, error: JobError, *, internal: bool):
        super().__init__(error.message)
        self.error = error
        self.internal = internal


@dataclass
class StageRun:
    """One execution of one stage of one job, as the middleware and the work see it."""

    job_id: str
    stage: Stage
    store: JobStore
    settings: Settings
    request: AnalysisRequest
    attempt: int
    tenant: str = ""  # the Loki tenant (X-Scope-OrgID) of the key that created the job
    backfill_id: str = ""  # set for an item of a backfill
    dispatch: int = 0  # the dispatch the message was sent under (see shared.liveness)
    starts: int = 0  # how many times this stage of this job was started, this one included
    counts: StageCountsBase | None = None
    result: JobResult | None = None
    duration_s: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    def emit(
        self, event_type: EventType, data: BaseModel, *, fields: dict[str, str] | None = None
    ) -> bool:
        """Append an event (and update fields) unless the job ended or this attempt is stale."""
        body = encode_event(event_type, self.job_id, self.attempt, data)
        return (
            self.store.commit(self.job_id, fields=fields, events=[body], attempt=self.attempt) > 0
        )

    def finish(
        self,
        status: JobStatus,
        *,
        result: JobResult | None = None,
        error: JobError | None = None,
    ) -> bool:
        """The job's terminal transition, fenced by this attempt."""
        return self.store.finish(
            self.job_id, status, attempt=self.attempt, result=result, error=error
        )


Work = Callable[[StageRun], None]
Middleware = Callable[[StageRun, Callable[[], None]], None]


def load_run(
    store: JobStore, settings: Settings, job_id: str, stage: Stage, dispatch: int = 0
) -> StageRun:
    """The run for this stage (sent under `dispatch`); StageSkipped if the job is gone or
    already ended."""
    fields = store.fields(job_id)
    status = fields.get("status")
    if status is None or JobStatus(status).terminal:
        raise StageSkipped(f"job {job_id} is {status or 'gone'}")
    return StageRun(
        job_id=job_id,
        stage=stage,
        store=store,
        settings=settings,
        request=AnalysisRequest.model_validate_json(fields["request"]),
        attempt=int(fields.get("attempt", "0")),
        tenant=fields.get("tenant", ""),
        backfill_id=fields.get("backfill_id", ""),
        dispatch=dispatch,
    )


def run_stage(run: StageRun, work: Work, middleware: Sequence[Middleware]) -> None:
    """Call `work` inside `middleware` (the first one outermost)."""

    def call(index: int) -> None:
        if index == len(middleware):
            work(run)
        else:
            middleware[index](run, lambda: call(index + 1))

    call(0)
