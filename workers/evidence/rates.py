"""Counting statistics of log rates: a Poisson test of a count against the window before, and
the change point of a binned series (where the rate steps up).

Pure functions on plain numbers; the findings scorer reads its evidence from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PSEUDO_COUNT = 0.5  # what a template absent from the previous window is taken to have had


def poisson_surprise(observed: float, expected: float) -> float:
    """-log10 of P(X >= observed) for X ~ Poisson(expected): how surprising a count is.

    `expected` below PSEUDO_COUNT counts as PSEUDO_COUNT (absent before is not impossible
    before). 0 when the count is at or below its expectation. Computed in log space so a
    count of millions does not underflow.
    """
    mu = max(expected, PSEUDO_COUNT)
    k = math.floor(observed)
    if k <= mu:
        return 0.0
    # Upper tail by summing terms from k upwards; they fall off geometrically once k > mu.
    log_term = k * math.log(mu) - mu - math.lgamma(k + 1)
    log_total = log_term
    j = k
    while True:
        j += 1
        log_term += math.log(mu) - math.log(j)
        if log_term - log_total < -12:
            break
        log_total = _log_add(log_total, log_term)
    return max(0.0, -log_total / math.log(10))


def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


@dataclass(frozen=True, slots=True)
class StepUp:
    """A step up of a binned rate: from bin `at` on, the mean is `after` where it was `before`;
    `llr` is the log-likelihood ratio of the step against one constant rate."""

    at: int
    before: float
    after: float
    llr: float

    @property
    def ratio(self) -> float:
        return self.after / max(self.before, 1e-9)


def _segment_ll(total: float, length: int) -> float:
    """Poisson log-likelihood of a segment at its own mean, without the terms that cancel."""
    if total <= 0 or length <= 0:
        return 0.0
    return total * math.log(total / length) - total


def step_up(series: Sequence[float], *, first: int = 1, pseudo: float = 0.0) -> StepUp | None:
    """The single change point of `series` (counts per bin) where the rate steps up the most,
    searched from bin `first` on; None when no step up exists.

    The maximum-likelihood split of a Poisson series into a lower segment then a higher one
    (binary segmentation's first step). `pseudo` is added to the segment before, spread over
    its bins, so a series that was empty before still has a rate there.
    """
    n = len(series)
    prefix = [0.0]
    for value in series:
        prefix.append(prefix[-1] + value)
    total = prefix[-1]
    if total <= 0:
        return None
    whole = _segment_ll(total + pseudo, n)
    best: StepUp | None = None
    for at in range(max(first, 1), n):
        head, tail = prefix[at] + pseudo, total - prefix[at]
        before, after = head / at, tail / (n - at)
        if after <= before:
            continue
        llr = _segment_ll(head, at) + _segment_ll(tail, n - at) - whole
        if best is None or llr > best.llr:
            best = StepUp(at=at, before=before, after=after, llr=llr)
    return best


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation of two equally long series; 0 when either is constant."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)
