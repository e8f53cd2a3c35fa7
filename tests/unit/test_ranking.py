"""Severity implied by a template's own words."""

from __future__ import annotations

import pytest

from shared.schemas import LEVEL_RANK, Level
from workers.evidence.ranking import severity


@pytest.mark.parametrize(
    ("level", "template", "expected"),
    [
        (
            Level.UNKNOWN,
            'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
            Level.FATAL,
        ),
        (Level.UNKNOWN, "container api OOMKilled", Level.FATAL),
        # An explicit level wins over the words of its line (issue 21).
        (Level.INFO, "container api OOMKilled", Level.INFO),
        (Level.ERROR, "java.lang.OutOfMemoryError: Java heap space", Level.ERROR),
        (Level.WARN, "failed to refresh flags, will retry", Level.WARN),
        (
            Level.INFO,
            "still waiting for ShareLock on transaction <*>",
            Level.INFO,
        ),  # explicit level wins
        (Level.UNKNOWN, "dial tcp <*>: connect: connection refused", Level.ERROR),
        (Level.INFO, "GET /healthz 200", Level.INFO),
        (Level.FATAL, "database system is shut down", Level.FATAL),
    ],
)
def test_words_raise_severity_never_lower_it(level: Level, template: str, expected: Level) -> None:
    assert severity(level, template) == LEVEL_RANK[expected]
