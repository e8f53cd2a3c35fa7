"""A case and the function that writes its logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from eval.incidents.builder import Builder
from eval.incidents.model import Case


@dataclass(frozen=True)
class Spec:
    """`generate` writes the case's lines into a `Builder` made for `case`."""

    case: Case
    generate: Callable[[Builder], None]


def window(start: str, minutes: int) -> tuple[datetime, datetime]:
    """The request window starting at `start` (RFC 3339, UTC) lasting `minutes`."""
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return begin, begin + timedelta(minutes=minutes)
