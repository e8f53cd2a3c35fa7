"""The one retry policy of the service (Loki, llama-server, webhooks), built on tenacity.

Exponential backoff with "equal jitter": half of `min(cap, base * 2**n)` is fixed, the other
half random, so retries from many workers spread out but never collapse to zero. A server's
`Retry-After` wins over the computed wait: the exception carries it as `retry_after`.
Retries stop after `attempts` retries; errors the caller calls `patient` (a model that is
still loading) are retried, beyond that, until `keep_trying_s` have passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential,
    wait_random_exponential,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP-date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one kind of call."""

    attempts: int
    base_s: float = 0.5
    cap_s: float = 30.0
    keep_trying_s: float = 0.0

    def _wait(self) -> Callable[[RetryCallState], float]:
        half = self.base_s / 2
        jittered = wait_exponential(multiplier=half, max=self.cap_s / 2) + wait_random_exponential(
            multiplier=half, max=self.cap_s / 2
        )

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            asked = getattr(error, "retry_after", None)
            return float(asked) if isinstance(asked, int | float) else float(jittered(state))

        return wait

    def _stop(self, patient: Callable[[BaseException], bool]) -> Callable[[RetryCallState], bool]:
        def stop(state: RetryCallState) -> bool:
            if state.attempt_number <= self.attempts:
                return False
            error = state.outcome.exception() if state.outcome is not None else None
            waited = state.seconds_since_start or 0.0
            return not (error is not None and patient(error) and waited < self.keep_trying_s)

        return stop

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_if: Callable[[BaseException], bool],
        what: str,
        patient: Callable[[BaseException], bool] = lambda _error: True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Call `fn`, retrying the errors `retry_if` accepts; the last error is re-raised."""

        def log(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "%s failed (%s); retry %d in %.2fs",
                what,
                error,
                state.attempt_number,
                wait,
            )

        retrying = Retrying(
            stop=self._stop(patient),
            wait=self._wait(),
            retry=retry_if_exception(retry_if),
            reraise=True,
            sleep=sleep,
            before_sleep=log,
        )
        return retrying(fn)
