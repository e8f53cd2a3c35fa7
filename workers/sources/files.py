"""Read logs from files on this node instead of Loki, with the same filters and counts.

Layouts under `root`:

- kubelet: ``<namespace>_<pod>_<uid>/<container>/N.log`` (N is the restart count), with rotated
  ``N.log.<suffix>`` and ``N.log.<suffix>.gz`` files read before ``N.log``. Lines are CRI
  (``<RFC3339Nano> <stdout|stderr> <P|F> <message>``); ``P`` fragments are joined into the next
  ``F`` line of the same stream and the joined line keeps the first fragment's timestamp.
  Labels: ``namespace``, ``pod``, ``container``, ``stream`` (and ``node`` when known).
- plain: ``*.log`` directly under `root`, or directly inside a sub-directory that is not a
  kubelet pod directory. Labels: ``filename`` and ``namespace`` (the sub-directory's name, or
  ``default`` for files directly under `root`; the request must name a namespace, so without
  this the files could never match). The whole line is the message, as a shipper would send
  it. Its timestamp is a leading RFC 3339/ISO 8601 one if present (no zone means UTC); a line
  without one inherits the previous line's (stack traces), or the file's mtime at the start.

Filtering is Loki's: namespace and container equality, `pod` as an anchored RE2 match (a
missing label is ``""``), the window ``[start_ns, end_ns)``, then the `LogFilter` pipeline.
Files carry no node label; a `node` filter matches only when it equals `node_name` (the node
this process runs on), otherwise nothing is read. Symlinks are not followed.

A read follows the same `ReadPlan` as Loki's (see `workers.sources.plan`), in two passes
over the files: the first counts the matching lines per bucket, the second reads the lines
the plan selects, every stream merged in time order. A sampled bucket keeps evenly spaced
lines (systematic sampling: exactly its quota, spread over the whole bucket). A kept line
that may belong to a multi-line event (`ReadPlan.context`) brings the neighbouring lines of
its file that the filter dropped (`workers.sources.context`). Undecodable bytes are
replaced; malformed CRI lines are skipped.
"""

from __future__ import annotations

import calendar
import gzip
import heapq
import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Final

from shared.logql import build_query, compile_re2, validate_filters
from shared.schemas import Filters, RawLine
from workers.sources import CHUNK_LINES, Chunk, ReadPlan, SourceRead, Window, chunked
from workers.sources.context import CONTEXT_LIMIT, CONTEXT_NS, ContextBudget, Stream, stream_of
from workers.sources.plan import (
    Buckets,
    ReadTask,
    Tally,
    bucket_edges,
    cut_coverage,
    plan_tasks,
)
from workers.sources.severity import TIERS, tier_of

__all__ = ["FileSource", "parse_rfc3339_ns"]

logger = logging.getLogger(__name__)

PLAIN_NAMESPACE: Final = "default"

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"([Zz]|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
_CRI_LINE = re.compile(r"(\S+) (stdout|stderr) ([^ ]+)(?: (.*))?", re.DOTALL)
_KUBELET_FILE = re.compile(r"(\d+)\.log(?:\.(.+?))?(\.gz)?", re.ASCII)
_POD_DIR = re.compile(r"([^_]+)_([^_]+)_([^_]+)")


def _timestamp_ns(match: re.Match[str], *, require_zone: bool) -> int | None:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone is None and require_zone:
        return None
    fields = (int(year), int(month), int(day), int(hour), int(minute), int(second))
    try:
        datetime(*fields)  # range check only: timegm accepts 2026-02-31
    except ValueError:
        return None
    seconds = calendar.timegm((*fields, 0, 0, 0))
    if zone and zone not in "Zz":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch for an RFC 3339 timestamp (with zone); ValueError if not one."""
    match = _TIMESTAMP.fullmatch(text.strip())
    ts = _timestamp_ns(match, require_zone=True) if match else None
    if ts is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    return ts


@dataclass(frozen=True, slots=True)
class _Selector:
    filters: Filters
    node_ok: bool

    def pod_ok(self, pod: str) -> bool:
        pattern = self.filters.pod
        return pattern is None or compile_re2(pattern).fullmatch(pod) is not None


_Candidate = tuple[int, dict[str, str], str]


def _streams(root: Path, selector: _Selector, node_name: str | None) -> list[Iterator[_Candidate]]:
    """One lazy iterator of (ts, labels, message) per stream under `root` that the selector
    takes: a container (its restarts in order) or a plain file."""
    streams: list[Iterator[_Candidate]] = []
    for entry in _listdir(root):
        if entry.is_symlink():
            continue
        if entry.is_file() and entry.name.endswith(".log"):
            streams.append(_plain_file(entry, PLAIN_NAMESPACE, selector, node_name))
            continue
        if not entry.is_dir():
            continue
        pod_dir = _POD_DIR.fullmatch(entry.name)
        if pod_dir is None:
            for path in _listdir(entry):
                if path.name.endswith(".log") and path.is_file() and not path.is_symlink():
                    streams.append(_plain_file(path, entry.name, selector, node_name))
            continue
        namespace, pod, _uid = pod_dir.groups()
        if namespace != selector.filters.namespace or not selector.pod_ok(pod):
            continue
        for container_dir in _listdir(entry):
            container = container_dir.name
            if container_dir.is_symlink() or not container_dir.is_dir():
                continue
            if selector.filters.container not in (None, container):
                continue
            labels = {"namespace": namespace, "pod": pod, "container": container}
            if node_name:
                labels["node"] = node_name
            streams.append(_container_logs(container_dir, labels))
    return streams


def _rotation_groups(container_dir: Path) -> list[list[Path]]:
    """Files of one container grouped by restart count N, each group oldest file first."""
    groups: dict[int, list[tuple[int, str, Path]]] = {}
    for path in _listdir(container_dir):
        match = _KUBELET_FILE.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_file():
            continue
        restart, suffix, _gz = match.groups()
        # Rotated files (with a timestamp suffix, which sorts lexically) come before N.log.
        rank = (0, suffix) if suffix is not None else (1, "")
        groups.setdefault(int(restart), []).append((*rank, path))
    return [[path for *_, path in sorted(files)] for _, files in sorted(groups.items())]


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError as exc:
        logger.warning("cannot list %s: %s", path, exc)
        return []


def _read_lines(path: Path) -> Iterator[str]:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as packed:
                for raw in packed:
                    yield raw.rstrip(b"\n").decode("utf-8", errors="replace")
        else:
            with path.open("rb") as plain:
                for raw in plain:
                    yield raw.rstrip(b"\n").decode("utf-8", errors="replace")
    except (OSError, EOFError) as exc:
        # A truncated .gz or a file rotated away mid-read: keep what was read.
        logger.warning("cannot read log file %s: %s", path, exc)


def _container_logs(container_dir: Path, labels: dict[str, str]) -> Iterator[_Candidate]:
    for files in _rotation_groups(container_dir):
        yield from _join_cri(_chain(files), labels, container_dir)


def _chain(files: Iterable[Path]) -> Iterator[str]:
    for path in files:
        yield from _read_lines(path)


def _join_cri(lines: Iterable[str], labels: dict[str, str], where: Path) -> Iterator[_Candidate]:
    """CRI lines to entries: ``P`` fragments joined into the next ``F`` of the same stream.

    A joined line keeps its first fragment's timestamp but is complete only at its ``F``
    line, after lines of the other stream (stdout/stderr) that came in between: completed
    lines wait while an older fragment is open, so entries come out in time order.
    """
    pending: dict[str, tuple[int, list[str]]] = {}
    ready: list[tuple[int, int, str, str]] = []  # (ts, seq, stream, message): a heap
    seq = malformed = 0
    for line in lines:
        match = _CRI_LINE.fullmatch(line)
        ts_match = _TIMESTAMP.fullmatch(match.group(1)) if match else None
        ts = _timestamp_ns(ts_match, require_zone=True) if ts_match else None
        if match is None or ts is None:
            malformed += 1
            continue
        _, stream, tag, message = match.groups()
        first_ts, parts = pending.pop(stream, (ts, []))
        parts.append(message or "")
        if tag.split(":", 1)[0] == "P":
            pending[stream] = (first_ts, parts)
        else:
            seq += 1
            heapq.heappush(ready, (first_ts, seq, stream, "".join(parts)))
        oldest_open = min((t for t, _ in pending.values()), default=None)
        while ready and (oldest_open is None or ready[0][0] <= oldest_open):
            done_ts, _, done_stream, text = heapq.heappop(ready)
            yield done_ts, {**labels, "stream": done_stream}, text
    for stream, (first_ts, parts) in pending.items():
        # The container stopped (or the file was cut) before the final fragment.
        seq += 1
        heapq.heappush(ready, (first_ts, seq, stream, "".join(parts)))
    while ready:
        done_ts, _, done_stream, text = heapq.heappop(ready)
        yield done_ts, {**labels, "stream": done_stream}, text
    if malformed:
        logger.debug("skipped %d malformed CRI lines under %s", malformed, where)


def _plain_file(
    path: Path, namespace: str, selector: _Selector, node_name: str | None
) -> Iterator[_Candidate]:
    filters = selector.filters
    # Plain files have no pod or container label: Loki would compare against "".
    if namespace != filters.namespace or filters.container is not None or not selector.pod_ok(""):
        return
    labels = {"namespace": namespace, "filename": str(path)}
    if node_name:
        labels["node"] = node_name
    try:
        ts = path.stat().st_mtime_ns
    except OSError as exc:
        logger.warning("cannot stat log file %s: %s", path, exc)
        return
    for line in _read_lines(path):
        match = _TIMESTAMP.match(line)
        parsed = _timestamp_ns(match, require_zone=False) if match else None
        if parsed is not None:
            ts = parsed
        yield ts, labels, line


@dataclass
class _Rule:
    """What the second pass keeps of one group: everything (`quotas` None) or, per bucket,
    `quota` evenly spaced lines of `count`."""

    quotas: dict[int, tuple[int, int]] | None
    taken: dict[int, int] = field(default_factory=dict)

    def keep(self, bucket: int) -> float | None:
        """The weight of the next line of `bucket` if it is kept, else None."""
        if self.quotas is None:
            return 1.0
        quota, count = self.quotas.get(bucket, (0, 0))
        i = self.taken.get(bucket, 0)
        self.taken[bucket] = i + 1
        if quota <= 0 or i >= count or (i + 1) * quota // count == i * quota // count:
            return None
        return count / quota


def _rules(tasks: list[ReadTask]) -> dict[str, _Rule]:
    rules: dict[str, _Rule] = {}
    for task in tasks:
        rule = rules.setdefault(task.group, _Rule(None if task.bucket is None else {}))
        if rule.quotas is not None and task.bucket is not None:
            quota = task.count if task.limit is None else task.limit
            rule.quotas[task.bucket] = (quota, task.count)
    return rules


@dataclass(frozen=True)
class FileSource:
    """A log source backed by kubelet-layout files under `root` (see the module docstring)."""

    root: Path
    node_name: str | None = None

    def read(self, plan: ReadPlan) -> SourceRead:
        """Count the window's lines, then read what the plan selects (two passes)."""
        window = plan.window
        validate_filters(window.filters)
        query = f"files {self.root}: {build_query(window.filters, window.log_filter)}"
        read = SourceRead(query=query, chunks=iter(()))
        read.chunks = self._chunks(plan, read)
        return read

    def _candidates(self, window: Window) -> Iterator[_Candidate]:
        """Every line of the window's streams in ``[start, end)``, oldest first."""
        filters = window.filters
        selector = _Selector(
            filters, node_ok=filters.node is None or filters.node == self.node_name
        )
        if not selector.node_ok or not self.root.is_dir():
            return
        streams = _streams(self.root, selector, self.node_name)
        for ts, labels, message in heapq.merge(*streams, key=itemgetter(0)):
            if window.start_ns <= ts < window.end_ns:
                yield ts, labels, message

    def _count(self, plan: ReadPlan, edges: list[int]) -> Buckets:
        empty = Buckets(edges, [0] * (len(edges) - 1))
        total = list(empty.total)
        tiers = [list(empty.total) for _ in TIERS]
        pipeline = plan.window.log_filter
        lines_only = pipeline.lines_only
        for ts, labels, message in self._candidates(plan.window):
            if lines_only:
                if not pipeline.keeps_line(message):
                    continue
            elif pipeline.evaluate(message, labels) is None:
                continue
            at = empty.index(ts)
            total[at] += 1
            if plan.severity_first and (tier := tier_of(message)) is not None:
                tiers[tier][at] += 1
        return Buckets(edges, total, tiers if plan.severity_first else None)

    def _chunks(self, plan: ReadPlan, read: SourceRead) -> Iterator[Chunk]:
        window = plan.window
        if window.end_ns <= window.start_ns:
            read.coverage = cut_coverage(window, 0, cut=False)
            return
        edges = bucket_edges(window.start_ns, window.end_ns)
        buckets = self._count(plan, edges)
        tasks = plan_tasks(plan, buckets)
        tally = Tally(buckets, tasks)
        rules = _rules(tasks)
        split = "all" not in rules
        context = ContextBudget() if plan.context is not None else None
        before: dict[Stream, deque[RawLine]] = {}
        follow: dict[Stream, tuple[int, int]] = {}  # stream -> (until, lines still to take)
        extra: list[RawLine] = []
        kept: list[RawLine] = []
        seq = 0
        read.pages = 2
        for ts, labels, message in self._candidates(window):
            final = window.log_filter.evaluate(message, labels)
            weight = None
            group = "all"
            if final is not None:
                read.seen += 1
                if split:
                    tier = tier_of(message)
                    group = "rest" if tier is None else TIERS[tier].name
                rule = rules.get(group)
                weight = None if rule is None else rule.keep(buckets.index(ts))
            raw = RawLine(ts, labels if final is None else final, message)
            stream = stream_of(raw)
            if weight is None:
                if context is not None:
                    until, left = follow.get(stream, (-1, 0))
                    if until >= ts and left > 0:
                        extra.append(raw)
                        follow[stream] = (until, left - 1)
                    else:
                        before.setdefault(stream, deque(maxlen=CONTEXT_LIMIT)).append(raw)
                continue
            raw.weight = weight
            kept.append(raw)
            tally.took(group, ts)
            if (
                context is not None
                and plan.context is not None
                and (split or not window.log_filter.is_empty)
                and plan.context(message)
                and context.take(message)
            ):
                extra += [b for b in before.pop(stream, ()) if b.ts_ns >= ts - CONTEXT_NS]
                follow[stream] = (ts + CONTEXT_NS, CONTEXT_LIMIT)
            if len(kept) >= CHUNK_LINES:
                yield Chunk("all", seq, kept)
                seq, kept = seq + 1, []
        if kept:
            yield Chunk("all", seq, kept)
        if extra:
            extra.sort(key=attrgetter("ts_ns"))
            yield from chunked("all+context", 0, extra)
        tally.context = len(extra)
        read.kept = sum(tally.read) + len(extra)
        read.coverage = tally.coverage(severity_first=plan.severity_first)
