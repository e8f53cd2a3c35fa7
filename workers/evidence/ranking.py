"""Rank mined templates so the likely cause of an incident comes first.

A score mixes severity (the entry level, raised by telling words such as `FATAL` or
`OOMKilled`), log-damped frequency with a small weight (so thousands of repeats of a
consequence cannot outweigh one step of severity), burstiness, and earliness: among
warning-or-worse templates, the ones that appeared first are often the cause, and the
consequences follow.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.schemas import LEVEL_RANK, Level

SEVERITY_WEIGHT = 3.0  # one level step is worth 0.6, more than all of FREQUENCY_WEIGHT
FREQUENCY_WEIGHT = 0.5
BURST_WEIGHT = 0.5
EARLINESS_WEIGHT = 0.5  # below one severity step: an early ERROR must not outrank a FATAL

_MAX_RANK = max(LEVEL_RANK.values())
_WARN_RANK = LEVEL_RANK[Level.WARN]
_KEYWORD_RANKS: tuple[tuple[re.Pattern[str], int], ...] = (
    (
        re.compile(
            r"(?i)\b(?:fatal|panic|oomkilled|out of memory|segmentation fault)\b|outofmemory"
        ),
        LEVEL_RANK[Level.FATAL],
    ),
    (
        re.compile(
            r"(?i)\b(?:error|exception|fail(?:ed|ure|s)?|refused|denied|timed out|timeout"
            r"|crash\w*|unavailable|unhealthy|killed|traceback|unreachable)\b"
        ),
        LEVEL_RANK[Level.ERROR],
    ),
    (re.compile(r"(?i)\b(?:warn(?:ing)?|retry\w*|back-?off|deprecated)\b"), _WARN_RANK),
)


@dataclass(frozen=True, slots=True)
class TemplateStats:
    """What ranking needs to know about one template."""

    template: str
    level: Level
    count: int
    first_ns: int
    last_ns: int
    peak: int = 1  # most occurrences in one time bin of the window


def severity(level: Level, template: str) -> int:
    """`LEVEL_RANK` of the level, raised to what the template's own words imply."""
    rank = LEVEL_RANK[level]
    for pattern, implied in _KEYWORD_RANKS:
        if implied <= rank:
            break
        if pattern.search(template):
            return implied
    return rank


def score(stats: TemplateStats, *, onset_order: int | None, max_count: int) -> float:
    """Score one template.

    `onset_order` is how many warning-or-worse templates appeared before this one (None if
    this one is not warning-or-worse); earliness is 1, 1/2, 1/3, ... in that order.
    """
    sev = severity(stats.level, stats.template)
    total = SEVERITY_WEIGHT * sev / _MAX_RANK
    total += FREQUENCY_WEIGHT * math.log1p(stats.count) / math.log1p(max(max_count, 1))
    total += BURST_WEIGHT * min(stats.peak, stats.count) / max(stats.count, 1)
    if onset_order is not None:
        total += EARLINESS_WEIGHT / (1 + onset_order)
    return total


def rank(stats: Sequence[TemplateStats]) -> list[tuple[int, float]]:
    """Indexes into `stats` with their scores, best first (ties: earlier first, then index)."""
    if not stats:
        return []
    alarming = sorted(s.first_ns for s in stats if severity(s.level, s.template) >= _WARN_RANK)
    max_count = max(s.count for s in stats)
    scored = []
    for i, s in enumerate(stats):
        order = None
        if severity(s.level, s.template) >= _WARN_RANK:
            order = bisect.bisect_left(alarming, s.first_ns)
        scored.append((i, score(s, onset_order=order, max_count=max_count)))
    scored.sort(key=lambda item: (-item[1], stats[item[0]].first_ns, item[0]))
    return scored
