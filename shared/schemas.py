"""Request, job, event and pipeline models shared by the API and the workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from shared.settings import DEFAULT_LOG_FILTER


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Stage(StrEnum):
    QUERY_LOKI = "query_loki"
    FLATTEN = "flatten"
    NORMALIZE = "normalize"
    CALL_LLM = "call_llm"


STAGES: tuple[Stage, ...] = tuple(Stage)


class Level(StrEnum):
    """Severity of one log entry, most severe first in `LEVEL_RANK`."""

    FATAL = "fatal"
    ERROR = "error"
    WARN = "warn"
    INFO = "info"
    DEBUG = "debug"
    UNKNOWN = "unknown"


LEVEL_RANK: dict[Level, int] = {
    Level.FATAL: 5,
    Level.ERROR: 4,
    Level.WARN: 3,
    Level.UNKNOWN: 2,
    Level.INFO: 1,
    Level.DEBUG: 0,
}


# --- API request ---------------------------------------------------------------------------

# Loki and the pipeline count time in int64 nanoseconds since 1970.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be an RFC3339 timestamp with a time zone (e.g. ...Z)")
        try:
            moment = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
        if not EARLIEST <= moment <= LATEST:
            raise ValueError("timestamp must be between 1970 and 2262 (nanoseconds since 1970)")
        return moment

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Filters(BaseModel):
    """Which logs to read; validated into safe LogQL by `shared.logql`."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=63)
    pod: str | None = Field(default=None, max_length=512, description="RE2 regex on the pod name")
    container: str | None = Field(default=None, max_length=63)
    node: str | None = Field(default=None, max_length=253)


class AnalysisRequest(BaseModel):
    """`POST /v1/jobs` body: what to analyse and how much evidence to show the model."""

    model_config = ConfigDict(extra="forbid")

    time_range: TimeRange
    filters: Filters
    limit: int = Field(default=15, ge=1, le=200, description="templates shown to the LLM")
    scan_limit: int = Field(default=5000, ge=1, le=100_000, description="log lines read at most")
    log_filter: str = Field(default=DEFAULT_LOG_FILTER, max_length=2000)
    question: str | None = Field(default=None, max_length=2000)


# --- Pipeline data (hot path: dataclasses, not pydantic) ------------------------------------


@dataclass(slots=True)
class RawLine:
    """One log line as a source returned it."""

    ts_ns: int
    labels: dict[str, str]
    line: str


@dataclass(slots=True)
class FetchResult:
    """Lines read from a log source for one job, oldest first."""

    lines: list[RawLine]
    query: str
    seen: int = 0
    kept: int = 0
    dropped: int = 0
    pages: int = 0


@dataclass(slots=True)
class Entry:
    """One log event after flattening: multi-line events already joined."""

    ts_ns: int
    namespace: str
    pod: str
    container: str
    node: str
    level: Level
    message: str
    fields: dict[str, str] = field(default_factory=dict)


class EvidenceItem(BaseModel):
    """One mined template as the model sees it; `template_id` is what the answer cites."""

    template_id: str
    template: str
    level: Level
    count: int
    first_seen: datetime
    last_seen: datetime
    pods: list[str]
    containers: list[str]
    examples: list[str]
    score: float = 0.0


class NormalizeResult(BaseModel):
    evidence: list[EvidenceItem]
    entries: int
    templates: int
    redactions: int


# --- Job record and events ------------------------------------------------------------------


class LlmTimings(BaseModel):
    """llama-server's own `timings`: `prompt_n` is only the prompt tokens processed anew,
    `cache_n` those reused from its prompt cache."""

    model_config = ConfigDict(extra="allow")

    cache_n: int | None = None
    prompt_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    predicted_per_second: float | None = None


class JobResult(BaseModel):
    analysis: str
    evidence: list[EvidenceItem]
    evidence_omitted: int = 0
    model: str
    prompt_tokens: int | None = Field(
        default=None, description="size of the prompt in tokens, cached part included"
    )
    prompt_tokens_cached: int = Field(
        default=0, description="prompt tokens the server reused from its prompt cache"
    )
    tokens_generated: int = 0
    finish_reason: str | None = None
    time_to_first_token_s: float | None = None
    timings: LlmTimings | None = None


class JobError(BaseModel):
    code: str
    message: str
    stage: Stage | None = None


class JobView(BaseModel):
    """`GET /v1/jobs/{id}`."""

    job_id: str
    status: JobStatus
    stage: Stage | None = None
    attempt: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    request: AnalysisRequest
    result: JobResult | None = None
    error: JobError | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str
    events_url: str


class EventType(StrEnum):
    STAGE = "stage"
    TOKEN = "token"
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
