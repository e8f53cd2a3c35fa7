"""The analysis request: what to read and how much evidence to show the model."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.settings import DEFAULT_SCAN_LIMIT

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
    scan_limit: int = Field(
        default=DEFAULT_SCAN_LIMIT,
        ge=1,
        le=1_000_000,
        description="log lines read at most; a window holding more is sampled across its "
        "whole length (see coverage in the findings)",
    )
    log_filter: str | None = Field(
        default=None,
        max_length=2000,
        description="a LogQL pipeline such as '|~ \"timeout\"'; null (the default) reads "
        'every line, error-or-warning ones first; "" reads every line evenly',
    )
    question: str | None = Field(default=None, max_length=2000)
