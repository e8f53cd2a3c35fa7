"""Data that flows between the stages, and the counts each stage reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.findings import Coverage, Findings
from shared.schemas.levels import Level

# Hot path: dataclasses, not pydantic.


@dataclass(slots=True)
class RawLine:
    """One log line as a source returned it; `weight` is how many lines of the window it
    stands for (1 when every line was read; more for a line of a sample)."""

    ts_ns: int
    labels: dict[str, str]
    line: str
    weight: float = 1.0


@dataclass(slots=True)
class FetchResult:
    """Lines read from a log source for one job, oldest first, and how much of the window
    they cover (None: the source read forward up to its limit, without counting)."""

    lines: list[RawLine]
    query: str
    seen: int = 0
    kept: int = 0
    dropped: int = 0
    pages: int = 0
    coverage: Coverage | None = None


@dataclass(slots=True)
class Entry:
    """One log event after flattening: multi-line events already joined.

    `message` is what templates are mined from; for a JSON or logfmt line it is the message
    field followed by the descriptive fields as `name=value`. `keep` holds the fields whose
    values name the problem and must not be masked (`status=503 code=ECONNRESET`), `raw`
    the whole line as logged ("" when it is the message itself).
    """

    ts_ns: int
    namespace: str
    pod: str
    container: str
    node: str
    level: Level
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    keep: str = ""
    raw: str = ""
    weight: float = 1.0


class EvidenceItem(BaseModel):
    """One mined template as the model sees it; `template_id` is what the answer cites."""

    template_id: str
    template: str
    level: Level
    count: int
    estimated: bool = Field(
        default=False, description="count scaled up from a sample of the window (see coverage)"
    )
    first_seen: datetime
    last_seen: datetime
    pods: list[str]
    containers: list[str]
    examples: list[str]
    score: float = 0.0
    fingerprint: str = ""
    new: bool | None = Field(
        default=None, description="absent from the previous window (null: that was not read)"
    )
    steady: bool = Field(
        default=False, description="background: seen before the window, or all through it"
    )


class NormalizeResult(BaseModel):
    evidence: list[EvidenceItem]
    entries: int
    templates: int
    redactions: int
    findings: Findings | None = None


# --- What each stage reports when it finishes ----------------------------------------------


class StageCountsBase(BaseModel):
    """Counts of one stage run; `summary()` is the one line people read about it."""

    model_config = ConfigDict(extra="forbid")

    def summary(self) -> str:
        raise NotImplementedError


class QueryCounts(StageCountsBase):
    query: str
    seen: int
    kept: int
    dropped: int
    pages: int
    redactions: int
    previous_seen: int | None = None  # lines of the window before; None: it was not read
    previous_note: str = ""
    coverage: Coverage | None = None
    previous_coverage: Coverage | None = None

    def summary(self) -> str:
        read = f"read {self.kept:,} log lines ({self.seen:,} scanned)"
        if self.coverage is not None and self.coverage.mode != "complete":
            total = self.coverage.lines_in_window
            read += f", {self.coverage.mode} from ~{total:,} in the window" if total else ""
        return f"{read}, {self.redactions:,} secrets redacted"


class FlattenCounts(StageCountsBase):
    lines: int
    entries: int
    previous_entries: int | None = None

    def summary(self) -> str:
        return f"{self.entries:,} log events from {self.lines:,} lines"


class NormalizeCounts(StageCountsBase):
    entries: int
    templates: int
    redactions: int
    evidence: int

    def summary(self) -> str:
        return f"{self.entries:,} log events mined into {self.templates:,} templates"


class LlmCounts(StageCountsBase):
    prompt_tokens: int | None
    prompt_tokens_cached: int
    tokens_generated: int
    evidence: int
    evidence_omitted: int

    def summary(self) -> str:
        return (
            f"{self.tokens_generated:,} tokens from {self.prompt_tokens or 0:,} prompt tokens, "
            f"{self.evidence} templates shown"
        )
