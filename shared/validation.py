"""Checks on an analysis request that need settings or a parser, run before a job is queued."""

from __future__ import annotations

from functools import partial

from shared.errors import InvalidQueryError, check_all
from shared.logql import LogFilter, build_query, validate_request_filters
from shared.schemas import AnalysisRequest, Filters
from shared.settings import Settings


def _check_span(request: AnalysisRequest, settings: Settings) -> None:
    span = request.time_range.end - request.time_range.start
    if span.total_seconds() > settings.max_time_range_hours * 3600:
        raise InvalidQueryError(
            "time_range",
            f"time range {span} exceeds the maximum of {settings.max_time_range_hours:g} hours",
        )


def _at_most(field: str, value: int, maximum: int) -> None:
    if value > maximum:
        raise InvalidQueryError(field, f"{field} must be at most {maximum}")


def validate_request(request: AnalysisRequest, settings: Settings) -> str:
    """Raise InvalidQueryError naming the offending field; return the LogQL query it becomes.

    Every check runs: the error's `problems` name each invalid field, not only the first.
    """
    valid: list[tuple[Filters, LogFilter]] = []
    check_all(
        partial(_check_span, request, settings),
        partial(_at_most, "limit", request.limit, settings.max_limit),
        partial(_at_most, "scan_limit", request.scan_limit, settings.max_scan_limit),
        lambda: valid.append(validate_request_filters(request)),
    )
    return build_query(*valid[0])
