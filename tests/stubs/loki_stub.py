"""A small real Loki over HTTP for tests: push, query_range, labels, ready, failure injection.

It answers in the shapes of /work/shared/reference/loki-api.md (a real Loki 3.x): stream
selectors with ``= != =~ !~`` matchers, the pipeline stages `shared.logql` parses, `limit` over all
streams, ``start`` inclusive and ``end`` exclusive, the ``service_name`` and ``detected_level``
labels Loki adds, and Loki's 400 texts. It runs a `ThreadingHTTPServer` on 127.0.0.1 with a free
port, so a Celery worker in another process can reach it too.

    with start_loki_stub() as loki:
        loki.push({"namespace": "shop", "pod": "api-1", "container": "api"}, [(ts, "ERROR x")])
        loki.fail_next(503, times=2)
        ...
        assert loki.requests[-1].params["direction"] == "forward"
"""

from __future__ import annotations

import argparse
import bisect
import gc
import heapq
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from shared.logql import (
    LogFilter,
    LogQLSyntaxError,
    Token,
    compile_re2,
    parse_pipeline,
    tokenize,
)
from workers.sources.files import parse_rfc3339_ns

__all__ = [
    "LokiStub",
    "Matcher",
    "QueryError",
    "StubRequest",
    "detect_level",
    "format_go_duration",
    "parse_loki_time",
    "parse_query",
    "start_loki_stub",
]

MAX_ENTRIES_LIMIT = 5000
_COUNT_QUERY = re.compile(
    r"sum\(count_over_time\((?P<query>.+) \[(?P<range>[0-9a-z]+)\]"
    r"(?: offset (?P<offset>[0-9a-z]+))?\)\)",
    re.DOTALL,
)
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_Hit = tuple[int, tuple[tuple[str, str], ...], int, str, str, dict[str, str]]
MAX_QUERY_LENGTH_NS = (30 * 24 + 1) * 3600 * 10**9  # 30d1h, Loki's default max_query_length
QUERY_RANGE = "/loki/api/v1/query_range"

_SERVICE_NAME_SOURCES = (
    "service_name",
    "service",
    "app",
    "application",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "component",
    "workload",
    "job",
)
_LEVEL_WORDS = (
    ("fatal", re.compile(r"\b(?:FATAL|Fatal|fatal|PANIC|Panic|panic)\b")),
    ("critical", re.compile(r"\b(?:CRITICAL|Critical|critical|CRIT|crit)\b")),
    ("error", re.compile(r"\b(?:ERROR|Error|error|ERR|err)\b")),
    ("warn", re.compile(r"\b(?:WARNING|Warning|warning|WARN|Warn|warn)\b")),
    ("info", re.compile(r"\b(?:INFO|Info|info)\b")),
    ("debug", re.compile(r"\b(?:DEBUG|Debug|debug)\b")),
    ("trace", re.compile(r"\b(?:TRACE|Trace|trace)\b")),
)
_DETECTED_LEVELS = ("fatal", "critical", "error", "warn", "info", "debug", "trace", "unknown")
_LEVEL_FIELD = re.compile(r'"?(?:level|lvl|severity|LEVEL|Level)"?\s*[:=]\s*"?([A-Za-z]+)')
_LEVEL_NAMES = {
    "fatal": "fatal",
    "panic": "fatal",
    "critical": "critical",
    "crit": "critical",
    "error": "error",
    "err": "error",
    "eror": "error",
    "warn": "warn",
    "warning": "warn",
    "info": "info",
    "information": "info",
    "debug": "debug",
    "dbg": "debug",
    "trace": "trace",
}
_GO_REGEX_ERRORS = (
    ("missing )", "missing closing )"),
    ("missing ]", "missing closing ]"),
    ("unexpected )", "unexpected )"),
    ("bad repetition operator", "invalid nested repetition operator"),
    ("missing argument to repetition operator", "missing argument to repetition operator"),
    ("bad repetition argument", "invalid repeat count"),
    ("bad escape", "invalid escape sequence"),
    ("bad character class range", "invalid character class range"),
    ("bad named capture", "invalid named capture"),
    ("pattern too large", "expression too large"),
)


class QueryError(Exception):
    """A 400 with Loki's text."""


@dataclass(frozen=True, slots=True)
class StubRequest:
    """One request the stub received; `status` is what it answered."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    tenant: str | None = None  # the X-Scope-OrgID header, as multi-tenant Loki reads it


@dataclass(slots=True)
class _Fault:
    path: str | None
    status: int = 0
    hang_s: float = 0.0
    body: str = ""
    retry_after: str | None = None
    times: int = 1
    skip: int = 0  # requests let through before the fault starts


@dataclass(slots=True)
class _Stream:
    labels: dict[str, str]
    # (ts, seq, line, detected_level); seq keeps insertion order within a nanosecond.
    entries: list[tuple[int, int, str, str]] = field(default_factory=list)
    keys: set[tuple[int, str]] = field(default_factory=set)
    times: list[int] = field(default_factory=list)  # entries' timestamps, once sorted
    dirty: bool = False

    def sorted_view(self) -> tuple[list[tuple[int, int, str, str]], list[int]]:
        """The entries in (ts, seq) order and their timestamps (for bisect); sorts lazily."""
        if self.dirty:
            self.entries.sort()
            self.times = [e[0] for e in self.entries]
            self.dirty = False
        return self.entries, self.times


def detect_level(line: str) -> str:
    """Loki-like `detected_level`: a level field (json/logfmt), else a level word, else unknown."""
    match = _LEVEL_FIELD.search(line)
    if match and match.group(1).lower() in _LEVEL_NAMES:
        return _LEVEL_NAMES[match.group(1).lower()]
    for level, pattern in _LEVEL_WORDS:
        if pattern.search(line):
            return level
    return "unknown"


def format_go_duration(ns: int) -> str:
    """Go's `time.Duration.String()` for durations of a second or more (e.g. ``3000h0m0s``)."""
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds, frac = divmod(rest, 10**9)
    text = f"{seconds}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return (
        f"{hours}h{minutes}m{text}s" if hours else f"{minutes}m{text}s" if minutes else text + "s"
    )


def parse_loki_time(value: str) -> int:
    """A `start`/`end` parameter as Loki reads it: float seconds, int s/ns, or RFC3339."""
    if "." in value:
        try:
            return int(float(value) * 10**9)
        except ValueError:
            pass
    if value.lstrip("-").isdigit():
        number = int(value)
        return number * 10**9 if len(value) <= 10 else number
    return parse_rfc3339_ns(value)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher of a stream selector."""

    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a stream's labels pass (a missing label is ``""``; regexes are anchored)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = compile_re2(self.value).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def empty_compatible(self) -> bool:
        """True when the matcher also selects streams without the label (Loki refuses those)."""
        if self.op == "=":
            return self.value == ""
        if self.op == "=~":
            return compile_re2(self.value).fullmatch("") is not None
        return True


def _go_regex_message(detail: str) -> str:
    for needle, go in _GO_REGEX_ERRORS:
        if needle in detail:
            return go
    return detail


def parse_query(query: str) -> tuple[list[Matcher], LogFilter]:
    """Split a log query into its selector matchers and its pipeline; QueryError in Loki words."""
    tokens = tokenize(query)
    matchers: list[Matcher] = []
    try:
        tok = next(tokens)
        if not (tok.kind == "PUNCT" and tok.value == "{"):
            raise _syntax(tok, "{")
        while True:
            name = next(tokens)
            if name.kind != "IDENTIFIER":
                raise _syntax(name, "IDENTIFIER")
            op = next(tokens)
            if op.kind != "OP" or op.value not in ("=", "!=", "=~", "!~"):
                raise _syntax(op, "= or != or =~ or !~")
            value = next(tokens)
            if value.kind != "STRING":
                raise _syntax(value, "STRING")
            if op.value in ("=~", "!~"):
                try:
                    compile_re2(value.value)
                except ValueError as exc:
                    raise QueryError(
                        f"parse error : error parsing regexp: {_go_regex_message(str(exc))}: "
                        f"`{value.value}`"
                    ) from None
            matchers.append(Matcher(name.value, op.value, value.value))
            sep = next(tokens)
            if sep.kind == "PUNCT" and sep.value == "}":
                end = sep.pos + 1
                break
            if not (sep.kind == "PUNCT" and sep.value == ","):
                raise _syntax(sep, "} or ,")
        pipeline = parse_pipeline(query, end)
    except LogQLSyntaxError as exc:
        raise QueryError(_loki_parse_message(exc)) from None
    if all(m.empty_compatible() for m in matchers):
        raise QueryError(
            "parse error : queries require at least one regexp or equality matcher that does not "
            'have an empty-compatible value. For instance, app=~".*" does not meet this '
            'requirement, but app=~".+" will'
        )
    return matchers, pipeline


def _syntax(tok: Token, expected: str) -> LogQLSyntaxError:
    return LogQLSyntaxError("syntax error", tok.pos, found=tok.loki_name, expected=expected)


def _loki_parse_message(exc: LogQLSyntaxError) -> str:
    if exc.regex_error:
        return (
            f"parse error : stage '{exc.stage}' : error parsing regexp: "
            f"{_go_regex_message(exc.regex_error)}: `{exc.pattern}`"
        )
    where = f"parse error at line 1, col {exc.pos + 1}"
    if exc.found and exc.expected:
        return f"{where}: syntax error: unexpected {exc.found}, expecting {exc.expected}"
    return f"{where}: syntax error: {exc.reason}"


class LokiStub:
    """The running stub: `url`, `push`, `fail_next`, `hang_next`, `requests`, `stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._streams: dict[tuple[tuple[str, str], ...], _Stream] = {}
        self._seq = 0
        self._faults: list[_Fault] = []
        self._requests: list[StubRequest] = []
        self._release = threading.Event()
        self.ready = True
        # Time each query waits before it is evaluated: Loki's own work (index lookup,
        # chunk fetch) happens on other machines, so a client can overlap it.
        self.latency_s = 0.0
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="loki-stub", daemon=True
        )
        self._thread.start()

    # --- test API ---------------------------------------------------------------------------

    def push(self, labels: Mapping[str, str], entries: Iterable[tuple[int, str]]) -> None:
        """Store entries as a push would (Loki drops exact duplicates within a stream)."""
        stream_labels = dict(labels)
        if "service_name" not in stream_labels:
            source = next((k for k in _SERVICE_NAME_SOURCES if stream_labels.get(k)), None)
            stream_labels["service_name"] = stream_labels[source] if source else "unknown_service"
        key = tuple(sorted(stream_labels.items()))
        with self._lock:
            stream = self._streams.setdefault(key, _Stream(stream_labels))
            for ts, line in entries:
                if (ts, line) in stream.keys:
                    continue
                stream.keys.add((ts, line))
                self._seq += 1
                stream.entries.append((int(ts), self._seq, line, detect_level(line)))
                stream.dirty = True

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        body: str | None = None,
        retry_after: str | None = None,
        path: str | None = QUERY_RANGE,
        skip: int = 0,
    ) -> None:
        """Answer the next `times` requests to `path` (any path if None) with `status`,
        after letting `skip` of them through.

        ``times=0`` cancels the faults still pending for `path` instead.
        """
        text = body if body is not None else f"{HTTPStatus(status).phrase.lower()}\n"
        with self._lock:
            if times <= 0:
                self._faults = [f for f in self._faults if f.path != path]
                return
            self._faults.append(_Fault(path, status, 0.0, text, retry_after, times, skip))

    def hang_next(self, seconds: float, times: int = 1, *, path: str | None = QUERY_RANGE) -> None:
        """Hold the next `times` requests to `path` for `seconds` before answering normally."""
        with self._lock:
            self._faults.append(_Fault(path, 0, seconds, "", None, times))

    def stored(self) -> list[tuple[int, dict[str, str], str]]:
        """Every stored entry as (ts, stream labels, line), in no particular order."""
        with self._lock:
            return [(e[0], s.labels, e[2]) for s in self._streams.values() for e in s.entries]

    @property
    def requests(self) -> list[StubRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def query_requests(self) -> list[StubRequest]:
        """Only the `query_range` requests."""
        return [r for r in self.requests if r.path == QUERY_RANGE]

    def clear_faults(self) -> None:
        """Cancel every pending failure or hang (stored streams stay)."""
        with self._lock:
            self._faults.clear()

    def clear(self) -> None:
        """Forget stored streams, pending faults and the request log."""
        with self._lock:
            self._streams.clear()
            self._faults.clear()
            self._requests.clear()

    def stop(self) -> None:
        """Release hung requests, stop serving and close the socket."""
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LokiStub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- server side ------------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path == path:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(
        self, method: str, path: str, params: dict[str, str], status: int, tenant: str | None
    ) -> None:
        with self._lock:
            self._requests.append(StubRequest(method, path, params, status, tenant))

    def _labels(self) -> list[str]:
        with self._lock:
            return sorted({name for key in self._streams for name, _ in key})

    def _label_values(self, name: str) -> list[str]:
        with self._lock:
            return sorted({s.labels[name] for s in self._streams.values() if name in s.labels})

    def _count(
        self, metric: re.Match[str], start: int, end: int, step_text: str | None, began: float
    ) -> dict[str, Any]:
        """``sum(count_over_time(<query> [range] offset o))`` as Loki evaluates it: points at
        multiples of `step` since the epoch within ``[start, end]``, each counting the lines
        in ``(t - o - range, t - o]``; points with no line are left out."""
        matchers, pipeline = parse_query(metric["query"])
        span = parse_duration_ns(metric["range"])
        offset = parse_duration_ns(metric["offset"]) if metric["offset"] else 0
        step = parse_duration_ns(step_text) if step_text else max((end - start) // 250, 10**9)
        if step <= 0:
            raise QueryError("zero or negative query resolution step widths are not accepted")
        first = -(-start // step) * step
        points = list(range(first, end + 1, step))
        if not points:
            return _matrix([], began)
        low, high = points[0] - offset - span + 1, points[-1] - offset + 1
        times: list[int] = []
        with self._lock:
            for stream in self._streams.values():
                if not all(m.matches(stream.labels) for m in matchers):
                    continue
                for ts, _key, _seq, line, level, labels in _in_range(stream, low, high, True):
                    if pipeline.lines_only:
                        if pipeline.keeps_line(line):
                            times.append(ts)
                    elif pipeline.evaluate(line, {**labels, "detected_level": level}) is not None:
                        times.append(ts)
        times.sort()
        values: list[list[Any]] = []
        for t in points:
            n = bisect.bisect_right(times, t - offset) - bisect.bisect_right(
                times, t - offset - span
            )
            if n:
                seconds = t / 10**9
                values.append([int(seconds) if t % 10**9 == 0 else seconds, str(n)])
        return _matrix([{"metric": {}, "values": values}] if values else [], began)

    def query_range(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Evaluate a `query_range` the way Loki does; QueryError carries Loki's 400 text."""
        began = time.perf_counter()
        now_ns = time.time_ns()
        try:
            end = parse_loki_time(params["end"]) if params.get("end") else now_ns
            start = parse_loki_time(params["start"]) if params.get("start") else end - 3600 * 10**9
        except ValueError as exc:
            raise QueryError(f"invalid time: {exc}") from None
        try:
            limit = int(params.get("limit", "100"))
        except ValueError:
            raise QueryError(f"invalid limit: {params.get('limit')!r}") from None
        direction = params.get("direction", "backward")
        if direction not in ("forward", "backward"):
            raise QueryError(f"invalid direction: {direction!r}")
        if limit <= 0:
            raise QueryError("limit must be a positive value")
        if end <= start:
            raise QueryError("end timestamp must not be before or equal to start time")
        query = params.get("query", "")
        metric = _COUNT_QUERY.fullmatch(query.strip())
        if metric is not None:
            return self._count(metric, start, end, params.get("step"), began)
        matchers, pipeline = parse_query(query)
        if limit > MAX_ENTRIES_LIMIT:
            raise QueryError(
                "max entries limit per query exceeded, limit > max_entries_limit_per_query "
                f"({limit} > {MAX_ENTRIES_LIMIT})"
            )
        if end - start > MAX_QUERY_LENGTH_NS:
            raise QueryError(
                f"the query time range exceeds the limit (query length: "
                f"{format_go_duration(end - start)}, limit: 30d1h)"
            )

        processed = 0
        selected: list[tuple[int, tuple[tuple[str, str], ...], int, str]] = []
        forward = direction == "forward"
        with self._lock:
            ranges = [
                _in_range(stream, start, end, forward)
                for stream in self._streams.values()
                if all(m.matches(stream.labels) for m in matchers)
            ]
            # Streams merged in the order of the answer, evaluated until `limit` lines pass.
            order = _forward_order if forward else _backward_order
            lines_only = pipeline.lines_only  # labels stay the stream's: no dict per line
            for ts, key, seq, line, level, labels in heapq.merge(*ranges, key=order):
                processed += 1
                if lines_only:
                    if not pipeline.keeps_line(line):
                        continue
                    final_key = key
                else:
                    final = pipeline.evaluate(line, {**labels, "detected_level": level})
                    if final is None:
                        continue
                    final_key = tuple(sorted(final.items()))
                selected.append((ts, final_key, seq, line))
                if len(selected) >= limit:
                    break
        grouped: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for ts, key, _, line in selected:
            grouped.setdefault(key, []).append([str(ts), line])
        exec_time = time.perf_counter() - began
        return {
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{"stream": dict(k), "values": v} for k, v in sorted(grouped.items())],
                "stats": {
                    "summary": {
                        "bytesProcessedPerSecond": 0,
                        "linesProcessedPerSecond": 0,
                        "totalBytesProcessed": 0,
                        "totalLinesProcessed": processed,
                        "totalEntriesReturned": len(selected),
                        "totalPostFilterLines": len(selected),
                        "execTime": exec_time,
                        "queueTime": 0,
                        "subqueries": 0,
                        "splits": 0,
                        "shards": 0,
                    },
                    "querier": {"store": {}},
                    "ingester": {},
                },
            },
        }


def _in_range(stream: _Stream, start: int, end: int, forward: bool) -> Iterator[_Hit]:
    """A stream's entries in ``[start, end)``, oldest first (or newest first)."""
    entries, times = stream.sorted_view()
    low, high = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
    # The labels Loki answers with: the stream's and the `detected_level` of each line.
    keys = {
        level: tuple(sorted({**stream.labels, "detected_level": level}.items()))
        for level in _DETECTED_LEVELS
    }
    indexes = range(low, high) if forward else range(high - 1, low - 1, -1)
    for i in indexes:
        ts, seq, line, level = entries[i]
        yield ts, keys[level], seq, line, level, stream.labels


def _forward_order(hit: _Hit) -> tuple[int, tuple[tuple[str, str], ...], int]:
    return hit[0], hit[1], hit[2]


def _backward_order(hit: _Hit) -> tuple[int, tuple[tuple[str, str], ...], int]:
    return -hit[0], hit[1], -hit[2]


def parse_duration_ns(text: str) -> int:
    """A Prometheus-style duration (``112500ms``, ``5m``, ``1h30m``) or float seconds."""
    try:
        return int(float(text) * 10**9)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise QueryError(f"invalid duration: {text!r}")
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def _matrix(result: list[dict[str, Any]], began: float) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": result,
            "stats": {"summary": {"execTime": time.perf_counter() - began}},
        },
    }


def _make_handler(stub: LokiStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `stub.requests` instead."""

        def _reply(
            self,
            status: int,
            body: bytes,
            content_type: str,
            params: dict[str, str],
            headers: Mapping[str, str] | None = None,
        ) -> None:
            tenant = self.headers.get("X-Scope-OrgID")
            stub._record(self.command, urlsplit(self.path).path, params, status, tenant)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _text(self, status: int, text: str, params: dict[str, str], **kw: Any) -> None:
            self._reply(status, text.encode(), "text/plain; charset=utf-8", params, **kw)

        def _json(self, payload: Any, params: dict[str, str]) -> None:
            body = orjson.dumps(payload)
            self._reply(200, body, "application/json; charset=UTF-8", params)

        def _fault(self, path: str, params: dict[str, str]) -> bool:
            fault = stub._take_fault(path)
            if fault is None:
                return False
            if fault.hang_s:
                if stub._release.wait(fault.hang_s):
                    self.close_connection = True  # stopping: drop the request unanswered
                    return True
                return False
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            self._text(fault.status, fault.body, params, headers=headers)
            return True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            path = parts.path
            if self._fault(path, params):
                return
            if path == "/ready":
                if stub.ready:
                    self._text(200, "ready\n", params)
                else:
                    self._text(
                        503, "Ingester not ready: waiting for 15s after being ready\n", params
                    )
            elif path == QUERY_RANGE:
                if stub.latency_s:
                    time.sleep(stub.latency_s)
                try:
                    self._json(stub.query_range(params), params)
                except QueryError as exc:
                    self._text(400, f"{exc}\n", params)
            elif path == "/loki/api/v1/labels":
                self._json({"status": "success", "data": stub._labels()}, params)
            elif path.startswith("/loki/api/v1/label/") and path.endswith("/values"):
                name = path.removeprefix("/loki/api/v1/label/").removesuffix("/values")
                self._json({"status": "success", "data": stub._label_values(name)}, params)
            else:
                self._text(404, "404 page not found\n", params)

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self._fault(parts.path, {}):
                return
            if parts.path != "/loki/api/v1/push":
                self._text(404, "404 page not found\n", {})
                return
            try:
                payload = json.loads(raw)
                for stream in payload["streams"]:
                    stub.push(
                        {str(k): str(v) for k, v in stream["stream"].items()},
                        [(int(v[0]), str(v[1])) for v in stream["values"]],
                    )
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self._text(400, f"loghttp.PushRequest: {exc}\n", {})
                return
            self._reply(204, b"", "text/plain", {})

    return Handler


def start_loki_stub() -> LokiStub:
    """Start a stub on 127.0.0.1 with a free port; use as a context manager or call `stop()`."""
    return LokiStub()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the stub in this process until killed (benchmarks run it beside the worker)."""
    parser = argparse.ArgumentParser(description="The Loki stub, served on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="wait before evaluating each query"
    )
    args = parser.parse_args(argv)
    # Millions of stored entries and no reference cycles: the collector would rescan them all.
    gc.disable()
    stub = LokiStub(port=args.port)
    stub.latency_s = args.latency_ms / 1000
    try:
        threading.Event().wait()
    finally:
        stub.stop()


if __name__ == "__main__":
    main()
