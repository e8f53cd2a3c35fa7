"""Job events: the envelope every SSE client sees, and the typed payload of each type."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from shared.schemas.findings import Findings
from shared.schemas.jobs import COUNTS_MODELS, JobError, JobResult, JobStatus, Stage
from shared.schemas.pipeline import FlattenCounts, LlmCounts, NormalizeCounts, QueryCounts


class EventType(StrEnum):
    STAGE = "stage"
    FINDINGS = "findings"
    TOKEN = "token"
    PROGRESS = "progress"
    RETRY = "retry"
    RESULT = "result"
    ERROR = "error"
    CANCELLED = "cancelled"
    DONE = "done"


TERMINAL_EVENT = EventType.DONE


class Event(BaseModel):
    """One entry of a job's event log; `seq` is the SSE `id:` and strictly increases."""

    seq: int
    type: EventType
    job_id: str
    attempt: int = 0
    ts: float
    data: dict[str, Any] = Field(default_factory=dict)
    _json: str | None = PrivateAttr(default=None)

    def to_json(self) -> str:
        """The event as JSON, serialized once however many clients it goes to."""
        if self._json is None:
            self._json = self.model_dump_json()
        return self._json


class StageEventData(BaseModel):
    """`stage`: a stage started, or finished with its counts and duration."""

    stage: Stage
    state: Literal["started", "finished"]
    counts: QueryCounts | FlattenCounts | NormalizeCounts | LlmCounts | None = None
    duration_ms: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _counts_of_the_stage(cls, data: Any) -> Any:
        # Pick the counts model by the stage, not by which model happens to validate.
        if isinstance(data, dict) and isinstance(data.get("counts"), dict):
            model = COUNTS_MODELS[Stage(data["stage"])]
            data = {**data, "counts": model.model_validate(data["counts"])}
        return data


class TokenData(BaseModel):
    """`token`: a fragment of the answer."""

    text: str


class ServerPromptProgress(BaseModel):
    """llama.cpp's own report on the prompt (`prompt_progress`, asked with `return_progress`):
    of `total` tokens, `processed` are done (the `cache`d ones included), `time_ms` after the
    slot started."""

    total: int
    cache: int
    processed: int
    time_ms: int


class ProgressData(BaseModel):
    """`progress`: the model is still on the prompt, before its first token. Sent when the
    server reports progress and at least every LLM_PROGRESS_INTERVAL_S meanwhile."""

    stage: Stage = Stage.CALL_LLM
    elapsed_s: float  # since the model was asked
    deadline_s: float  # the first token is due within this (else an `llm_timeout` error)
    prompt_tokens: int  # the prompt's size, as counted for the deadline
    server: ServerPromptProgress | None = None  # None from servers that report no progress


class RetryData(BaseModel):
    """`retry`: a stage started again; discard what it streamed before (the partial answer)."""

    reason: str
    stage: Stage | None = None


class CancelledData(BaseModel):
    """`cancelled`: the job was cancelled."""

    model_config = ConfigDict(extra="forbid")


class DoneData(BaseModel):
    """`done`: the last event of a job."""

    status: JobStatus


EVENT_DATA: dict[EventType, type[BaseModel]] = {
    EventType.STAGE: StageEventData,
    EventType.FINDINGS: Findings,
    EventType.TOKEN: TokenData,
    EventType.PROGRESS: ProgressData,
    EventType.RETRY: RetryData,
    EventType.RESULT: JobResult,
    EventType.ERROR: JobError,
    EventType.CANCELLED: CancelledData,
    EventType.DONE: DoneData,
}


def event_data(event: Event) -> BaseModel:
    """The typed payload of `event`."""
    return EVENT_DATA[event.type].model_validate(event.data)
