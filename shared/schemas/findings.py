"""Findings: what the evidence says without the model (causes, timeline, what is new)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.schemas.levels import Level


class CoverageRange(BaseModel):
    """One part of the window: its lines (None: unknown) and how many were read."""

    start: datetime
    end: datetime
    lines: int | None
    read: int


class TierCoverage(BaseModel):
    """One severity tier of a sampled window: its lines (exact when `complete`, else
    counted by the source) and how many were read."""

    tier: str
    lines: int
    read: int
    complete: bool


class Coverage(BaseModel):
    """How much of the window was read, and how.

    `complete`: every matching line. `sampled`: more lines matched than the budget, so the
    read spread the budget across the whole window (with the default plan, the severity
    tiers in turn: each read whole while it fits, the first that does not sampled); counts
    of sampled templates are estimates. `partial`: some ranges could not be read
    (`failed`). `cut`: the source could not count, so the read stopped at the budget and
    the rest of the window is unknown. `tiers`: for a sampled severity-first read, each
    severity tier (fatal-or-worse, error, warning), most severe first; `severe_*` are their
    sums. `context_lines`: lines read beside matches to complete multi-line events, not
    counted in `lines_read`.
    """

    mode: Literal["complete", "sampled", "partial", "cut"]
    lines_in_window: int | None
    lines_read: int
    severe_in_window: int | None = None
    severe_read: int | None = None
    tiers: list[TierCoverage] = Field(default_factory=list)
    context_lines: int = 0
    ranges: list[CoverageRange] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)

    @property
    def estimated(self) -> bool:
        """Whether some template counts are scaled up from a sample."""
        return self.mode == "sampled" or (
            self.mode == "partial" and self.lines_read < (self.lines_in_window or 0)
        )

    def describe(self) -> str:
        """One sentence a person (or the model) reads about it."""
        if self.mode == "complete":
            return f"Read all {self.lines_read:,} matching lines of the window."
        if self.mode == "cut":
            return (
                f"Read only the first {self.lines_read:,} matching lines of the window: the "
                "rest of it was not read (the source could not count its lines)."
            )
        total = "?" if self.lines_in_window is None else f"{self.lines_in_window:,}"
        text = f"Read {self.lines_read:,} of ~{total} matching lines across the whole window"
        if self.tiers and not all(t.complete for t in self.tiers):
            text += ", " + ", ".join(
                f"every {t.tier} line ({t.lines:,})"
                if t.complete
                else f"{t.read:,} of ~{t.lines:,} {t.tier} lines"
                for t in self.tiers
            )
        elif self.severe_in_window is not None and self.severe_read is not None:
            if self.severe_read >= self.severe_in_window:
                text += f", every error-or-warning line ({self.severe_in_window:,})"
            else:
                text += (
                    f", {self.severe_read:,} of ~{self.severe_in_window:,} error-or-warning lines"
                )
        text += "; counts marked ~ are estimates from a sample."
        if self.failed:
            text += f" Not read: {'; '.join(self.failed)}."
        return text


class Searched(BaseModel):
    """What was looked at: the query, the window, how many lines were scanned, and how."""

    query: str
    start: datetime
    end: datetime
    lines_scanned: int
    coverage: Coverage | None = None


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
    # What the findings scorer weighed (absent in results written before it existed).
    score: float | None = None
    components: dict[str, float] = Field(default_factory=dict)
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
    change: str | None = None  # the kind of change the line announces (deploy, config, ...)


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
    onset: datetime | None = None  # when the error rate rose (None: no incident found)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    new_templates: list[str] = Field(default_factory=list)
    affected: Affected = Field(default_factory=Affected)
