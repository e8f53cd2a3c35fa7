"""The job record as the API shows it: status, per-stage counts, result, error."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.findings import Findings
from shared.schemas.pipeline import (
    EvidenceItem,
    FlattenCounts,
    LlmCounts,
    NormalizeCounts,
    QueryCounts,
    StageCountsBase,
)
from shared.schemas.request import AnalysisRequest, TimeRange
from shared.schemas.verification import Verification


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


TERMINAL_STATUSES: tuple[JobStatus, ...] = tuple(s for s in JobStatus if s.terminal)

COUNTS_MODELS: dict[Stage, type[StageCountsBase]] = {
    Stage.QUERY_LOKI: QueryCounts,
    Stage.FLATTEN: FlattenCounts,
    Stage.NORMALIZE: NormalizeCounts,
    Stage.CALL_LLM: LlmCounts,
}


class StageCounts(BaseModel):
    """`counts` of a job: one entry per stage that has finished."""

    query_loki: QueryCounts | None = None
    flatten: FlattenCounts | None = None
    normalize: NormalizeCounts | None = None
    call_llm: LlmCounts | None = None


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


class Citations(BaseModel):
    """Template ids the answer cites, split into those it was given and those it made up."""

    valid: list[str] = Field(default_factory=list)
    invalid: list[str] = Field(default_factory=list)


class StructuredAnswer(BaseModel):
    """The model's answer as the JSON schema asked for it (`workers.llm.structured`): `cause`
    is one of the findings' candidate template ids, or `none`."""

    summary: str
    cause: str
    explanation: str
    next_steps: list[str]


class JobError(BaseModel):
    code: str
    message: str
    stage: Stage | None = None


class JobResult(BaseModel):
    """What a finished job delivers: the findings, the evidence, and the model's answer.

    `model_status` says what became of the model's part: `answered`; `skipped` (no model
    call: nothing matched, or only info/warning lines; `model_skip_reason` says which);
    `failed` (the model was unreachable or failing: `model_error` says why, and the findings
    and evidence are delivered anyway, the job still succeeds).
    """

    analysis: str
    findings: Findings | None = None
    evidence: list[EvidenceItem]
    evidence_omitted: int = 0
    model: str
    model_status: Literal["answered", "skipped", "failed"] = "answered"
    model_skip_reason: Literal["no_matching_lines", "only_low_severity"] | None = None
    model_error: JobError | None = None
    citations: Citations = Field(default_factory=Citations)
    prompt_tokens: int | None = Field(
        default=None, description="size of the prompt in tokens, cached part included"
    )
    prompt_tokens_cached: int = Field(
        default=0, description="prompt tokens the server reused from its prompt cache"
    )
    tokens_generated: int = 0
    finish_reason: str | None = Field(
        default=None,
        description="stop, length, or degenerate (the guard stopped a looping answer)",
    )
    time_to_first_token_s: float | None = None
    timings: LlmTimings | None = None
    verification: Verification | None = Field(
        default=None,
        description="the answer checked against the evidence (null: no answer, or a result "
        "stored before answers were checked)",
    )
    answer_format: Literal["text", "json"] = Field(
        default="text",
        description="json: the model was held to a JSON schema; `analysis` is its Markdown",
    )
    structured: StructuredAnswer | None = Field(
        default=None, description="the JSON answer, parsed and valid against its schema"
    )
    structured_note: str | None = Field(
        default=None,
        description="why a JSON answer has no `structured` (cut, invalid), or why the job "
        "fell back to free text (the server rejected the schema)",
    )


class JobView(BaseModel):
    """`GET /v1/jobs/{id}`."""

    job_id: str
    status: JobStatus
    stage: Stage | None = None
    attempt: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counts: StageCounts = Field(default_factory=StageCounts)
    request: AnalysisRequest
    result: JobResult | None = None
    error: JobError | None = None


class JobSummary(BaseModel):
    """One line of `GET /v1/jobs`: a job of the caller's, without its result."""

    job_id: str
    status: JobStatus
    namespace: str
    time_range: TimeRange
    created_at: datetime
    model: str | None = None
    tokens_generated: int | None = None
    ttft_s: float | None = None
    cause: str | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str
    events_url: str
