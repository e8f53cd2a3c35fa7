"""Backfills: one analysis per (namespace, window) over a longer range; and the findings that
keep their identity across those analyses."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.schemas.jobs import JobStatus
from shared.schemas.levels import Level
from shared.schemas.request import TimeRange
from shared.settings import DEFAULT_SCAN_LIMIT

MIN_WINDOW = timedelta(minutes=5)
_DURATION = re.compile(r"^(?P<n>[1-9][0-9]{0,5})(?P<unit>[smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`15m`, `1h`, `2d` → timedelta; ValueError naming the accepted form."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError("must be a number and a unit: s, m, h or d (e.g. 15m, 1h)")
    return timedelta(seconds=int(match["n"]) * _UNIT_S[match["unit"]])


class BackfillFilters(BaseModel):
    """The filters of every item, but the namespace, which the backfill chooses."""

    model_config = ConfigDict(extra="forbid")

    pod: str | None = Field(default=None, max_length=512)
    container: str | None = Field(default=None, max_length=63)
    node: str | None = Field(default=None, max_length=253)


class BackfillRequest(BaseModel):
    """`POST /v1/backfills`: analyse each namespace, window by window, over `time_range`."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] | None = Field(
        default=None, min_length=1, max_length=500, description="names; or use namespace_regex"
    )
    namespace_regex: str | None = Field(
        default=None,
        max_length=512,
        description="RE2, matched against whole namespace names the log source knows; "
        "neither this nor `namespaces`: every namespace",
    )
    time_range: TimeRange
    window: str = Field(default="1h", description="length of each analysed window, e.g. 15m, 1h")
    filters: BackfillFilters = Field(default_factory=BackfillFilters)
    limit: int = Field(default=15, ge=1, le=200)
    scan_limit: int = Field(default=DEFAULT_SCAN_LIMIT, ge=1, le=1_000_000)
    log_filter: str | None = Field(default=None, max_length=2000)
    question: str | None = Field(default=None, max_length=2000)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if parse_duration(value) < MIN_WINDOW:
            raise ValueError("window must be at least 5m")
        return value

    @field_validator("namespaces")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for name in value:
                if not 1 <= len(name) <= 63:
                    raise ValueError(f"namespace {name[:70]!r} must be 1 to 63 characters")
            value = list(dict.fromkeys(value))
        return value

    @model_validator(mode="after")
    def _one_way_to_name_them(self) -> BackfillRequest:
        if self.namespaces is not None and self.namespace_regex is not None:
            raise ValueError("give namespaces or namespace_regex, not both")
        return self

    @property
    def window_length(self) -> timedelta:
        return parse_duration(self.window)


class BackfillAccepted(BaseModel):
    backfill_id: str
    items: int
    status_url: str


class BackfillItem(BaseModel):
    """One (namespace, window) of a backfill and the job that analyses it."""

    namespace: str
    start: datetime
    end: datetime
    job_id: str
    status: JobStatus
    reused: bool = False  # served by an earlier job with the same normalized request
    finished_at: datetime | None = None
    error_lines: int | None = None
    warning_lines: int | None = None
    new_findings: int | None = None
    cause: str | None = None


class Totals(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    reused: int = 0


class RollupRow(BaseModel):
    """One namespace over the whole backfill."""

    namespace: str
    error_lines: int
    new_findings: int
    worst_window: datetime | None
    causes: list[str]


class BackfillView(BaseModel):
    """`GET /v1/backfills/{id}`."""

    backfill_id: str
    created_at: datetime
    request: BackfillRequest
    done: bool
    totals: Totals
    rollup: list[RollupRow]
    items: list[BackfillItem]


class Sighting(BaseModel):
    job_id: str
    start: datetime
    end: datetime
    count: int


class Finding(BaseModel):
    """A probable cause, keyed by (namespace, template fingerprint): the same problem seen in
    ten windows is one finding with ten sightings, whatever the model wrote about it."""

    namespace: str
    fingerprint: str
    template: str
    level: Level
    first_seen: datetime
    last_seen: datetime
    sightings: int
    lines: int
    recent: list[Sighting] = Field(default_factory=list)
