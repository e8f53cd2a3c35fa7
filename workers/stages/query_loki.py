"""Stage 1: read the window's matching lines from the log source, redacted as they are read.

Redaction happens here, before anything is stored, so no stage output ever holds a secret,
not even briefly in Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.logql import parse_log_filter
from shared.schemas import AnalysisRequest, FetchResult, QueryCounts
from workers.evidence.redact import redact
from workers.sources import LogSource, Window


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch (exact: no float rounding)."""
    return int(moment.astimezone(UTC).timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def run(request: AnalysisRequest, source: LogSource) -> tuple[FetchResult, QueryCounts]:
    """The lines of the request's window and filters, redacted, and what reading them took."""
    window = Window(
        request.filters,
        parse_log_filter(request.log_filter),
        to_ns(request.time_range.start),
        to_ns(request.time_range.end),
    )
    result = source.read(window, scan_limit=request.scan_limit)
    redactions = 0
    for raw in result.lines:
        raw.line, found = redact(raw.line)
        redactions += found
    counts = QueryCounts(
        query=result.query,
        seen=result.seen,
        kept=result.kept,
        dropped=result.dropped,
        pages=result.pages,
        redactions=redactions,
    )
    return result, counts
