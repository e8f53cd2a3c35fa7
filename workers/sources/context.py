"""Context reads: the rest of a multi-line event whose other lines a filter did not keep.

A line kept by a filtered read that may belong to a multi-line event (`ReadPlan.context`
says which: a traceback's last line, a stack frame, a Java exception line) gets the lines of
the same pod and container within `CONTEXT_NS` either side, so that flatten can join the
event. Reads are bounded like any other: `CONTEXT_PER_SIGNATURE` per kind of line,
`MAX_CONTEXT_READS` per read, `CONTEXT_LIMIT` lines each.
"""

from __future__ import annotations

import re
import threading
from typing import Final

from shared.schemas import RawLine

CONTEXT_NS: Final = 1_000_000_000  # flatten joins a continuation within 1 s of its head
CONTEXT_LIMIT: Final = 200
CONTEXT_PER_SIGNATURE: Final = 2
MAX_CONTEXT_READS: Final = 50
SIGNATURE_CHARS: Final = 48
_DIGITS: Final = re.compile(r"\d+")

Stream = tuple[str, str, str]


def stream_of(raw: RawLine) -> Stream:
    """(namespace, pod, container): the stream flatten joins events within."""
    labels = raw.labels
    return labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", "")


class ContextBudget:
    """Context reads left for one source read (thread-safe: fetch threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.left = MAX_CONTEXT_READS
        self._per_signature: dict[str, int] = {}

    def take(self, line: str) -> bool:
        """Whether `line` may have its context read (and count it if so)."""
        signature = _DIGITS.sub("0", line[:SIGNATURE_CHARS])
        with self._lock:
            used = self._per_signature.get(signature, 0)
            if self.left <= 0 or used >= CONTEXT_PER_SIGNATURE:
                return False
            self._per_signature[signature] = used + 1
            self.left -= 1
            return True
