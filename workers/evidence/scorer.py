"""Which template probably caused an incident, scored from the data rather than by rules.

1. **Is there an incident?** The error-or-worse lines are counted per time bin over the
   previous window and this one. The incident's *onset* is the change point where that rate
   steps up (a Poisson likelihood-ratio split); without a significant step, a new
   error-or-worse template (absent from the previous window) is an incident on its own.
   No incident, no cause: a healthy window, one whose errors are as loud as before, or one
   whose errors ended before it.
2. **Candidates.** Every template whose own onset is at or (by at most a moment) after the
   incident's onset: for a template new to the window, its first line; for one seen before,
   the change point of its own rate. Templates whose rate did not step up are steady
   background and never candidates. Warnings are candidates whatever their volume; an info
   line only when it announces a change (`changes.py`).
3. **Score.** Each candidate gets components in [0, 1], weighted and summed:
   - `rate`: how surprising its count is against the previous window (Poisson tail);
   - `association`: whether it is there when the errors begin (active up to the onset) or
     moves with them (correlation of its bins with the other errors' bins);
   - `lead`: it began before the onset and was established there (PRECURSOR_LINES lines
     before it, or most of its lines; one early line of a stream of symptoms is chance), half
     for preceding and half for how long before (scaled to the window: causes come first);
     it counts only in proportion to `association`, so a one-off long before the incident
     gains nothing from being early;
   - `severity`: its level, a prior (fatal 1, error 0.8, warning 0.6, info 0.2);
   - `specificity`: how rare it is among the candidates (causes are rare, consequences loud)
     and how much its template says (words, not variables);
   - `change`: it announces a change, times `association`.
   The best score is the probable cause; confidence comes from its score and its margin to
   the next.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Literal

from shared.schemas import LEVEL_RANK, Level
from workers.evidence.changes import change_kind
from workers.evidence.rates import correlation, poisson_surprise, step_up

_ERROR_RANK = LEVEL_RANK[Level.ERROR]
_WARN_RANK = LEVEL_RANK[Level.WARN]
_MAX_RANK = LEVEL_RANK[Level.FATAL]

INCIDENT_LLR = 10.0  # likelihood ratio (natural log) a step of the error rate must reach
INCIDENT_RATIO = 2.0  # and the rate after it over the rate before
TEMPLATE_LLR = 6.0  # a template seen before has its own onset when its rate steps up this much
TEMPLATE_RATIO = 3.0
MOMENT_S = 0.5  # onsets this close are one moment: neither precedes the other
AFTER_ONSET_S = 5.0  # what begins this soon after the onset is still a candidate
SURPRISE_FULL = 3.0  # -log10 p at which `rate` is 1 (p = 0.001)
PROXIMITY_SHARE = 0.05  # a gap of this share of the window before the onset costs 1/e
LEAD_SHARE = 0.25  # a lead of this share of the window (or more) is a full `lead`
HEAD_SHARE = 0.1  # without a previous window, what starts this late in the window is new
PRECURSOR_LINES = 10  # lines before the onset that make a template a full precursor
SPECIFIC_WORDS = 8  # a template of this many words (not variables) says all it can
_WORD = re.compile(r"(?<![<\w])[A-Za-z][A-Za-z'-]+")


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each component counts. Ablations zero one at a time."""

    rate: float = 0.5
    association: float = 0.5
    lead: float = 2.0
    severity: float = 1.0
    specificity: float = 3.0
    change: float = 1.0

    def without(self, component: str) -> Weights:
        """These weights with `component` switched off."""
        return replace(self, **{component: 0.0})

    @classmethod
    def components(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


DEFAULT_WEIGHTS = Weights()
_WEIGHTS: ContextVar[Weights] = ContextVar("scorer_weights", default=DEFAULT_WEIGHTS)


@contextmanager
def weights_in_force(weights: Weights) -> Iterator[None]:
    """Score with `weights` inside the block (the evaluation's ablation switches one off)."""
    token = _WEIGHTS.set(weights)
    try:
        yield
    finally:
        _WEIGHTS.reset(token)


@dataclass(frozen=True, slots=True)
class Series:
    """One template's counts per time bin, in the window and (None: not read) the one before."""

    level_rank: int
    template: str
    count: float
    first_ns: int
    last_ns: int
    bins: tuple[float, ...]
    previous: float | None
    previous_bins: tuple[float, ...] | None
    rate_known: bool = True  # False: the previous window held no line at all


@dataclass(frozen=True, slots=True)
class Span:
    """The analysed window, in nanoseconds."""

    start_ns: int
    end_ns: int

    @property
    def length_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 1)


@dataclass(frozen=True, slots=True)
class Incident:
    """What the causes must explain: when the errors began, and how that was found."""

    onset_ns: int
    rate_before: float  # error-or-worse lines per bin before the onset (None-free: 0 if none)
    rate_after: float
    llr: float  # 0 when the incident is a new error template without a step of the rate
    by_new_template: bool


@dataclass(frozen=True, slots=True)
class CauseScore:
    """One candidate: its index, total, components and the facts behind them."""

    index: int
    score: float
    components: dict[str, float]
    onset_ns: int
    surprise: float | None  # -log10 p of its count against the previous window
    correlation: float
    change: str | None


def _bin_ns(span: Span, bins: int) -> float:
    return span.length_ns / max(bins, 1)


def _bin_of(ts_ns: int, span: Span, bins: int) -> int:
    return min(max(int((ts_ns - span.start_ns) // _bin_ns(span, bins)), 0), bins - 1)


def own_onset(s: Series, span: Span) -> int | None:
    """When the template began to matter: its first line if it is new to the window (or the
    previous window is unknown and it starts after the window's head), the start of its own
    step up if it was there before; None when it is steady background."""
    if s.previous is None or s.previous_bins is None:
        head = span.start_ns + HEAD_SHARE * span.length_ns
        return s.first_ns if s.first_ns > head else None
    if s.previous <= 0:
        return s.first_ns
    nbins = len(s.bins)
    step = step_up((*s.previous_bins, *s.bins), first=len(s.previous_bins))
    if step is None or step.llr < TEMPLATE_LLR or step.ratio < TEMPLATE_RATIO:
        return None
    at = step.at - len(s.previous_bins)
    return max(s.first_ns, int(span.start_ns + at * _bin_ns(span, nbins)))


def is_new(s: Series) -> bool | None:
    """Absent from the previous window (None when that window could not be read)."""
    return None if s.previous is None else s.previous <= 0


def find_incident(series: Sequence[Series], span: Span) -> Incident | None:
    """The incident the window holds (see the module docstring), or None."""
    errors = [s for s in series if s.level_rank >= _ERROR_RANK]
    if not errors:
        return None
    nbins = len(errors[0].bins)
    now = [sum(s.bins[b] for s in errors) for b in range(nbins)]
    known_before = all(s.previous_bins is not None for s in errors)
    before = (
        [sum(s.previous_bins[b] for s in errors if s.previous_bins) for b in range(nbins)]
        if known_before
        else []
    )
    step = step_up((*before, *now), first=max(len(before), 1))
    onsets = {i: own_onset(s, span) for i, s in enumerate(errors)}
    if step is not None and step.llr >= INCIDENT_LLR and step.ratio >= INCIDENT_RATIO:
        at = step.at - len(before)
        from_ns = span.start_ns + (at - 1) * _bin_ns(span, nbins)
        rising = [o for o in onsets.values() if o is not None and o >= from_ns]
        onset = min(rising) if rising else int(span.start_ns + at * _bin_ns(span, nbins))
        return Incident(onset, step.before, step.after, step.llr, by_new_template=False)
    new = [
        o for i, s in enumerate(errors) if is_new(s) is not False and (o := onsets[i]) is not None
    ]
    if not new:
        return None
    return Incident(min(new), 0.0, 0.0, 0.0, by_new_template=True)


def _severity(rank: int) -> float:
    return {5: 1.0, 4: 0.8, 3: 0.6}.get(rank, 0.2)


def score_causes(
    series: Sequence[Series],
    span: Span,
    incident: Incident,
    *,
    weights: Weights | None = None,
) -> list[CauseScore]:
    """Every candidate of `incident` with its score, best first (ties: earliest onset).
    `weights`: default, those in force (`weights_in_force`)."""
    if not series:
        return []
    weights = weights or _WEIGHTS.get()
    nbins = len(series[0].bins)
    errors_per_bin = [
        sum(s.bins[b] for s in series if s.level_rank >= _ERROR_RANK) for b in range(nbins)
    ]
    onset_bin = _bin_of(incident.onset_ns, span, nbins)
    latest = incident.onset_ns + int(AFTER_ONSET_S * 1e9)
    pool: list[tuple[int, int, str | None]] = []
    for i, s in enumerate(series):
        change = change_kind(s.template)
        if s.level_rank < _WARN_RANK and change is None:
            continue
        onset = own_onset(s, span)
        if onset is None or onset > latest:
            continue
        pool.append((i, onset, change))
    if not pool:
        return []
    loudest = max(series[i].count for i, _, _ in pool)
    scored = []
    for i, onset, change in pool:
        s = series[i]
        surprise = (
            None
            if s.previous is None or not s.rate_known
            else poisson_surprise(s.count, s.previous)
        )
        rate = 0.5 if surprise is None else min(1.0, surprise / SURPRISE_FULL)
        own_errors = s.bins if s.level_rank >= _ERROR_RANK else (0.0,) * nbins
        others = [e - o for e, o in zip(errors_per_bin, own_errors, strict=True)]
        corr = correlation(s.bins, others)
        last_active = max((b for b in range(onset_bin + 1) if s.bins[b] > 0), default=onset_bin)
        proximity = math.exp(-(onset_bin - last_active) / (PROXIMITY_SHARE * nbins))
        association = max(proximity, corr, 0.0)
        lead_ns = incident.onset_ns - onset
        # One early line of a symptom is chance; a precursor is established before the onset
        # (a change is one line by nature).
        ahead = sum(s.bins[:onset_bin])
        before = 1.0 if change else max(min(1.0, ahead / PRECURSOR_LINES), ahead / s.count)
        early = 0.5 + 0.5 * min(1.0, lead_ns / span.length_ns / LEAD_SHARE)
        lead = before * early if lead_ns > MOMENT_S * 1e9 else 0.0
        rarity = 1.0 - math.log1p(s.count) / math.log1p(max(loudest, 1))
        words = min(1.0, len(_WORD.findall(s.template)) / SPECIFIC_WORDS)
        components = {
            "rate": rate,
            "association": association,
            "lead": lead * association,
            "severity": _severity(s.level_rank),
            "specificity": (rarity + words) / 2,
            "change": association if change else 0.0,
        }
        total = sum(getattr(weights, k) * v for k, v in components.items())
        scored.append(CauseScore(i, total, components, onset, surprise, corr, change))
    scored.sort(key=lambda c: (-c.score, c.onset_ns, c.index))
    return scored


def confidence(
    scores: Sequence[CauseScore], weights: Weights | None = None
) -> Literal["high", "medium", "low"]:
    """`high`, `medium` or `low` for the first cause: its share of the best possible score,
    and its margin over the next candidate in the same units."""
    if not scores:
        return "low"
    weights = weights or _WEIGHTS.get()
    best = sum(getattr(weights, k) for k in Weights.components()) or 1.0
    share = scores[0].score / best
    margin = (scores[0].score - scores[1].score) / best if len(scores) > 1 else share
    if share >= 0.5 and margin >= 0.1:
        return "high"
    if margin >= 0.04:
        return "medium"
    return "low"
