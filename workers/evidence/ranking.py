"""Rank mined templates so the likely cause of an incident comes first.

A score mixes severity (the entry level; a line without one takes the level its words imply,
such as `FATAL` or an OOM kill), log-damped frequency with a small weight (so thousands of
repeats of a consequence cannot outweigh one step of severity), burstiness, and onset:

- among warning-or-worse templates that *began* in the window, the earliest are often the
  cause and the rest follow: earliness counts, and so does how much trouble began right
  after a template's onset (it "explains what follows");
- a template that was already there before the window (seen in the previous window), or that
  runs through the whole window from its start, is *steady* background: it loses a severity
  step and any earliness, so a loud harmless error cannot outrank a new one that starts
  mid-window;
- a template absent from the previous window is *new*, which counts a little.
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
NOVELTY_WEIGHT = 0.3
EXPLAINS_WEIGHT = 0.5
STEADY_PENALTY = 0.6  # one severity step
STEADY_COVERAGE = 0.75  # share of the window's bins a template must fill to be steady
FOLLOW_MIN_S = 30.0  # what begins this soon after an onset follows it (or 5 % of the window)
FOLLOW_MAX_S = 300.0

_MAX_RANK = max(LEVEL_RANK.values())
_WARN_RANK = LEVEL_RANK[Level.WARN]
_ERROR_RANK = LEVEL_RANK[Level.ERROR]
_KEYWORD_RANKS: tuple[tuple[re.Pattern[str], int], ...] = (
    (
        re.compile(
            r"(?i)\b(?:fatal|panic|panicked|oom[- ]?kill\w*|out of memory|segmentation fault"
            r"|outofmemory(?:error)?)\b"
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
    coverage: float = 0.0  # share of the window's time bins with an occurrence
    previous: int | None = None  # occurrences in the previous window; None: unknown


@dataclass(frozen=True, slots=True)
class Window:
    """The analysed window, in nanoseconds."""

    start_ns: int
    end_ns: int

    @property
    def follow_ns(self) -> int:
        """How soon after an onset another onset counts as following it."""
        seconds = min(FOLLOW_MAX_S, max(FOLLOW_MIN_S, 0.05 * (self.end_ns - self.start_ns) / 1e9))
        return int(seconds * 1e9)


def severity(level: Level, template: str) -> int:
    """`LEVEL_RANK` of the level; a line without one takes what its own words imply.

    An explicit level wins: an INFO line that names `-XX:+HeapDumpOnOutOfMemoryError` or a
    warning that says `failed to refresh flags, will retry` keeps its level. Words count as
    whole words only. (Flatten raises a level it inferred, not read, by the words of death;
    changes logged at info are eligible causes by what they announce, see `changes.py`.)
    """
    if level is Level.UNKNOWN:
        for pattern, implied in _KEYWORD_RANKS:
            if pattern.search(template):
                return implied
    return LEVEL_RANK[level]


def is_steady(stats: TemplateStats, window: Window) -> bool:
    """Background: seen before the window, or there from its start and all through it."""
    if stats.previous is not None and stats.previous > 0:
        return True
    head = window.start_ns + (window.end_ns - window.start_ns) // 10
    return stats.coverage >= STEADY_COVERAGE and stats.first_ns <= head


def is_new(stats: TemplateStats) -> bool | None:
    """Absent from the previous window (None when that window could not be read)."""
    return None if stats.previous is None else stats.previous == 0


@dataclass(frozen=True, slots=True)
class Ranked:
    """One template's place: its score and what the score was made of."""

    index: int
    score: float
    severity: int
    steady: bool
    followers: tuple[int, ...]  # indexes of the alarming templates that began right after


def followers_of(
    stats: Sequence[TemplateStats], window: Window, onsets: list[tuple[int, int]], i: int
) -> tuple[int, ...]:
    """Alarming, non-steady templates that began within the follow window after template i."""
    start = stats[i].first_ns
    lo = bisect.bisect_right(onsets, (start, i))
    hi = bisect.bisect_right(onsets, (start + window.follow_ns, len(stats)))
    return tuple(j for _, j in onsets[lo:hi] if j != i)


def rank(
    stats: Sequence[TemplateStats],
    window: Window | None = None,
    *,
    steady: Sequence[bool] | None = None,
) -> list[Ranked]:
    """Every template with its score, best first (ties: earlier first, then index).

    `steady`: which templates are background, when the caller measured it from their rates
    (the findings scorer does); else `is_steady` decides.
    """
    if not stats:
        return []
    if window is None:
        window = Window(min(s.first_ns for s in stats), max(s.last_ns for s in stats) + 1)
    sev = [severity(s.level, s.template) for s in stats]
    if steady is None:
        steady = [is_steady(s, window) for s in stats]
    alarming = [i for i in range(len(stats)) if sev[i] >= _WARN_RANK and not steady[i]]
    onsets = sorted((stats[i].first_ns, i) for i in alarming)
    onset_times = [t for t, _ in onsets]
    followers = {i: followers_of(stats, window, onsets, i) for i in alarming}
    follow_lines = {i: sum(stats[j].count for j in followers[i]) for i in alarming}
    most_followed = max(follow_lines.values(), default=0)
    max_count = max(s.count for s in stats)
    ranked = []
    for i, s in enumerate(stats):
        total = SEVERITY_WEIGHT * sev[i] / _MAX_RANK
        total += FREQUENCY_WEIGHT * math.log1p(s.count) / math.log1p(max(max_count, 1))
        total += BURST_WEIGHT * min(s.peak, s.count) / max(s.count, 1)
        if i in followers:
            order = bisect.bisect_left(onset_times, s.first_ns)
            total += EARLINESS_WEIGHT / (1 + order)
            if most_followed:
                total += EXPLAINS_WEIGHT * math.log1p(follow_lines[i]) / math.log1p(most_followed)
            if is_new(s):
                total += NOVELTY_WEIGHT
        elif steady[i] and sev[i] >= _WARN_RANK:
            total -= STEADY_PENALTY
        ranked.append(Ranked(i, total, sev[i], steady[i], followers.get(i, ())))
    ranked.sort(key=lambda r: (-r.score, stats[r.index].first_ns, r.index))
    return ranked


def is_error(rank_value: int) -> bool:
    """Error or worse."""
    return rank_value >= _ERROR_RANK


def is_alarming(rank_value: int) -> bool:
    """Warning or worse."""
    return rank_value >= _WARN_RANK
