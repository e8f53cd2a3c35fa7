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

Counts match the Loki client: ``seen`` is every matching line, ``kept`` the oldest
`scan_limit` of them (the Loki client pages forward, so both keep the beginning of the window),
``dropped = seen - kept``. Undecodable bytes are replaced; malformed CRI lines are skipped.
"""

from __future__ import annotations

import calendar
import gzip
import heapq
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from shared.logql import LogFilter, build_query, compile_re2, validate_filters
from shared.schemas import FetchResult, Filters, RawLine
from workers.sources import Window

__all__ = ["FileSource", "parse_rfc3339_ns", "read_files"]

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


def read_files(
    root: Path,
    filters: Filters,
    log_filter: LogFilter,
    start_ns: int,
    end_ns: int,
    *,
    scan_limit: int,
    node_name: str | None = None,
) -> FetchResult:
    """Read matching lines in ``[start_ns, end_ns)`` under `root`, oldest `scan_limit` first."""
    if scan_limit < 1:
        raise ValueError(f"scan_limit must be positive, got {scan_limit}")
    validate_filters(filters)
    result = FetchResult(lines=[], query=f"files {root}: {build_query(filters, log_filter)}")
    selector = _Selector(filters, node_ok=filters.node is None or filters.node == node_name)
    if not selector.node_ok or end_ns <= start_ns or not root.is_dir():
        return result

    # Max-heap (by negated keys) of the oldest `scan_limit` lines; `seq` keeps read order on ties.
    heap: list[tuple[int, int, RawLine]] = []
    seq = 0
    for ts, labels, message in _candidates(root, selector, node_name):
        if not start_ns <= ts < end_ns:
            continue
        final_labels = log_filter.evaluate(message, labels)
        if final_labels is None:
            continue
        result.seen += 1
        seq += 1
        item = (-ts, -seq, RawLine(ts_ns=ts, labels=final_labels, line=message))
        if len(heap) < scan_limit:
            heapq.heappush(heap, item)
        else:
            heapq.heappushpop(heap, item)
    result.lines = [raw for _, _, raw in sorted(heap, reverse=True)]
    result.kept = len(result.lines)
    result.dropped = result.seen - result.kept
    result.pages = 1  # one pass over the files, like one Loki page
    return result


_Candidate = tuple[int, dict[str, str], str]


def _candidates(root: Path, selector: _Selector, node_name: str | None) -> Iterator[_Candidate]:
    """Every (ts, labels, message) under `root` whose stream matches the selector."""
    for entry in _listdir(root):
        if entry.is_symlink():
            continue
        if entry.is_file() and entry.name.endswith(".log"):
            yield from _plain_file(entry, PLAIN_NAMESPACE, selector, node_name)
            continue
        if not entry.is_dir():
            continue
        pod_dir = _POD_DIR.fullmatch(entry.name)
        if pod_dir is None:
            for path in _listdir(entry):
                if path.name.endswith(".log") and path.is_file() and not path.is_symlink():
                    yield from _plain_file(path, entry.name, selector, node_name)
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
            yield from _container_logs(container_dir, labels)


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
    """CRI lines to entries: ``P`` fragments joined into the next ``F`` of the same stream."""
    pending: dict[str, tuple[int, list[str]]] = {}
    malformed = 0
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
            continue
        yield first_ts, {**labels, "stream": stream}, "".join(parts)
    for stream, (first_ts, parts) in pending.items():
        # The container stopped (or the file was cut) before the final fragment.
        yield first_ts, {**labels, "stream": stream}, "".join(parts)
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


@dataclass(frozen=True)
class FileSource:
    """A log source backed by kubelet-layout files under `root` (see `read_files`)."""

    root: Path
    node_name: str | None = None

    def read(self, window: Window, *, scan_limit: int) -> FetchResult:
        return read_files(
            self.root,
            window.filters,
            window.log_filter,
            window.start_ns,
            window.end_ns,
            scan_limit=scan_limit,
            node_name=self.node_name,
        )
