"""What a golden incident is: the request window, the ground truth, and what must not leak."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Expected:
    """The ground truth of a case.

    `cause_pattern` is a Python regex (`re.search`) that matches the raw messages that are the
    root cause, and no other message of the case. Each of `cause_keywords` occurs verbatim
    (case-insensitive) in a matching message and must occur in a correct explanation.
    """

    cause_pattern: str
    cause_keywords: tuple[str, ...]
    empty: bool = False
    low_severity_only: bool = False
    no_cause: bool = False  # a false-positive case: any probable cause named is wrong


@dataclass(frozen=True)
class Case:
    """One incident: a namespace's pod logs over the window and the window before it."""

    name: str
    story: str
    namespace: str
    start: datetime
    end: datetime
    expected: Expected
    forbidden: tuple[str, ...]
    tags: tuple[str, ...]
    approx_lines: int
    question: str | None = None
    scan_limit: int = 100_000
    suite: str = "dev"  # `dev` (tuned on), `heldout` (eval/heldout/cases) or `final` (…/final)
    failure_class: str = ""  # held-out cases: the class of issue 21 it tests
    source: str = ""  # held-out cases: the public story it follows (title <url>)

    @property
    def window_seconds(self) -> float:
        """Length of the request window (the previous window has the same length)."""
        return (self.end - self.start).total_seconds()
