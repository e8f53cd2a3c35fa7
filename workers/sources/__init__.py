"""Where log lines come from: Loki (`loki.LokiSource`) or files on this node
(`files.FileSource`), behind one small protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.logql import LogFilter
from shared.schemas import FetchResult, Filters


@dataclass(frozen=True)
class Window:
    """What to read: the streams (`filters`), the pipeline, and ``[start_ns, end_ns)``."""

    filters: Filters
    log_filter: LogFilter
    start_ns: int
    end_ns: int


class LogSource(Protocol):
    """Reads the lines of one window that match, oldest first."""

    def read(self, window: Window, *, scan_limit: int) -> FetchResult:
        """At most `scan_limit` matching lines of the window, with their counts."""
        ...
