"""How a window is read within a budget: counts per bucket in, read tasks out, and the
coverage of what was read.

The window is cut into `BUCKETS` equal parts whose lines the source counts first (Loki with
a metric query, the files source in a first pass). When every line fits the budget, every
line is read, in ranges of about `RANGE_LINES` lines so that they can be fetched in
parallel. When they do not:

- with a severity-first plan, the severity tiers (`workers.sources.severity`: fatal-or-worse,
  then errors, then warnings, then the rest) take the budget in turn: each tier that fits
  what is left is read completely, the first that does not gets a sample of what is left,
  and the tiers below it are not read (their lines are counted, not read);
- otherwise the budget goes to a sample of the matching lines.

A sample shares its budget among the buckets max-min fair: a quiet bucket is read whole
(a rare line before a burst is not drowned by it), a busy one gets an equal share of what
is left. A line of a sampled bucket stands for ``count / read`` lines: its `weight`; a
line of a tier read completely weighs 1, so its counts are exact.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.schemas import RawLine
from shared.schemas.findings import Coverage, CoverageRange, TierCoverage
from workers.sources import ReadPlan, Window
from workers.sources.severity import REST, TIER_NAMES, TIERS

BUCKETS: Final = 32
RANGE_LINES: Final = 5000  # one Loki page: a complete read is fetched in ranges of this size
BUCKET_UNIT_NS: Final = 1_000_000  # bucket edges fall on whole milliseconds (LogQL ranges)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(ts_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def bucket_edges(start_ns: int, end_ns: int, buckets: int = BUCKETS) -> list[int]:
    """Edges of about `buckets` equal parts of ``[start_ns, end_ns)``, each a whole number of
    milliseconds long (a LogQL range) except, when the span allows no such cut, the last."""
    span = max(end_ns - start_ns, 1)
    if span % BUCKET_UNIT_NS == 0:
        units = span // BUCKET_UNIT_NS
        # Any whole number of minutes divides by 32: the usual windows get exact buckets.
        parts = next((n for n in range(buckets, buckets // 2, -1) if units % n == 0), None)
        if parts is not None:
            step = span // parts
            return [start_ns + step * k for k in range(parts)] + [end_ns]
    step = math.ceil(span / buckets / BUCKET_UNIT_NS) * BUCKET_UNIT_NS
    return [*range(start_ns, end_ns, step), end_ns]


@dataclass(frozen=True)
class Buckets:
    """Line counts per bucket of a window: all matching lines and, for a severity-first
    plan, those of each tier of `TIERS` (in its order)."""

    edges: list[int]
    total: list[int]
    tiers: list[list[int]] | None = None

    @property
    def rest(self) -> list[int]:
        """Lines per bucket in no tier (the counts of a tier may run a line over the total's
        at a bucket edge: never below zero)."""
        tiers = self.tiers or []
        return [max(t - sum(c[i] for c in tiers), 0) for i, t in enumerate(self.total)]

    def index(self, ts_ns: int) -> int:
        """The bucket holding `ts_ns` (clamped to the window)."""
        at = bisect.bisect_right(self.edges, ts_ns) - 1
        return min(max(at, 0), len(self.total) - 1)


@dataclass(frozen=True)
class ReadTask:
    """One range of one group to read; `limit` None reads every line of it. A sampled task
    reads one bucket (`bucket`), whose `count` lines its lines stand for."""

    group: str
    seq: int
    window: Window
    limit: int | None
    count: int
    bucket: int | None = None

    @property
    def sampled(self) -> bool:
        return self.limit is not None


def allocate(counts: Sequence[int], budget: int) -> list[int]:
    """Shares of `budget` per bucket, max-min fair: none gets more than it holds, the
    smallest are served first, the rest share equally what is left."""
    quotas = [0] * len(counts)
    order = sorted(range(len(counts)), key=counts.__getitem__)
    remaining = max(budget, 0)
    for pos, i in enumerate(order):
        quotas[i] = min(counts[i], remaining // (len(order) - pos))
        remaining -= quotas[i]
    for i in reversed(order):  # what integer division left over
        if remaining == 0:
            break
        if quotas[i] < counts[i]:
            quotas[i] += 1
            remaining -= 1
    return quotas


def plan_tasks(plan: ReadPlan, buckets: Buckets) -> list[ReadTask]:
    """The reads that cover `plan` within its budget, given the counts."""
    window = plan.window
    if sum(buckets.total) <= plan.budget:
        return _complete("all", window, buckets.edges, buckets.total)
    if plan.severity_first and buckets.tiers is not None:
        return _by_tier(plan, buckets)
    return _sampled("all", window, buckets.edges, buckets.total, plan.budget)


def _by_tier(plan: ReadPlan, buckets: Buckets) -> list[ReadTask]:
    """Each tier, most severe first, read completely while it fits what is left of the
    budget; the first that does not fit gets a sample of what is left, and ends the plan."""
    assert buckets.tiers is not None
    groups = [
        *((t.name, t.log_filter, c) for t, c in zip(TIERS, buckets.tiers, strict=True)),
        ("rest", REST, buckets.rest),
    ]
    tasks: list[ReadTask] = []
    left = plan.budget
    for name, log_filter, counts in groups:
        if left <= 0:
            break
        window, held = plan.window.narrowed(log_filter), sum(counts)
        if held <= left:
            tasks += _complete(name, window, buckets.edges, counts)
        else:
            tasks += _sampled(name, window, buckets.edges, counts, left)
        left -= held
    return tasks


def is_complete(tasks: Iterable[ReadTask]) -> bool:
    """Whether `tasks` read every line of the window (not a sample, not some tiers only)."""
    return all(task.group == "all" and not task.sampled for task in tasks)


def _complete(group: str, window: Window, edges: list[int], counts: list[int]) -> list[ReadTask]:
    """Ranges covering the whole window, of about RANGE_LINES lines each by the counts (a
    busy bucket is cut into equal-time pieces, assuming its lines are spread evenly)."""
    spans: list[tuple[int, int, int]] = []
    start, held = edges[0], 0
    for i, count in enumerate(counts):
        low, high = edges[i], edges[i + 1]
        if count > RANGE_LINES:
            if start < low:
                spans.append((start, low, held))
            pieces = math.ceil(count / RANGE_LINES)
            cuts = [low + (high - low) * k // pieces for k in range(pieces + 1)]
            spans += [
                (a, b, count // pieces) for a, b in zip(cuts, cuts[1:], strict=False) if a < b
            ]
            start, held = high, 0
            continue
        if held + count > RANGE_LINES and start < low:
            spans.append((start, low, held))
            start, held = low, 0
        held += count
    if start < edges[-1]:
        spans.append((start, edges[-1], held))
    return [
        ReadTask(group, seq, window.between(a, b), None, count)
        for seq, (a, b, count) in enumerate(spans)
    ]


def _sampled(
    group: str, window: Window, edges: list[int], counts: list[int], budget: int
) -> list[ReadTask]:
    quotas = allocate(counts, budget)
    return [
        ReadTask(
            group,
            i,
            window.between(edges[i], edges[i + 1]),
            None if quota >= count else quota,
            count,
            bucket=i,
        )
        for i, (count, quota) in enumerate(zip(counts, quotas, strict=True))
        if quota > 0
    ]


def weigh(task: ReadTask, lines: list[RawLine]) -> None:
    """Give the lines of a sampled task the weight of the lines they stand for."""
    if task.sampled and lines and task.count > len(lines):
        weight = task.count / len(lines)
        for raw in lines:
            raw.weight = weight


@dataclass
class Tally:
    """What a read of `tasks` got, per bucket and per tier, as it goes; `coverage` sums it
    up at the end."""

    buckets: Buckets
    tasks: list[ReadTask]
    read: list[int] = field(default_factory=list)
    tier_read: dict[str, int] = field(default_factory=dict)
    context: int = 0
    sampled: bool = False
    failed: list[str] = field(default_factory=list)
    failed_groups: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.read = [0] * len(self.buckets.total)
        self.sampled = not is_complete(self.tasks)

    def took(self, group: str, ts_ns: int) -> None:
        """Count one line read by a task of `group`."""
        self.read[self.buckets.index(ts_ns)] += 1
        if group in TIER_NAMES:
            self.tier_read[group] = self.tier_read.get(group, 0) + 1

    def add(self, task: ReadTask, lines: Iterable[RawLine]) -> None:
        """Count the lines a task read."""
        for raw in lines:
            self.took(task.group, raw.ts_ns)

    def fail(self, task: ReadTask, problem: str) -> None:
        """Record a range that could not be read."""
        window = task.window
        self.failed_groups.add(task.group)
        self.failed.append(
            f"{utc(window.start_ns):%H:%M:%S}–{utc(window.end_ns):%H:%M:%S} ({problem})"
        )

    def coverage(self, *, severity_first: bool) -> Coverage:
        """The coverage of the window: complete, sampled, or partial (a range failed)."""
        b = self.buckets
        complete = not self.sampled and not self.failed
        ranges = [
            CoverageRange(
                start=utc(b.edges[i]),
                end=utc(b.edges[i + 1]),
                lines=max(b.total[i], self.read[i]) if not complete else self.read[i],
                read=self.read[i],
            )
            for i in range(len(b.total))
        ]
        lines_read = sum(self.read)
        tiers = self._tiers() if severity_first and not complete else []
        return Coverage(
            mode="partial" if self.failed else "complete" if complete else "sampled",
            lines_in_window=lines_read if complete else sum(r.lines or 0 for r in ranges),
            lines_read=lines_read,
            severe_in_window=sum(t.lines for t in tiers) if tiers else None,
            severe_read=sum(t.read for t in tiers) if tiers else None,
            tiers=tiers,
            context_lines=self.context,
            ranges=ranges,
            failed=self.failed,
        )

    def _tiers(self) -> list[TierCoverage]:
        """Per tier: its lines (exact when read completely: what was read, which a count
        may miss by a line on the window's start edge), what was read, and whether whole."""
        if self.buckets.tiers is None:
            return []
        out = []
        for tier, counts in zip(TIERS, self.buckets.tiers, strict=True):
            tasks = [t for t in self.tasks if t.group == tier.name]
            read = self.tier_read.get(tier.name, 0)
            whole = bool(tasks) and not any(t.sampled for t in tasks)
            whole = whole and tier.name not in self.failed_groups
            counted = sum(counts)
            out.append(
                TierCoverage(
                    tier=tier.label,
                    lines=max(counted, read) if whole else counted,
                    read=read,
                    complete=whole,
                )
            )
        return out


def cut_coverage(window: Window, lines_read: int, *, cut: bool) -> Coverage:
    """The coverage of a plain forward read (no counts): complete, or cut at the budget."""
    whole = CoverageRange(
        start=utc(window.start_ns),
        end=utc(window.end_ns),
        lines=None if cut else lines_read,
        read=lines_read,
    )
    return Coverage(
        mode="cut" if cut else "complete",
        lines_in_window=None if cut else lines_read,
        lines_read=lines_read,
        ranges=[whole],
    )
