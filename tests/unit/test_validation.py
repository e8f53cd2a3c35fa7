"""Checks on a request before it is queued: every invalid field is named, not the first only."""

from __future__ import annotations

import pytest

from shared.errors import InvalidQueryError
from shared.schemas import AnalysisRequest
from shared.settings import Settings
from shared.validation import validate_request


def test_every_invalid_field_is_named_at_once() -> None:
    request = AnalysisRequest.model_validate(
        {
            "time_range": {"start": "2026-11-20T00:00:00Z", "end": "2026-11-24T00:00:00Z"},
            "filters": {"namespace": "Bad_NS", "container": "api_1", "pod": "("},
            "log_filter": '|~ "(unclosed"',
        }
    )
    with pytest.raises(InvalidQueryError) as info:
        validate_request(request, Settings(max_time_range_hours=24))
    fields = [problem.field for problem in info.value.problems]
    assert fields == [
        "time_range",
        "filters.namespace",
        "filters.container",
        "filters.pod",
        "log_filter",
    ]
    assert info.value.field == "time_range"  # the first, for callers that name one


def test_a_valid_request_becomes_its_query() -> None:
    request = AnalysisRequest.model_validate(
        {
            "time_range": {"start": "2026-11-24T00:00:00Z", "end": "2026-11-24T01:00:00Z"},
            "filters": {"namespace": "shop", "pod": "api-.*"},
            "log_filter": '|= "timeout"',
        }
    )
    query = validate_request(request, Settings())
    assert query == '{namespace="shop", pod=~"api-.*"} |= "timeout"'
