"""Checks on an analysis request that need settings or a parser, run before a job is queued."""

from __future__ import annotations

from shared.errors import InvalidQueryError
from shared.logql import build_query, parse_log_filter
from shared.schemas import AnalysisRequest
from shared.settings import Settings


def validate_request(request: AnalysisRequest, settings: Settings) -> str:
    """Raise InvalidQueryError naming the offending field; return the LogQL query it becomes."""
    span = request.time_range.end - request.time_range.start
    if span.total_seconds() > settings.max_time_range_hours * 3600:
        raise InvalidQueryError(
            "time_range",
            f"time range {span} exceeds the maximum of {settings.max_time_range_hours:g} hours",
        )
    if request.limit > settings.max_limit:
        raise InvalidQueryError("limit", f"limit must be at most {settings.max_limit}")
    if request.scan_limit > settings.max_scan_limit:
        raise InvalidQueryError(
            "scan_limit", f"scan_limit must be at most {settings.max_scan_limit}"
        )
    return build_query(request.filters, parse_log_filter(request.log_filter or ""))
