"""Counting statistics the findings scorer is built on."""

from __future__ import annotations

import math

import pytest

from workers.evidence.rates import correlation, poisson_surprise, step_up


def test_a_count_at_its_expectation_is_no_surprise() -> None:
    assert poisson_surprise(10, 10) == 0.0
    assert poisson_surprise(3, 10) == 0.0


def test_surprise_is_the_poisson_upper_tail() -> None:
    # P(X >= 2 | mu = 0.5) = 1 - e^-0.5 (1 + 0.5)
    tail = 1 - math.exp(-0.5) * 1.5
    assert poisson_surprise(2, 0) == pytest.approx(-math.log10(tail), rel=1e-3)


def test_a_hundredfold_growth_is_far_more_surprising_than_a_doubling() -> None:
    assert poisson_surprise(300, 3) > 100
    assert poisson_surprise(2000, 1000) > poisson_surprise(20, 10)
    assert poisson_surprise(20, 10) < 3


def test_huge_counts_do_not_underflow() -> None:
    assert math.isfinite(poisson_surprise(5_000_000, 10))


def test_the_step_up_is_found_where_the_rate_rises() -> None:
    series = [1.0] * 20 + [10.0] * 12
    step = step_up(series)
    assert step is not None
    assert step.at == 20
    assert step.before == pytest.approx(1.0)
    assert step.after == pytest.approx(10.0)
    assert step.llr > 50


def test_a_falling_or_flat_series_has_no_step_up() -> None:
    assert step_up([5.0] * 10 + [1.0] * 10) is None
    assert step_up([0.0] * 10) is None


def test_the_search_can_start_after_a_prefix_and_a_pseudo_count_fills_an_empty_past() -> None:
    series = [0.0] * 10 + [0.0, 0.0, 4.0, 4.0, 4.0]
    step = step_up(series, first=10, pseudo=0.5)
    assert step is not None and step.at == 12
    assert step.before > 0


def test_correlation() -> None:
    assert correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [1, 2, 3]) == 0.0
