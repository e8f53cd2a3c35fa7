"""Severity tiers of a window: which lines a sampled read takes first.

Each tier is a LogQL line filter on level words and level fields, so that Loki counts and
reads it on its own (``count_over_time`` per tier). A tier holds the lines its pattern
matches that no tier above it matched: the tiers and the `REST` split every line exactly
once. The patterns are RE2 (Loki's engine) and general on purpose:

- a level word matches as a whole word, in any case (``FATAL``, ``[error]``, ``level=warn``,
  ``"severity":"ERROR"``, ``lvl=eror``), not inside another word (``errors=0``, ``terror``);
- exception and error class names (``NullPointerException``, ``ValueError``) are errors;
- numeric JSON levels of pino/bunyan (``"level":60`` fatal, ``50`` error, ``40`` warn);
- glog/klog prefixes (``F1204 10:00:00.000``, ``E…``, ``W…``);
- ``alert`` is fatal-or-worse only as a level (``level=alert``, ``[alert]``): as a word it is
  common in ordinary lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.logql import LineFilter, LogFilter
from shared.logql.regex import compile_re2

_LEVEL_FIELD = r'(?:level|lvl|severity|loglevel|log_level)"?\s*[:=]\s*"?'

FATAL_PATTERN: Final = (
    r"(?i:\b(?:fatal|panic|panicked|emerg|emergency|crit|critical)\b)"
    rf"|(?i:{_LEVEL_FIELD}alert\b|\[alert\])"
    r'|"level"\s*:\s*60\b'
    r"|^F\d{4} \d"
)
ERROR_PATTERN: Final = (
    r"(?i:\b(?:error|err|eror|severe|failed|failure|exception|traceback)\b)"
    r"|[a-z0-9_](?:Error|Exception)\b"
    r'|"level"\s*:\s*50\b'
    r"|^E\d{4} \d"
)
WARN_PATTERN: Final = (
    r"(?i:\b(?:warn|warning|wrn)\b)"
    r"|[a-z0-9_]Warning\b"
    r'|"level"\s*:\s*40\b'
    r"|^W\d{4} \d"
)


@dataclass(frozen=True)
class Tier:
    """One severity tier: its group name in a read, how coverage names it, and the line
    filter that selects its lines (its pattern, none of the tiers' above)."""

    name: str
    label: str
    pattern: str
    log_filter: LogFilter

    def matches(self, line: str) -> bool:
        """Whether `line` has this tier's level (whatever the tiers above say)."""
        return compile_re2(self.pattern).search(line) is not None


def _tiers(named: list[tuple[str, str, str]]) -> tuple[tuple[Tier, ...], LogFilter]:
    tiers: list[Tier] = []
    above: list[LineFilter] = []
    for name, label, pattern in named:
        stages = (LineFilter("|~", (pattern,)), *above)
        tiers.append(Tier(name, label, pattern, LogFilter(stages)))
        above.append(LineFilter("!~", (pattern,)))
    return tuple(tiers), LogFilter(tuple(above))


TIERS, REST = _tiers(
    [
        ("fatal", "fatal-or-worse", FATAL_PATTERN),
        ("error", "error", ERROR_PATTERN),
        ("warn", "warning", WARN_PATTERN),
    ]
)
TIER_NAMES: Final = frozenset(t.name for t in TIERS)


def tier_of(line: str) -> int | None:
    """The index in `TIERS` of the first tier `line` belongs to; None for the rest."""
    for at, tier in enumerate(TIERS):
        if tier.matches(line):
            return at
    return None
