"""Findings: what the evidence says without the model (causes, timeline, what is new)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.schemas.levels import Level


class Searched(BaseModel):
    """What was looked at: the query, the window, how many lines were scanned."""

    query: str
    start: datetime
    end: datetime
    lines_scanned: int


class PreviousWindow(BaseModel):
    """The window of the same length just before, read to tell new from steady."""

    start: datetime
    end: datetime
    available: bool
    lines: int = 0
    note: str = ""


class Follower(BaseModel):
    """A template that began soon after a probable cause."""

    template_id: str
    level: Level
    count: int
    after_s: float


class ProbableCause(BaseModel):
    """A template that likely started the incident, with reasons anyone can check."""

    template_id: str
    fingerprint: str
    template: str
    level: Level
    first_seen: datetime
    count: int
    confidence: Literal["high", "medium", "low"]
    reasons: list[str]
    followed_by: list[Follower] = Field(default_factory=list)


class TimelineEntry(BaseModel):
    """When a warning-or-worse template began, in onset order."""

    template_id: str
    level: Level
    first_seen: datetime
    last_seen: datetime
    count: int
    new: bool | None
    template: str


class Affected(BaseModel):
    """Where the warning-or-worse lines came from, most first."""

    pods: dict[str, int] = Field(default_factory=dict)
    containers: dict[str, int] = Field(default_factory=dict)
    nodes: dict[str, int] = Field(default_factory=dict)


class Findings(BaseModel):
    """Computed from the evidence alone, before the model is asked; every item cites the
    template ids of the evidence."""

    empty: bool
    only_low_severity: bool = False
    summary: str
    searched: Searched
    previous_window: PreviousWindow | None = None
    probable_causes: list[ProbableCause] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    new_templates: list[str] = Field(default_factory=list)
    affected: Affected = Field(default_factory=Affected)
