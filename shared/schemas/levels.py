"""Log levels, most severe first in `LEVEL_RANK`."""

from __future__ import annotations

from enum import StrEnum


class Level(StrEnum):
    """Severity of one log entry, most severe first in `LEVEL_RANK`."""

    FATAL = "fatal"
    ERROR = "error"
    WARN = "warn"
    INFO = "info"
    DEBUG = "debug"
    UNKNOWN = "unknown"


LEVEL_RANK: dict[Level, int] = {
    Level.FATAL: 5,
    Level.ERROR: 4,
    Level.WARN: 3,
    Level.UNKNOWN: 2,
    Level.INFO: 1,
    Level.DEBUG: 0,
}
