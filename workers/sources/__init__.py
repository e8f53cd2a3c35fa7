"""Where log lines come from: Loki (`loki.LokiSource`) or files on this node
(`files.FileSource`), behind one small protocol.

A source reads a `ReadPlan`: a window and a budget of lines. How a window larger than the
budget is read across its whole length, not from its head, is `plan`'s job; the lines come
back in `Chunk`s, never all at once, and the read states its `Coverage` when it is done.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Protocol

from shared.logql import LogFilter
from shared.schemas import Filters, RawLine
from shared.schemas.findings import Coverage

CHUNK_LINES = 20_000  # lines handed on at a time: a million lines are never in memory at once


@dataclass(frozen=True)
class Window:
    """What to read: the streams (`filters`), the pipeline, and ``[start_ns, end_ns)``."""

    filters: Filters
    log_filter: LogFilter
    start_ns: int
    end_ns: int

    def between(self, start_ns: int, end_ns: int) -> Window:
        """The same streams and pipeline over ``[start_ns, end_ns)``."""
        return replace(self, start_ns=start_ns, end_ns=end_ns)

    def narrowed(self, extra: LogFilter) -> Window:
        """The same window with `extra` stages appended to its pipeline."""
        return replace(self, log_filter=LogFilter(self.log_filter.stages + extra.stages))


@dataclass(frozen=True)
class ReadPlan:
    """A window to read within `budget` lines.

    `severity_first`: when the window does not fit the budget, read it by severity tier
    (fatal-or-worse, errors, warnings, then the rest), each completely while it fits (the
    default for a request without a `log_filter`; see `plan`). `context`: lines for which the
    neighbouring lines of the same stream are read too (the rest of a multi-line event that
    a filter cut apart); None reads no context.
    """

    window: Window
    budget: int
    severity_first: bool = False
    context: Callable[[str], bool] | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """Up to CHUNK_LINES lines of one `group`: the chunks of a group, in `seq` order, are
    oldest first; lines of different groups interleave in time (see `merge_groups`)."""

    group: str
    seq: int
    lines: list[RawLine]


@dataclass
class SourceRead:
    """A read in progress: iterate `chunks`; the counters and `coverage` are final once it
    is exhausted. ``seen``: lines the source returned (re-reads at page edges included);
    ``kept``: lines handed on, context included; ``pages``: requests or file passes."""

    query: str
    chunks: Iterator[Chunk]
    coverage: Coverage | None = None
    seen: int = 0
    kept: int = 0
    pages: int = 0
    notes: list[str] = field(default_factory=list)


class LogSource(Protocol):
    """Reads the lines of a window that match, within a budget."""

    def read(self, plan: ReadPlan) -> SourceRead:
        """The plan's lines, in chunks, and then the coverage of the window."""
        ...


def chunked(group: str, seq: int, lines: list[RawLine]) -> Iterator[Chunk]:
    """`lines` as chunks of CHUNK_LINES, numbered from ``seq * 1000``."""
    for n, at in enumerate(range(0, len(lines), CHUNK_LINES)):
        yield Chunk(group, seq * 1000 + n, lines[at : at + CHUNK_LINES])


def merge_groups(groups: Iterable[Iterable[RawLine]]) -> Iterator[RawLine]:
    """One oldest-first stream from several oldest-first ones; a line two groups both hold
    (a context read overlapping a sampled one) comes once."""
    streams = list(groups)
    if len(streams) == 1:  # one group: already in order, and nothing is read twice
        yield from streams[0]
        return
    same_ts: set[tuple[str, str, str, str]] = set()
    current = None
    for raw in heapq.merge(*streams, key=attrgetter("ts_ns")):
        if raw.ts_ns != current:
            current, same_ts = raw.ts_ns, set()
        labels = raw.labels
        # Not every label: a context read does not carry the labels a `| json` extracted.
        identity = (
            raw.line,
            labels.get("namespace", ""),
            labels.get("pod", ""),
            labels.get("container", ""),
        )
        if identity in same_ts:
            continue
        same_ts.add(identity)
        yield raw


def merge_chunks(chunks: Iterable[Chunk]) -> Iterator[RawLine]:
    """The lines of `chunks` (any order, in memory), merged oldest first."""
    groups: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        groups.setdefault(chunk.group, []).append(chunk)
    return merge_groups(
        [raw for chunk in sorted(group, key=attrgetter("seq")) for raw in chunk.lines]
        for group in groups.values()
    )


def read_all(source: LogSource, plan: ReadPlan) -> tuple[list[RawLine], SourceRead]:
    """Every line of a read, merged oldest first (in memory: for tests and small reads)."""
    read = source.read(plan)
    return list(merge_chunks(list(read.chunks))), read
