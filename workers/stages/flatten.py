"""Flatten stage: raw log lines in, one `Entry` per log event out.

Rules, in the order they apply to each line:

1. Multi-line joining. Each (namespace, pod, container) stream keeps one open event; a line
   that continues it and arrives within `JOIN_WINDOW_NS` of the event's first line is
   appended to it with `\\n`, so a stack trace is one entry with the level of its head.
   Continuations are: lines starting with a space or tab; Java's `Caused by:`,
   `Suppressed:` and `... N more`; Postgres's `DETAIL:`, `HINT:`, `STATEMENT:`,
   `CONTEXT:` and `QUERY:` lines; after a WARN or worse head, a Python
   `Traceback (most recent call last):`, a `goroutine N [...]:` dump or (right after the
   head) a bare Java exception line such as `java.lang.IllegalStateException: boom`; inside
   a Python traceback, the final exception line, blank lines and the chained-exception
   markers; inside a Go panic (`panic:`, `fatal error:`), blank lines, `goroutine`,
   `created by`, `[signal`, `exit status` and `pkg.func(...)` frame lines. An event keeps
   at most `MAX_EVENT_LINES` lines and `MAX_EVENT_CHARS` characters; further continuations
   are swallowed and counted in a final `[... N more lines truncated]` line. Blank lines
   outside an event are dropped.
2. A Python traceback that is an event on its own is re-headed: its message starts with the
   final exception line (`ValueError: bad input`), then the traceback as printed (without
   that line again). Template mining keys on the first line, so the template names the
   error instead of the always-identical `Traceback (most recent call last):`. A traceback
   that follows a log line (`logger.exception`) keeps that line as its head. The final
   exception line (the last one of a chain: the exception actually raised) is kept in
   `fields["exception"]`; Java's first exception line goes there too, and the last
   `Caused by:` (the root cause) into `fields["cause"]`.
3. Structured lines. A line starting with `{` that parses as a JSON object, or a line whose
   first token is `key=value` and whose tokens are mostly `key=value` pairs (logfmt), gives
   level, message and error fields by key (see `_LEVEL_KEYS`, `_MESSAGE_KEYS`,
   `_ERROR_KEYS`). Error fields are kept as strings in `Entry.fields`, and a one-line
   `error=...` summary is appended to the message unless the message already contains it.
   Without a message key the whole line is the message. Level: the level field, else Loki's
   `detected_level`, else ERROR when an error field is set, else the plain-line rules on
   the message. Structured lines are never continuations.
4. Plain lines. Level, first rule that matches: a known head (`Traceback`, `panic:`,
   `fatal error:`, `Exception in thread`, `Caused by:`, `Error:`, `Warning:`); a klog
   header (`E1124 10:00:00.123 ...`); the leftmost strong marker: an upper-case level word
   standing alone (`ERROR`, `[WARN]`, `FATAL:`, `CRITICAL`, `SEVERE`, Postgres `LOG:`, but
   not `ERRORS`, `ERROR_COUNT`, `ERROR=` or `x.ERROR`), an nginx or fluent-bit tag
   (`[error]`, `[crit]`, `[emerg]`, `[ warn]`) or a `level=`/`lvl=`/`severity=` pair; a
   first token ending in `Exception` or `Error` (`ValueError: x`); Loki's
   `detected_level`; the leftmost weak marker: the whole lower-case word `error`,
   `exception`, `failed`, `failure`, `fatal`, `panic`, `warn` or `warning` not followed
   by `=` and not part of a path or a compound name (so `errors=0`, `error=nil` and
   `/error-pages/404` are not errors, but "no error" is: perfection is not the goal); else
   UNKNOWN. A level inferred (a known head, an exception token, a weak marker), never one
   the line states, is raised to fatal by a whole word of death (`fatal`, `panic`, the OOM
   killer's `oom-kill`, `out of memory`, `OutOfMemoryError`, `segmentation fault`). Level names
   map as `CRITICAL`/`EMERG`/`ALERT`/`PANIC` → fatal, `SEVERE` → error, `NOTICE`/`LOG` →
   info, `TRACE` → debug.

Output is ordered by timestamp (stable for equal timestamps).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import islice
from operator import attrgetter
from typing import Any, Final, Protocol

from shared import logfmt
from shared.schemas import Entry, FlattenCounts, Level, RawLine

CHUNK_ENTRIES: Final = 20_000
JOIN_WINDOW_NS: Final = 1_000_000_000
"""A continuation joins an event only within this time of the event's first line."""
MAX_EVENT_LINES: Final = 100
MAX_EVENT_CHARS: Final = 16 * 1024
MAX_FIELD_CHARS: Final = 2_000
MAX_SUMMARY_CHARS: Final = 200
"""Longest `error=...` summary appended to a structured message."""
MAX_DESCRIBED_FIELDS: Final = 6
"""Descriptive fields of a structured line added to its message, at most."""
MAX_DESCRIBED_CHARS: Final = 80

_LEVEL_NAMES: Final[dict[str, Level]] = {
    **dict.fromkeys(
        ("fatal", "panic", "dpanic", "critical", "crit", "emerg", "emergency", "alert", "f"),
        Level.FATAL,
    ),
    **dict.fromkeys(("error", "err", "eror", "severe", "e"), Level.ERROR),
    **dict.fromkeys(("warn", "warning", "w"), Level.WARN),
    **dict.fromkeys(
        ("info", "information", "informational", "notice", "log", "normal", "i"), Level.INFO
    ),
    **dict.fromkeys(("debug", "trace", "verbose", "fine", "finer", "finest", "d"), Level.DEBUG),
}
_SEVERE: Final = frozenset((Level.WARN, Level.ERROR, Level.FATAL))

# `type` comes last: Kubernetes events carry their kind there (`Normal`, `Warning`).
_LEVEL_KEYS: Final = (
    "level",
    "lvl",
    "severity",
    "levelname",
    "loglevel",
    "log.level",
    "@l",
    "type",
)
_MESSAGE_KEYS: Final = ("msg", "message", "@m", "event", "log", "text")
# Kept in `Entry.fields`; a dict value (ECS `error: {message, type, stack_trace}`) is kept
# one level deep as `error.message`, `error.type`, ...; `error.message` is the message of
# last resort.
_ERROR_KEYS: Final = (
    "error",
    "err",
    "exception",
    "exc_info",
    "traceback",
    "stack",
    "stacktrace",
    "stack_trace",
    "panic",
    "caller",
    "error.message",
    "error.type",
    "error.kind",
    "error.stack",
    "error.stack_trace",
)
# Fields whose first line (last line for a Python traceback) summarises the error.
_SUMMARY_KEYS: Final = (
    "error",
    "err",
    "error.message",
    "exception",
    "exc_info",
    "traceback",
    "panic",
    "error.type",
)
# Fields that say nothing about what happened (times, ids, where in the code, who logged it):
# left out of the message a structured line is mined from.
_NOISE_KEYS: Final = frozenset(
    """
    time ts timestamp @timestamp @t t date datetime time_local
    trace_id traceid traceId trace span_id spanid spanId dd.trace_id dd.span_id
    request_id requestId req_id reqId x_request_id correlation_id correlationId
    caller logger logger_name name source file line lineno func function method_name
    thread thread_name goroutine pid tid hostname host service service_name app
    application version env environment component module
    """.split()
)
# Fields whose values name the problem: kept unmasked (a status 503 is not a 200).
_KEEP_KEYS: Final = frozenset(
    """
    status status_code statusCode http_status code error_code errorCode exit_code
    exitCode grpc_code grpc_status sqlstate errno reason
    """.split()
)
_LEVEL_ROLE, _MESSAGE_ROLE, _ERROR_ROLE = 0, 1, 2
# What a known key is for, and its priority within its role (lower wins).
_ROLES: Final[dict[str, tuple[int, int]]] = {
    **{name: (_LEVEL_ROLE, rank) for rank, name in enumerate(_LEVEL_KEYS)},
    **{name: (_MESSAGE_ROLE, rank) for rank, name in enumerate(_MESSAGE_KEYS)},
    **{name: (_ERROR_ROLE, rank) for rank, name in enumerate(_ERROR_KEYS)},
}
_LOG_LEVEL_RANK: Final = _LEVEL_KEYS.index("log.level")

_TRACEBACK: Final = "Traceback (most recent call last)"
_HEADS: Final[dict[str, Level]] = {
    _TRACEBACK: Level.ERROR,
    "panic: ": Level.FATAL,
    "fatal error: ": Level.FATAL,
    "Exception in thread ": Level.ERROR,
    "Caused by: ": Level.ERROR,
    "Error: ": Level.ERROR,
    "Warning: ": Level.WARN,
}
_HEAD_PREFIXES: Final = tuple(_HEADS)
_KLOG_LEVELS: Final = {"I": Level.INFO, "W": Level.WARN, "E": Level.ERROR, "F": Level.FATAL}
_GO_HEADS: Final = ("panic: ", "fatal error: ", "goroutine ")
_GO_BODY: Final = ("goroutine ", "created by ", "[signal ", "exit status ", "...", "panic: ")
_PY_CHAIN: Final = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)
_FIRST_CONTINUATIONS: Final = ("Caused by: ", "Suppressed: ", "... ", _TRACEBACK, "goroutine ")
_DUMP_HEADS: Final = ("panic: ", "fatal error: ", "Exception in thread ")
_PG_SECONDARY: Final = (" DETAIL:  ", " HINT:  ", " STATEMENT:  ", " CONTEXT:  ", " QUERY:  ")
_EXCEPTION_TOKEN_ENDS: Final = ("Exception:", "Error:", "Exception", "Error")

# One pass finds the leftmost strong marker. The look-behind keeps `x.ERROR` and `xERROR`
# out, the look-ahead `ERROR_COUNT` and `ERROR=`; `LOG` counts only as Postgres's `LOG:`.
# The group that matched names the level (see `_LEVEL_NAMES`).
_STRONG_RE: Final = re.compile(
    r"(?<![\w.])(?:"
    r"(FATAL|PANIC|CRITICAL|CRIT|ERROR|ERR|SEVERE|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE)(?![\w=])"
    r"|(LOG)(?=:)"
    r"|\[ ?(emerg|alert|crit|error|warn|warning|notice|info|debug)\]"
    r"|(?:level|lvl|severity)=\"?(\w+)"
    r")"
)
# Not inside a path, a URL or a compound name (`/error-pages/404`, `error_rate=0`).
_WEAK_RE: Final = re.compile(
    r"(?<![\w/.-])(error|exception|failed|failure|fatal|panic|warn|warning)(?![\w=/.-])"
)
_WEAK_LEVELS: Final = {
    "error": Level.ERROR,
    "exception": Level.ERROR,
    "failed": Level.ERROR,
    "failure": Level.ERROR,
    "fatal": Level.FATAL,
    "panic": Level.FATAL,
    "warn": Level.WARN,
    "warning": Level.WARN,
}
# Substring tests are far cheaper than the regex, which only runs when one matches.
_WEAK_HINTS: Final = ("err", "fail", "warn", "exception", "fatal", "panic")
# Words of death, whole words only: they raise a level the line's shape implied (an
# exception class, a weak word), never one the line states (`INFO ... -XX:+HeapDumpOn...`).
_DEATH_RE: Final = re.compile(
    r"(?i)(?<![\w+-])(?:fatal|panic|panicked|oom[- ]?kill\w*|out of memory|segmentation fault"
    r"|outofmemory(?:error)?)(?![\w-])"
)
_DEATH_HINTS: Final = ("fatal", "panic", "oom", "memory", "segmentation")

# A raised exception named by its module path, whatever its class is called:
# `psycopg2.errors.DiskFull:`, `requests.exceptions.ConnectionError:`, `sqlalchemy.exc.X:`.
_DOTTED_EXCEPTION_RE: Final = re.compile(
    r"(?:[a-z_][\w]*\.)*(?:errors|exceptions|exc|error)\.(?:[a-z_][\w]*\.)*[A-Z]\w*:$"
)
# An exception line whose class says so: `OSError: [Errno 30] ...`, `pkg.errors.DiskFull:`.
_BARE_EXCEPTION_RE: Final = re.compile(
    r"(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Warning)(?::|$)"
    r"|(?:[a-z_][\w]*\.)*(?:errors|exceptions|exc)\.[A-Z]\w*:"
)
# A Python exception line: `ValueError: x`, `pkg.mod.CustomError`, `KeyboardInterrupt`.
_PY_EXCEPTION_RE: Final = re.compile(r"[A-Za-z_][\w.]*(?::|$)")
# A Java/Kotlin exception line: a qualified class name ending in Exception/Error/Throwable.
_JAVA_EXCEPTION_RE: Final = re.compile(
    r"(?:[a-z_$][\w$]*\.)+(?:[A-Z][\w$]*)?(?:Exception|Error|Throwable)(?::|$)"
)
# Python traceback states of an event.
_PY_NONE, _PY_BODY, _PY_DONE, _PY_CHAINED = 0, 1, 2, 3

_BY_TS: Final = attrgetter("ts_ns")
# `raw_decode` skips `json.loads`'s whitespace handling: about twice as fast on short lines.
_decode_json: Final = json.JSONDecoder().raw_decode

_Stream = tuple[str, str, str]


class _Event:
    """The multi-line state of an entry: joined lines, caps, traceback/panic parsing."""

    __slots__ = ("entry", "parts", "lines", "chars", "dropped", "py", "go", "tb_head", "exc_at")

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.parts: list[str] = []
        self.lines = 1
        self.chars = len(entry.message)
        self.dropped = 0
        self.py = _PY_NONE
        self.go = False
        self.tb_head = False
        self.exc_at = -1  # index in `parts` of the Python exception line, -1 if not kept

    def add(self, text: str) -> bool:
        """Append one continuation line; False when the caps swallowed it."""
        size = len(text) + 1
        if self.dropped or self.lines >= MAX_EVENT_LINES or self.chars + size > MAX_EVENT_CHARS:
            self.dropped += 1
            return False
        self.parts.append(text)
        self.lines += 1
        self.chars += size
        return True

    def finish(self) -> None:
        """Put the joined lines into the entry's message."""
        entry = self.entry
        body = self.parts
        if not body and not self.dropped:
            return
        exc = entry.fields.get("exception") if self.tb_head else None
        if exc is not None:
            if self.exc_at >= 0:
                del body[self.exc_at]
            lines = [exc, entry.message, *body]
        else:
            lines = [entry.message, *body]
        if self.dropped:
            lines.append(f"[... {self.dropped} more lines truncated]")
        entry.message = "\n".join(lines).rstrip()


def may_be_multiline(text: str) -> bool:
    """Whether a line a filter kept may belong to a multi-line event whose other lines the
    filter dropped: a continuation (a frame, `Caused by:`), the head of a dump (a Python
    traceback, a Go panic) or an exception line, which ends a Python traceback and opens a
    Java stack trace. The query stage reads such a line's neighbours too."""
    if not text:
        return False
    if text[0] in " \t" or text.startswith(_FIRST_CONTINUATIONS + _DUMP_HEADS):
        return True
    return _BARE_EXCEPTION_RE.match(text) is not None or _JAVA_EXCEPTION_RE.match(text) is not None


class Flattener:
    """Flattens lines fed oldest first, a chunk at a time (streams interleaved).

    An entry comes out once no later line can join it: when the input has moved more than
    `JOIN_WINDOW_NS` past its first line. So only the last second of entries is held.
    """

    def __init__(self) -> None:
        self._open: dict[_Stream, Entry] = {}
        # Most entries stay one line, so the multi-line state is only built when needed.
        self._states: dict[_Stream, _Event] = {}
        self._events: dict[int, _Event] = {}  # id(entry) -> its state, while it is pending
        self._pending: deque[Entry] = deque()
        self._latest = 0
        self.lines = 0

    def feed(self, lines: Iterable[RawLine]) -> list[Entry]:
        """Take more lines; the entries that are now complete, ordered by time."""
        open_entries, states = self._open, self._states
        for raw in lines:
            self.lines += 1
            self._latest = max(self._latest, raw.ts_ns)
            text = raw.line
            if text and text[-1] in "\r\n":
                text = text.rstrip("\r\n")
            labels = raw.labels
            key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
            entry = open_entries.get(key)
            if entry is not None and raw.ts_ns - entry.ts_ns <= JOIN_WINDOW_NS:
                event = states.get(key)
                if event is not None:
                    if _join(event, text):
                        continue
                elif _may_continue(entry, text):
                    event = _Event(entry)
                    if _join(event, text):
                        states[key] = event
                        self._events[id(entry)] = event
                        continue
            if not text or text.isspace():
                continue
            entry, event = _start(raw.ts_ns, labels, key, text)
            entry.weight = raw.weight
            open_entries[key] = entry
            self._pending.append(entry)
            if event is None:
                states.pop(key, None)
            else:
                states[key] = event
                self._events[id(entry)] = event
        return self._release(self._latest - JOIN_WINDOW_NS)

    def close(self) -> list[Entry]:
        """The entries still held, ordered by time (the input has ended)."""
        return self._release(None)

    def _release(self, before_ns: int | None) -> list[Entry]:
        out: list[Entry] = []
        pending = self._pending
        while pending and (before_ns is None or pending[0].ts_ns < before_ns):
            entry = pending.popleft()
            event = self._events.pop(id(entry), None)
            if event is not None:
                event.finish()
            out.append(entry)
        out.sort(key=_BY_TS)
        return out


def flatten(lines: Iterable[RawLine]) -> list[Entry]:
    """Turn raw lines (oldest first, streams interleaved) into entries ordered by time."""
    flattener = Flattener()
    entries = flattener.feed(lines)
    entries += flattener.close()
    entries.sort(key=_BY_TS)
    return entries


def _may_continue(entry: Entry, text: str) -> bool:
    """Cheap pre-check for a one-line entry: could `text` be its first continuation?"""
    if not text:
        return False
    first = text[0]
    if first == " " or first == "\t":
        return True
    if first.isdigit():  # a timestamped line continues only as a Postgres `DETAIL:` & co.
        return ":  " in text
    if text.startswith(_FIRST_CONTINUATIONS):
        return True
    if entry.level not in _SEVERE:
        return False
    # A bare exception line: Java's `java.lang.X: ...`, or Python's `OSError: ...` when a
    # line filter kept the head and the last line of a traceback but not the frames.
    return first.islower() or _BARE_EXCEPTION_RE.match(text) is not None


def _join(event: _Event, text: str) -> bool:
    """Append `text` to `event` if it continues it; the rules are in the module docstring."""
    if not text or text.isspace():
        if event.py or event.go:
            event.add(text)
            return True
        return False
    first = text[0]
    if first == " " or first == "\t":
        event.add(text)
        return True
    if event.py:
        return _join_python(event, text)
    if event.go:
        if text.startswith(_GO_BODY) or _is_go_frame(text):
            event.add(text)
            return True
        return False
    if first == "{":
        return False
    fields = event.entry.fields
    if text.startswith("Caused by: "):
        fields["cause"] = text[11 : 11 + MAX_FIELD_CHARS]
        event.add(text)
        return True
    if text.startswith("Suppressed: ") or text.startswith("... ") and text.endswith(" more"):
        event.add(text)
        return True
    if ":  " in text and any(marker in text for marker in _PG_SECONDARY):
        event.add(text)
        return True
    if event.entry.level not in _SEVERE:
        return False
    if text.startswith(_TRACEBACK):
        event.py = _PY_BODY
        event.add(text)
        return True
    if text.startswith("goroutine ") and "[" in text:
        event.go = True
        event.add(text)
        return True
    if event.lines == 1 and (_JAVA_EXCEPTION_RE.match(text) or _BARE_EXCEPTION_RE.match(text)):
        fields.setdefault("exception", text[:MAX_FIELD_CHARS])
        event.add(text)
        return True
    return False


def _join_python(event: _Event, text: str) -> bool:
    """Continue a Python traceback: chained tracebacks, markers, the final exception line."""
    if text.startswith(_TRACEBACK):
        if event.py == _PY_DONE:  # a second, unrelated traceback
            return False
        event.py = _PY_BODY
        event.add(text)
        return True
    if text.startswith(_PY_CHAIN):
        event.py = _PY_CHAINED
        event.add(text)
        return True
    if event.py == _PY_BODY and _PY_EXCEPTION_RE.match(text):
        if text.split(":", 1)[0].isupper():  # `INFO:` or `ERROR:` starts a new log line
            return False
        event.py = _PY_DONE
        # The last exception of a chain is the one that was raised: it wins.
        event.entry.fields["exception"] = text[:MAX_FIELD_CHARS]
        event.exc_at = len(event.parts) - 1 if event.add(text) else -1
        return True
    return False


def _is_go_frame(text: str) -> bool:
    """`main.(*Server).handle(0xc000010000, {0x1, 0x2})`: a call with no space before `(`."""
    paren = text.find("(")
    return paren > 0 and text.endswith(")") and " " not in text[:paren]


def _start(
    ts_ns: int, labels: Mapping[str, str], key: _Stream, text: str
) -> tuple[Entry, _Event | None]:
    """A new entry whose head line is `text`, and its multi-line state if the head needs one."""
    fields: dict[str, str] = {}
    message = text
    structured: Mapping[str, Any] | None = None
    first = text[0]
    if first == "{":
        try:
            obj, end = _decode_json(text)
        except ValueError:
            obj, end = None, 0
        if isinstance(obj, dict) and (end == len(text) or text[end:].isspace()):
            structured = obj
    elif first.isalpha() or first == "_":
        eq = text.find("=")
        if eq > 0:
            space = text.find(" ")
            if space == -1 or eq < space:
                parsed = logfmt.parse(text)
                structured = parsed.pairs if parsed.is_structured() else None

    level: Level | None
    keep = ""
    if structured is not None:
        level, message, fields, keep = _from_fields(structured, text)
        if level is None:
            level = _LEVEL_NAMES.get(labels.get("detected_level", ""))
        if level is None and any(name in fields for name in _SUMMARY_KEYS):
            level = Level.ERROR
        if level is None:
            level = _plain_level(message) or _weak_level(message) or Level.UNKNOWN
    else:
        level = (
            _plain_level(text)
            or _LEVEL_NAMES.get(labels.get("detected_level", ""))
            or _weak_level(text)
            or Level.UNKNOWN
        )

    if len(message) > MAX_EVENT_CHARS:
        message = message[:MAX_EVENT_CHARS]
    entry = Entry(ts_ns, key[0], key[1], key[2], labels.get("node", ""), level, message, fields)
    if structured is not None:
        entry.keep, entry.raw = keep, text
        return entry, None
    event: _Event | None = None
    if text.startswith(_TRACEBACK):
        event = _Event(entry)
        event.py = _PY_BODY
        event.tb_head = True
    elif text.startswith(_GO_HEADS):
        event = _Event(entry)
        event.go = True
    elif text.startswith("Exception in thread "):
        quote = text.find('" ', 20)
        if quote > 0:
            fields["exception"] = text[quote + 2 : quote + 2 + MAX_FIELD_CHARS]
    return entry, event


def _plain_level(text: str) -> Level | None:
    """Level from the strong markers of a plain line, or None."""
    if text.startswith(_HEAD_PREFIXES):
        for prefix, level in _HEADS.items():
            if text.startswith(prefix):
                return _raised(level, text)
    first = text[:1]
    if first in _KLOG_LEVELS and text[5:6] == " " and text[1:5].isdigit():
        return _KLOG_LEVELS[first]
    match = _STRONG_RE.search(text)
    if match is not None:
        found = _LEVEL_NAMES.get(match.group(match.lastindex or 0).lower())
        if found is not None:
            return found
    space = text.find(" ")
    token = text if space < 0 else text[:space]
    if token.endswith(_EXCEPTION_TOKEN_ENDS) or _DOTTED_EXCEPTION_RE.match(token):
        return _raised(Level.ERROR, text)
    if "panicked at" in text:  # Rust: thread 'main' panicked at src/main.rs:10:5
        return Level.FATAL
    return None


def _weak_level(text: str) -> Level | None:
    """Level from a lower-case word such as `error` or `failed`, or None."""
    low = text.lower()
    for hint in _WEAK_HINTS:
        if hint in low:
            match = _WEAK_RE.search(low)
            return None if match is None else _raised(_WEAK_LEVELS[match.group(1)], low)
    return None


def _raised(level: Level, text: str) -> Level:
    """A level inferred from the line's shape or words, raised to fatal by a word of death."""
    if level is Level.FATAL:
        return level
    low = text.lower()
    if any(hint in low for hint in _DEATH_HINTS) and _DEATH_RE.search(text):
        return Level.FATAL
    return level


def _from_fields(obj: Mapping[str, Any], raw: str) -> tuple[Level | None, str, dict[str, str], str]:
    """Level, message, error fields and the fields kept unmasked of a JSON object or logfmt
    pairs. The message is the message field followed by the descriptive fields."""
    # One pass over the object's own keys: cheaper than probing for every known key.
    level: Level | None = None
    level_rank = len(_LEVEL_KEYS)
    message: str | None = None
    message_rank = len(_MESSAGE_KEYS)
    fields: dict[str, str] = {}
    described: list[str] = []
    kept: list[str] = []
    for name, value in obj.items():
        role = _ROLES.get(name)
        if role is None:
            if name not in _NOISE_KEYS and isinstance(value, str | int | float | bool):
                pair = _render_pair(name, value)
                if name in _KEEP_KEYS:
                    kept.append(pair)
                elif len(described) < MAX_DESCRIBED_FIELDS:
                    described.append(pair)
            continue
        kind, rank = role
        if kind == _ERROR_ROLE:
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    _keep(fields, f"{name}.{sub}", sub_value)
            else:
                _keep(fields, name, value)
        elif kind == _LEVEL_ROLE:
            if rank < level_rank:
                found = _level_of(value)
                # Kubernetes events call every abnormal event `Warning`: let the words of a
                # `type=Warning` event decide (`Failed to pull image` is an error).
                if found is Level.WARN and name == "type":
                    found = None
                if found is not None:
                    level, level_rank = found, rank
        elif isinstance(value, str):
            if value and rank < message_rank:
                message, message_rank = value, rank
        elif name == "log" and isinstance(value, dict) and _LOG_LEVEL_RANK < level_rank:
            found = _level_of(value.get("level"))  # ECS: {"log": {"level": "error"}}
            if found is not None:
                level, level_rank = found, _LOG_LEVEL_RANK

    keep = " ".join(kept)
    if message is None:
        message = fields.get("error.message")
    if message is None:
        # No message field: the descriptive fields are the message, or the line itself.
        return level, " ".join(described) if described or kept else raw, fields, keep
    if described:
        message = f"{message} {' '.join(described)}"
    for name in _SUMMARY_KEYS:
        error = fields.get(name)
        if error is not None:
            summary = _summarize(error)
            if summary and summary not in message:
                message = f"{message} error={summary}"
            break
    return level, message, fields, keep


def _render_pair(name: str, value: str | int | float | bool) -> str:
    """`name=value`, quoted when the value has spaces, cut to MAX_DESCRIBED_CHARS."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    text = text[:MAX_DESCRIBED_CHARS].replace("\n", " ")
    if not text or " " in text or '"' in text:
        return f'{name}="{text.replace(chr(34), chr(39))}"'
    return f"{name}={text}"


def _level_of(value: Any) -> Level | None:
    """Level from a field value: a name (`warn`, `ERROR`) or a pino/bunyan number."""
    if isinstance(value, str):
        found = _LEVEL_NAMES.get(value)
        return found if found is not None else _LEVEL_NAMES.get(value.strip().lower())
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 60:
            return Level.FATAL
        if value >= 50:
            return Level.ERROR
        if value >= 40:
            return Level.WARN
        if value >= 30:
            return Level.INFO
        if value >= 10:
            return Level.DEBUG
    return None


def _keep(fields: dict[str, str], name: str, value: Any) -> None:
    """Store a non-empty field value as a string of at most `MAX_FIELD_CHARS`."""
    if value is None or value is False or value == "":
        return
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    else:
        text = str(value)
    fields[name] = text[:MAX_FIELD_CHARS]


def _summarize(error: str) -> str:
    """One line naming the error: the last line of a Python traceback, else the first."""
    text = error.strip()
    if text.startswith(_TRACEBACK) or "\n" + _TRACEBACK in text:
        line = text.rsplit("\n", 1)[-1].strip()
    else:
        line = text.split("\n", 1)[0].strip()
    return line[:MAX_SUMMARY_CHARS]


class EntrySink(Protocol):
    """Where flatten puts its entries (Redis for a job; memory for the eval and tests)."""

    def put_entries(self, part: str, entries: list[Entry]) -> None:
        """Store one batch of `part`'s entries (batches in time order)."""


def flatten_into(lines: Iterable[RawLine], sink: EntrySink, part: str) -> tuple[int, int]:
    """Flatten `lines` into `sink` in batches of about CHUNK_ENTRIES; (lines, entries)."""
    flattener = Flattener()
    batch: list[Entry] = []
    entries = 0
    source = iter(lines)
    while chunk := list(islice(source, CHUNK_ENTRIES)):
        batch += flattener.feed(chunk)
        if len(batch) >= CHUNK_ENTRIES:
            sink.put_entries(part, batch)
            entries += len(batch)
            batch = []
    batch += flattener.close()
    if batch:
        sink.put_entries(part, batch)
        entries += len(batch)
    return flattener.lines, entries


def run(
    lines: Iterable[RawLine], previous: Iterable[RawLine] | None, sink: EntrySink
) -> FlattenCounts:
    """The flatten stage: the window's entries (and the window before's) into `sink`."""
    read, entries = flatten_into(lines, sink, "current")
    earlier = None if previous is None else flatten_into(previous, sink, "previous")[1]
    return FlattenCounts(lines=read, entries=entries, previous_entries=earlier)
