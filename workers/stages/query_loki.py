"""Stage 1: read the window's matching lines, and those of the window just before it.

The window before, of the same length, tells the findings which templates are new and which
were already there (steady background); it is read with a smaller budget, and a failure to
read it is reported, not fatal. Redaction happens here, before anything is stored, so no
stage output ever holds a secret, not even briefly in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.errors import LogAnalyzerError
from shared.logql import parse_log_filter
from shared.schemas import AnalysisRequest, FetchResult, QueryCounts, RawLine
from workers.evidence.redact import redact
from workers.sources import LogSource, Window


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch (exact: no float rounding)."""
    return int(moment.astimezone(UTC).timestamp()) * 1_000_000_000 + moment.microsecond * 1000


@dataclass
class Fetched:
    """What the stage read: the window, and the window before (None when unreadable)."""

    current: FetchResult
    previous: FetchResult | None
    previous_note: str = ""


def redact_lines(lines: list[RawLine]) -> int:
    """Redact every line in place; the number of secrets replaced."""
    redactions = 0
    for raw in lines:
        raw.line, found = redact(raw.line)
        redactions += found
    return redactions


def run(
    request: AnalysisRequest, source: LogSource, *, previous_scan_limit: int
) -> tuple[Fetched, QueryCounts]:
    """The lines of the request's window (and the one before), redacted, and their counts."""
    start, end = to_ns(request.time_range.start), to_ns(request.time_range.end)
    log_filter = parse_log_filter(request.log_filter)
    current = source.read(
        Window(request.filters, log_filter, start, end), scan_limit=request.scan_limit
    )
    redactions = redact_lines(current.lines)
    previous: FetchResult | None = None
    note = ""
    if previous_scan_limit > 0:
        before = Window(request.filters, log_filter, start - (end - start), start)
        try:
            previous = source.read(before, scan_limit=previous_scan_limit)
        except LogAnalyzerError as exc:
            note = f"the previous window could not be read: {exc.message}"
        else:
            redactions += redact_lines(previous.lines)
    else:
        note = "the previous window was not read (PREVIOUS_WINDOW_SCAN_LIMIT=0)"
    counts = QueryCounts(
        query=current.query,
        seen=current.seen,
        kept=current.kept,
        dropped=current.dropped,
        pages=current.pages,
        redactions=redactions,
        previous_seen=None if previous is None else previous.seen,
        previous_note=note,
    )
    return Fetched(current, previous, note), counts
