"""The one retry policy: equal-jitter backoff, Retry-After, patience for a loading model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from shared.retry import RetryPolicy, parse_retry_after


class Flaky(Exception):
    def __init__(self, message: str = "flaky", retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def failing(times: int, error: Flaky) -> Callable[[], str]:
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return "ok"

    return call


def test_backoff_doubles_with_equal_jitter_up_to_the_cap() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=6, base_s=1.0, cap_s=8.0)
    assert (
        policy.call(failing(6, Flaky()), retry_if=lambda e: True, what="x", sleep=sleeps.append)
        == "ok"
    )
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(sleeps) == 6
    for wait, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling, (wait, ceiling)


def test_retry_after_wins_over_the_backoff() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=2, base_s=1.0)
    call = failing(1, Flaky(retry_after=7.0))
    policy.call(call, retry_if=lambda e: True, what="x", sleep=sleeps.append)
    assert sleeps == [7.0]


def test_gives_up_after_the_attempts_and_reraises() -> None:
    sleeps: list[float] = []
    with pytest.raises(Flaky):
        RetryPolicy(attempts=2).call(
            failing(10, Flaky()), retry_if=lambda e: True, what="x", sleep=sleeps.append
        )
    assert len(sleeps) == 2


def test_errors_it_is_not_told_to_retry_raise_at_once() -> None:
    sleeps: list[float] = []
    with pytest.raises(Flaky):
        RetryPolicy(attempts=5).call(
            failing(1, Flaky()), retry_if=lambda e: False, what="x", sleep=sleeps.append
        )
    assert sleeps == []


def test_patient_errors_are_retried_beyond_the_attempts_until_the_deadline() -> None:
    policy = RetryPolicy(attempts=1, base_s=0.001, cap_s=0.002, keep_trying_s=0.5)
    loading = failing(20, Flaky("Loading model"))
    result = policy.call(
        loading, retry_if=lambda e: True, patient=lambda e: "Loading" in str(e), what="x"
    )
    assert result == "ok"
    impatient = failing(20, Flaky("connection refused"))
    with pytest.raises(Flaky):
        policy.call(
            impatient, retry_if=lambda e: True, patient=lambda e: "Loading" in str(e), what="x"
        )


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(date, now=now.timestamp()) == pytest.approx(7.0)
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
