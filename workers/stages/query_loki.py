"""Stage 1: read the window's lines, and those of the window just before it, in chunks.

Without a `log_filter` the read is severity-first: every line of the window is a candidate,
the error-or-warning ones are read first, and a window holding more lines than `scan_limit`
is sampled across its whole length (see `workers.sources.plan`); a `log_filter` reads what
it matches, across the whole window too. The read's coverage goes into the counts.

The window before, of the same length, tells the findings which templates are new and
which were already there (steady background); it is read with a smaller budget, and a
failure to read it is reported, not fatal. Redaction happens here, before anything is
stored, so no stage output ever holds a secret, not even briefly in Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final, Protocol

from shared.errors import LogAnalyzerError
from shared.logql import parse_log_filter
from shared.schemas import AnalysisRequest, QueryCounts, RawLine
from workers.evidence.redact import redact
from workers.sources import Chunk, LogSource, ReadPlan, Window

CURRENT: Final = "current"
PREVIOUS: Final = "previous"


class ChunkSink(Protocol):
    """Where the stage puts what it read (Redis for a job; memory for the eval and tests)."""

    def put(self, part: str, chunk: Chunk) -> None:
        """Store one chunk of `part` (CURRENT or PREVIOUS)."""

    def drop(self, part: str) -> None:
        """Forget what was stored of `part` (its read failed half-way)."""


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch (exact: no float rounding)."""
    return int(moment.astimezone(UTC).timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def redact_lines(lines: Iterable[RawLine]) -> int:
    """Redact every line in place; the number of secrets replaced."""
    redactions = 0
    for raw in lines:
        raw.line, found = redact(raw.line)
        redactions += found
    return redactions


def read_plan(
    request: AnalysisRequest,
    start_ns: int,
    end_ns: int,
    budget: int,
    context: Callable[[str], bool] | None = None,
) -> ReadPlan:
    """The plan for `request` over ``[start_ns, end_ns)``: severity-first without a filter."""
    window = Window(request.filters, parse_log_filter(request.log_filter or ""), start_ns, end_ns)
    return ReadPlan(window, budget, severity_first=request.log_filter is None, context=context)


def run(
    request: AnalysisRequest,
    source: LogSource,
    sink: ChunkSink,
    *,
    previous_budget: int,
    context: Callable[[str], bool] | None = None,
) -> QueryCounts:
    """Read the request's window (and the one before) into `sink`, redacted; the counts."""
    start, end = to_ns(request.time_range.start), to_ns(request.time_range.end)
    current = source.read(read_plan(request, start, end, request.scan_limit, context))
    redactions = 0
    for chunk in current.chunks:
        redactions += redact_lines(chunk.lines)
        sink.put(CURRENT, chunk)
    counts = QueryCounts(
        query=current.query,
        seen=current.seen,
        kept=current.kept,
        dropped=max(current.seen - current.kept, 0),
        pages=current.pages,
        redactions=redactions,
        coverage=current.coverage,
    )
    if previous_budget <= 0:
        counts.previous_note = "the previous window was not read (PREVIOUS_WINDOW_SCAN_LIMIT=0)"
        return counts
    try:
        previous = source.read(read_plan(request, 2 * start - end, start, previous_budget))
        for chunk in previous.chunks:
            counts.redactions += redact_lines(chunk.lines)
            sink.put(PREVIOUS, chunk)
    except LogAnalyzerError as exc:
        sink.drop(PREVIOUS)
        counts.previous_note = f"the previous window could not be read: {exc.message}"
    else:
        coverage = previous.coverage
        in_window = None if coverage is None else coverage.lines_in_window
        counts.previous_seen = previous.kept if in_window is None else in_window
        counts.previous_coverage = coverage
    return counts
