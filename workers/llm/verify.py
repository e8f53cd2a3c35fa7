"""Check a model's answer against what it was given, deterministically and without I/O.

`verify` finds the answer's concrete claims and looks each up in the evidence (template ids,
templates, examples, pods, containers, times and counts), the findings and the request
(namespace, filters, window, question). A claim found nowhere makes its sentence
unsupported. Claims are found in this order, and a later kind never overlaps an earlier one
(the digits inside a quoted line are part of the quote, not claims of their own):

- `quote`: text between double quotes, curly quotes or backticks (3 characters or more, not
  a bare template id). Supported when it occurs in the evidence, not inside a longer word
  (case and runs of whitespace ignored), when a whole template matches inside it, or when it
  is a piece of a template copied with its `<*>`. A quoted line with a value no example
  shows is unsupported.
- `url`, `ip` (IPv4, with an optional port), `path` (starting with `/`), `hostname` (dotted
  lower-case names whose last label is not a file extension), `identifier` (UUIDs, hex ids of
  8+ characters, names mixing letters and digits joined by `-` or `_` such as pod names,
  versions such as `3.7.8`, names after a kind word such as `secret orders-db`):
  supported when the same text occurs in the evidence as a whole token. Case is ignored
  (host names are case-insensitive, and ids are printed in either case).
- `redacted`: a redaction marker such as `<redacted:jwt>`. The evidence never holds the
  secret, so the marker is supported when the evidence shows the same marker.
- `timestamp` (a date, with a time of day or not: ISO 8601 or with a space, `11/24/2026`
  (month first unless that cannot be), `24/Nov/2026:10:20:03` as access logs write it,
  `Nov 24 2026`; any offset or `Z`/`UTC`; no zone is read as UTC, the zone of the
  evidence) and `time` (a time of day alone). Each has a precision (day, minute, second,
  fraction). Supported when an instant of the evidence (`first_seen`/`last_seen`, the
  findings' times, the window, and times written in examples) is the same at the coarser of
  the two precisions: `14:02` matches
  `14:02:11.5`, `14:02:11.123` matches an example written `14:02:11`, `14:03` does not match
  `14:02:59`. A time of day alone is compared with the evidence's times of day.
- `error_code`: errno names (`ECONNREFUSED`), HTTP status codes after `HTTP`, `status`,
  `code` or `returned` or before `response`, `status` or `error`, codes such as
  `ORA-00942`, `SQLSTATE 57P03`, `exit code N` and `error code N`. Supported when the
  code occurs in the evidence as a token.
- `number`: a number with a unit (`30 s`, `1,204 errors`, `95%`, `512 MiB`). Thousands
  separators are dropped; durations are compared in seconds (`30000ms` is `30 s`); sizes in
  bytes within their family (`MB` is 1000², `MiB` 1024²); a count (`times`, `errors`,
  `lines`, ...) is supported by the same number anywhere in the evidence, counts of the
  templates and findings included; a percentage by the same percentage. `x42`, as the
  prompt's findings write a template's count, is backed only by a template's count.

Bare numbers without a unit are not claims (list markers, step numbers). The grounding score
is supported claims / claims; with no claim it is 1.0: the answer asserts nothing that the
evidence contradicts, and its verdict then rests on citations and on the answer being whole.
The verdict is `unverified` when the answer is empty, grounding is below the threshold, a
cited template id is not in the evidence, or the answer degenerated (cut by the repetition
guard, or still repeating itself); `verified` when every claim is supported; else
`partly_supported`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

from shared.schemas import (
    AnalysisRequest,
    Claim,
    EvidenceItem,
    Findings,
    TextSpan,
    Verification,
)
from shared.schemas.verification import ClaimKind
from workers.llm.answer import check_citations, repetition_start

DEFAULT_THRESHOLD = 0.6

# --- claim patterns, in the order they are looked for ------------------------------------

_QUOTE = re.compile(r'"([^"\n]{1,300})"|“([^”\n]{1,300})”|`([^`\n]{1,300})`')
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s<>\"'`)\]]+", re.I)
_DATE = r"\d{4}-\d{2}-\d{2}"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?"
_ZONE = r"(?:\s?(?:Z|UTC|GMT)\b|Z|\s?[+-]\d{2}:?\d{2}\b)?"
_US_DATE = r"\d{1,2}/\d{1,2}/\d{4}"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
# `17/Nov/2026:13:00:01` (access logs), `Nov 18 2026`, `Nov 18, 2026`, `18 Nov 2026`.
_NAMED_DATE = (
    rf"\d{{1,2}}/{_MONTH}/\d{{4}}(?=[:\s\]]|$)"
    rf"|{_MONTH} \d{{1,2}},? \d{{4}}|\d{{1,2}} {_MONTH},? \d{{4}}"
)
_TIMESTAMP = re.compile(
    rf"(?i)\b(?:{_DATE}|{_US_DATE}|{_NAMED_DATE})(?:[T :]{_CLOCK}{_ZONE})?(?![\d/])"
)
_TIME = re.compile(rf"(?<![\w:.]){_CLOCK}{_ZONE}(?![\d:])")
_IP = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.]*\w)")
_REDACTED = re.compile(r"<redacted:[a-z0-9_-]+>")
_PATH = re.compile(r"(?<![\w/.:<>-])/(?:[\w.@%+~-]+/)*[\w.@%+~-]+/?")
_ERRNO = (
    "ACCES|ADDRINUSE|ADDRNOTAVAIL|AGAIN|AI_AGAIN|BUSY|CONNABORTED|CONNREFUSED|CONNRESET|DQUOT"
    "|EXIST|HOSTUNREACH|INVAL|IO|ISDIR|MFILE|NETUNREACH|NFILE|NOENT|NOMEM|NOSPC|NOTCONN"
    "|NOTDIR|NOTFOUND|PERM|PIPE|PROTO|ROFS|TIMEDOUT"
)
_ERROR_CODE = re.compile(
    rf"\bE(?:{_ERRNO})\b"
    r"|\b[A-Z]{2,5}-\d{3,5}\b|(?<=SQLSTATE )[0-9A-Z]{5}\b"
    r"|(?<=HTTP )[1-5]\d\d\b|(?<=HTTP/1\.1 )[1-5]\d\d\b|(?<=HTTP/2 )[1-5]\d\d\b"
    r"|(?<=status )[1-5]\d\d\b|(?<=status=)[1-5]\d\d\b|(?<=status: )[1-5]\d\d\b"
    r"|(?<=status code )[1-5]\d\d\b|(?<=code )[1-5]\d\d\b|(?<=code=)[1-5]\d\d\b"
    r"|(?<=code: )[1-5]\d\d\b"
    r"|(?<=returned )[1-5]\d\d\b|(?<=returns )[1-5]\d\d\b"
    r"|(?<=exit code )\d{1,3}\b|(?<=exit status )\d{1,3}\b"
    r"|(?<=error code )\d{1,4}\b|(?<=errno )\d{1,4}\b"
    r"|(?<![\w.:/-])[1-5]\d\d(?= (?:response|responses|status|error)\b)",
    re.I,
)
_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "day": 86400.0,
    "days": 86400.0,
}
_BYTES = {
    "b": ("si", 1),
    "byte": ("si", 1),
    "bytes": ("si", 1),
    "kb": ("si", 1000),
    "mb": ("si", 1000**2),
    "gb": ("si", 1000**3),
    "tb": ("si", 1000**4),
    "kib": ("iec", 1024),
    "mib": ("iec", 1024**2),
    "gib": ("iec", 1024**3),
    "tib": ("iec", 1024**4),
}
_COUNTS = (
    "times|occurrences|errors|warnings|lines|events|messages|requests|connections|retries|"
    "attempts|restarts|failures|timeouts|entries|pods|clients|exceptions|panics|req/s|rps|qps"
)
_UNITS = sorted([*_SECONDS, *_BYTES, "%", "percent", *_COUNTS.split("|")], key=len, reverse=True)
_NUMBER = re.compile(
    r"(?<![\w.,:/-])~?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s?("
    + "|".join(re.escape(u) for u in _UNITS)
    + r"|[a-z]{3,}s)(?![\w/])",  # any other plural noun counts something too
    re.I,
)
# `T2 ERROR x42`: a count written as the prompt's findings write it.
_TIMES = re.compile(r"(?<![\w.])x(\d{1,3}(?:,\d{3})+|\d+)(?![\w.])")
# `latency_ms=6640`, `"limit_mib":2048`: a value whose unit is in its field's name.
_FIELD_UNIT = re.compile(
    r"[a-z]_(ms|s|sec|seconds|mib|mb|gib|gb|kib|kb|bytes)\"?\s?[:=]\s?\"?(\d+(?:\.\d+)?)\b", re.I
)
# Where a number in the evidence is an HTTP status: after status/code/HTTP/returned, or
# before its reason phrase.
_STATUS_BEFORE = r"(?:status|code|http/[\d.]+\"?|returned|returns|statuscode)\W{0,4}"
_REASONS = (
    "ok|created|accepted|no content|moved|found|not modified|bad request|unauthorized|"
    "forbidden|not found|conflict|gone|too many requests|internal server error|bad gateway|"
    "service unavailable|gateway timeout|payload too large|request timeout"
)
# Names of Kubernetes objects and other resources, told by the kind before them.
_NAMED = re.compile(
    r"\b(?:secret|configmap|pod|deployment|service|statefulset|daemonset|container|node|"
    r"namespace|job|cronjob|ingress|topic|queue|bucket|table|database|image|volume|pvc) "
    r"([a-z0-9]+(?:-[a-z0-9]+)+)\b",
    re.I,
)
# A number standing alone (`count=31`, `31 times`), not a piece of a time, a date, an address
# or an id: only those may back a count.
_ANY_NUMBER = re.compile(r"(?<![\w.:/-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w/-]|[.:]\d)")
_FILE_EXTENSIONS = frozenset(
    "py js ts go rs java kt rb php c h cc cpp cs sh yaml yml json toml ini conf cfg txt log md"
    " html xml sql jar so properties env lock gz zip tar pem crt key".split()
)
_HOSTNAME = re.compile(
    r"(?<![\w.@/-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]"
    r"(?::\d{1,5})?(?![\w-]|\.\w)"
)
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_IDENTIFIER = re.compile(
    rf"(?<![\w.-]){_UUID}(?![\w-])"
    r"|(?<![\w.-])(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}(?![\w-])"
    r"|(?<![\w.-])[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+(?![\w-])"
    r"|(?<![\w.-])(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{12,}(?![\w-])"
)
# A version (`3.7.8`, `v2.3.1`, `1.19.2-rc1`): three numbers or more, so not a decimal.
_VERSION = re.compile(r"(?<![\w.-])v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.]+)?(?![\w-]|\.\w)")
_NOT_IDENTIFIERS = frozenset(
    "utf-8 utf-16 sha-1 sha-256 sha-512 x86-64 x86_64 iso-8601 rfc-3339 rfc-3986 ipv4 ipv6"
    " base-64 http-2 tls-1 e2e".split()
)
_TEMPLATE_ID = re.compile(r"T\d{1,4}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class _Instant:
    """A moment of the evidence: the date when it has one, the time of day, and how many
    fractional digits were written (None: a datetime value, exact)."""

    day: date | None
    clock: time
    precision: int  # 0 day, 1 minute, 2 second, 3+ fraction digits + 2


@dataclass
class _Evidence:
    text: str  # lower case, whitespace squashed
    templates: list[list[str]]  # each template's literal parts, split at its `<*>`
    instants: list[_Instant]
    numbers: set[float]
    counts: set[float]  # how often templates were seen, as the evidence and findings say
    seconds: set[float]
    sizes: set[tuple[str, float]]
    percents: set[float]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _value(whole: str, fraction: str | None) -> float:
    return round(float(whole.replace(",", "") + (fraction or "")), 6)


def _parse_instant(text: str) -> _Instant | None:
    """A timestamp or a time of day as written, converted to UTC when it names a zone."""
    named = re.match(
        rf"(?i)(?:(\d{{1,2}})[/ ]({_MONTH})|({_MONTH}) (\d{{1,2}}))[/ ,]+(\d{{4}})", text
    )
    if named is not None:
        month = _MONTHS.index((named[2] or named[3])[:3].lower()) + 1
        try:
            written = date(int(named[5]), month, int(named[1] or named[4]))
        except ValueError:
            return None
        rest = text[named.end() :]
        text = written.isoformat() + ("T" + rest[1:] if rest[:1] in (":", " ", "T") else rest)
    us = re.match(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if us is not None:  # month first, as in the US; day first when that cannot be a month
        month, day_of_month = int(us[1]), int(us[2])
        if month > 12:
            month, day_of_month = day_of_month, month
        try:
            text = date(int(us[3]), month, day_of_month).isoformat() + text[us.end() :]
        except ValueError:
            return None
    match = re.fullmatch(
        rf"(?P<day>{_DATE})?[T ]?(?:(?P<h>\d{{1,2}}):(?P<m>\d{{2}})"
        r"(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?\s?(?P<z>Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
        text.strip(),
        re.I,
    )
    if match is None or (match["day"] is None and match["h"] is None):
        return None
    try:
        day = date.fromisoformat(match["day"]) if match["day"] else None
        if match["h"] is None:
            return _Instant(day, time(0), 0)
        fraction = match["f"] or ""
        micro = int((fraction + "000000")[:6])
        clock = time(int(match["h"]), int(match["m"]), int(match["s"] or 0), micro)
    except ValueError:
        return None
    precision = 1 if match["s"] is None else 2 + len(fraction)
    zone = (match["z"] or "Z").upper()
    if zone not in ("Z", "UTC", "GMT"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        moment = datetime.combine(day or date(2000, 1, 1), clock, offset).astimezone(UTC)
        clock = moment.time()
        day = moment.date() if day else None
    return _Instant(day, clock, precision)


def _from_datetime(value: datetime) -> _Instant:
    moment = value.astimezone(UTC) if value.tzinfo else value
    return _Instant(moment.date(), moment.time(), 8)


def _truncate(clock: time, precision: int) -> tuple[int, ...]:
    parts = (clock.hour, clock.minute, clock.second, clock.microsecond)
    if precision <= 1:
        return parts[:2]
    if precision == 2:
        return parts[:3]
    digits = min(precision - 2, 6)
    return (*parts[:3], clock.microsecond // 10 ** (6 - digits))


def _same_instant(claim: _Instant, known: _Instant) -> bool:
    precision = min(claim.precision, known.precision)
    if claim.day is not None and (known.day is None or claim.day != known.day):
        # A date-and-time claim may rest on a time of day written without its date, when
        # the evidence holds that date elsewhere (checked by the caller).
        if not (known.day is None and claim.precision > 0):
            return False
    if claim.precision == 0:
        return claim.day == known.day
    if known.precision == 0:
        return False
    return _truncate(claim.clock, precision) == _truncate(known.clock, precision)


def _evidence(
    evidence: Sequence[EvidenceItem],
    findings: Findings | None,
    request: AnalysisRequest | None,
    context: Sequence[str],
) -> _Evidence:
    texts: list[str] = list(context)
    instants: list[_Instant] = []
    numbers: set[float] = set()
    seconds: set[float] = set()
    for item in evidence:
        texts += [item.template_id, item.template, *item.examples, *item.pods, *item.containers]
        texts.append(item.level.value)
        instants += [_from_datetime(item.first_seen), _from_datetime(item.last_seen)]
        numbers.add(float(item.count))
    if findings is not None:
        # What the findings state, not how the window was read (its sampling ranges are
        # bookkeeping: an answer's time that falls on one of their edges is not backed).
        texts += [findings.summary, findings.searched.query, *findings.new_templates]
        if findings.previous_window is not None:
            texts.append(findings.previous_window.note)
        instants += [_from_datetime(findings.searched.start), _from_datetime(findings.searched.end)]
        for cause in findings.probable_causes:
            texts += [cause.template_id, cause.template, *cause.reasons]
            instants.append(_from_datetime(cause.first_seen))
            numbers.add(float(cause.count))
            for follower in cause.followed_by:
                numbers.add(float(follower.count))
                seconds.add(round(follower.after_s, 6))
        for entry in findings.timeline:
            texts.append(entry.template)
            instants += [_from_datetime(entry.first_seen), _from_datetime(entry.last_seen)]
            numbers.add(float(entry.count))
        affected = findings.affected
        for group in (affected.pods, affected.containers, affected.nodes):
            texts += list(group)
            numbers.update(float(n) for n in group.values())
    if request is not None:
        f = request.filters
        texts += [f.namespace, f.pod or "", f.container or "", f.node or ""]
        texts += [request.question or "", request.log_filter or ""]
        instants += [
            _from_datetime(request.time_range.start),
            _from_datetime(request.time_range.end),
        ]
        texts.append(f"{request.limit} {request.scan_limit}")
    joined = "\n".join(texts)
    for pattern in (_TIMESTAMP, _TIME):
        for match in pattern.finditer(joined):
            instant = _parse_instant(match.group())
            if instant is not None:
                instants.append(instant)
    sizes: set[tuple[str, float]] = set()
    percents: set[float] = set()
    measures = [(_value(m[1], m[2]), m[3].lower()) for m in _NUMBER.finditer(joined)]
    measures += [(_value(m[2], None), m[1].lower()) for m in _FIELD_UNIT.finditer(joined)]
    for value, unit in measures:
        if unit in _SECONDS:
            seconds.add(round(value * _SECONDS[unit], 6))
        elif unit in _BYTES:
            family, scale = _BYTES[unit]
            sizes.add((family, round(value * scale, 3)))
        elif unit in ("%", "percent"):
            percents.add(value)
    counts = set(numbers)
    # Every number standing alone may back a count the answer states with its own noun.
    numbers.update(_value(m[1], m[2]) for m in _ANY_NUMBER.finditer(joined))
    templates = [_squash(item.template).split("<*>") for item in evidence if "<*>" in item.template]
    return _Evidence(
        text=_squash(joined),
        templates=templates,
        instants=instants,
        numbers=numbers,
        counts=counts,
        seconds=seconds,
        sizes=sizes,
        percents=percents,
    )


def _wildcard_in(parts: Sequence[str], text: str) -> bool:
    """Whether `text` holds `parts` joined by wildcards that stand for one character or more
    (a template split at its `<*>`). Placing each part at its leftmost possible place finds a
    match whenever there is one, in linear time: no regex backtracking over log text."""
    position = 0  # where the next part may start
    for index, part in enumerate(parts):
        if index > 0:
            position += 1  # the wildcard before this part takes a character at least
        if not part:
            continue
        found = text.find(part, position)
        if found < 0:
            return False
        position = found + len(part)
    return position <= len(text)


def _contains_text(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack`, not as a piece of a longer word (`name` is not found in
    `namespace`)."""
    before = r"(?<!\w)" if needle[:1].isalnum() else ""
    after = r"(?!\w)" if needle[-1:].isalnum() else ""
    return re.search(before + re.escape(needle) + after, haystack) is not None


def _contains_token(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` not glued to more of a word or an id (a code such as
    `500` is not found in `03.500` or `14:500`)."""
    if needle.isdigit():
        pattern = rf"(?<![\w./-])(?<!\d:){needle}(?![\w/-]|[.:]\d)"
        return re.search(pattern, haystack) is not None
    pattern = r"(?<![\w-])" + re.escape(needle) + r"(?![\w-]|\.\w)"
    return re.search(pattern, haystack) is not None


def _supported(kind: ClaimKind, text: str, known: _Evidence) -> bool:
    if kind == "quote":
        needle = _squash(text)
        if _contains_text(known.text, needle) or any(
            _wildcard_in(parts, needle) for parts in known.templates
        ):
            return True
        # A template copied with its `<*>`: each wildcard stands for any text of the evidence.
        return "<*>" in needle and _wildcard_in(needle.split("<*>"), known.text)
    if kind in ("timestamp", "time"):
        instant = _parse_instant(text)
        if instant is None:
            return False
        days = {k.day for k in known.instants if k.day is not None}
        for candidate in known.instants:
            if candidate.day is None and instant.day is not None and instant.day not in days:
                continue
            if (
                _same_instant(instant, candidate)
                if kind == "timestamp"
                else (
                    candidate.precision > 0
                    and _same_instant(_Instant(None, instant.clock, instant.precision), candidate)
                )
            ):
                return True
        return False
    if kind == "number":
        times = _TIMES.fullmatch(text.strip())
        if times is not None:
            return _value(times[1], None) in known.counts
        match = _NUMBER.fullmatch(text.strip())
        if match is None:
            return False
        value, unit = _value(match[1], match[2]), match[3].lower()
        if unit in _SECONDS:
            return round(value * _SECONDS[unit], 6) in known.seconds
        if unit in _BYTES:
            family, scale = _BYTES[unit]
            return (family, round(value * scale, 3)) in known.sizes
        if unit in ("%", "percent"):
            return value in known.percents
        return value in known.numbers
    if kind == "url":
        return text.lower().rstrip(".,;:") in known.text
    if kind == "error_code" and re.fullmatch(r"[1-5]\d\d", text):
        # `page_size=500` is no HTTP 500: the evidence must show the number as a status.
        status = rf"{_STATUS_BEFORE}{text}\b|(?<![\w.:/-]){text} (?:{_REASONS})\b"
        return re.search(status, known.text) is not None
    return _contains_token(known.text, text.lower())


def _claims(answer: str) -> list[tuple[ClaimKind, int, int]]:
    """(kind, start, end) of every claim, earlier kinds taking precedence over overlaps."""
    taken: list[tuple[int, int]] = []
    found: list[tuple[ClaimKind, int, int]] = []

    def add(kind: ClaimKind, start: int, end: int) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append((kind, start, end))

    for match in _QUOTE.finditer(answer):
        group = next(g for g in (1, 2, 3) if match.group(g) is not None)
        inner = match.group(group).strip()
        if not inner or _TEMPLATE_ID.fullmatch(inner) or len(inner) < 3:
            continue
        add("quote", match.start(group), match.end(group))
    ordered: list[tuple[ClaimKind, re.Pattern[str]]] = [
        ("url", _URL),
        ("timestamp", _TIMESTAMP),
        ("ip", _IP),
        ("redacted", _REDACTED),
        ("path", _PATH),
        ("error_code", _ERROR_CODE),
        ("number", _NUMBER),
        ("number", _TIMES),
        ("time", _TIME),
        ("hostname", _HOSTNAME),
        ("identifier", _IDENTIFIER),
        ("identifier", _NAMED),
        ("identifier", _VERSION),
    ]
    for kind, pattern in ordered:
        for match in pattern.finditer(answer):
            start, end = match.span(1 if pattern is _NAMED else 0)
            if kind == "url":
                end -= len(match.group()) - len(match.group().rstrip(".,;:"))
            if kind == "hostname" and match.group().rsplit(".", 1)[-1].split(":")[0] in (
                _FILE_EXTENSIONS
            ):
                continue
            if (
                kind == "identifier"
                and pattern is _IDENTIFIER
                and (match.group().lower() in _NOT_IDENTIFIERS or not _is_identifier(match.group()))
            ):
                continue
            if kind == "identifier" and answer[start:end].lower() in _NOT_IDENTIFIERS:
                continue
            if kind == "path" and match.group().count("/") < 2 and len(match.group()) < 4:
                continue
            add(kind, start, end)
    found.sort(key=lambda claim: claim[1])
    return found


def _is_identifier(text: str) -> bool:
    """A name with digits in it (pod names, request ids), not a word such as `read-only`."""
    if re.fullmatch(_UUID, text) or re.fullmatch(r"[0-9a-fA-F]{8,}", text):
        return True
    if _TEMPLATE_ID.fullmatch(text) or len(text) < 6:
        return False
    if re.fullmatch(r"[A-Za-z0-9]{12,}", text):  # a generated token
        return True
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def sentence_spans(answer: str) -> list[TextSpan]:
    """The answer cut into sentences and lines (Markdown bullets and headings are lines)."""
    spans: list[TextSpan] = []
    start = 0
    for match in _SENTENCE_END.finditer(answer):
        if match.start() > start:
            spans.append(TextSpan(start=start, end=match.start()))
        start = match.end()
    if start < len(answer):
        spans.append(TextSpan(start=start, end=len(answer)))
    return spans


def _unsupported_spans(answer: str, claims: Iterable[Claim]) -> list[TextSpan]:
    sentences = sentence_spans(answer)
    marked: list[TextSpan] = []
    for claim in claims:
        if claim.supported:
            continue
        for sentence in sentences:
            if sentence.start <= claim.start < sentence.end:
                if sentence not in marked:
                    marked.append(sentence)
                break
    return sorted(marked, key=lambda span: span.start)


def verify(
    answer: str,
    *,
    evidence: Sequence[EvidenceItem],
    findings: Findings | None = None,
    request: AnalysisRequest | None = None,
    context: Sequence[str] = (),
    finish_reason: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> Verification:
    """Check `answer` against the evidence the model was given, the findings and the request.

    `context` is any other text the prompt stated (the window's header); `finish_reason`
    `degenerate` means the repetition guard cut the answer.
    """
    known = _evidence(evidence, findings, request, context)
    claims = [
        Claim(
            kind=kind,
            text=answer[start:end],
            start=start,
            end=end,
            supported=_supported(kind, answer[start:end], known),
        )
        for kind, start, end in _claims(answer)
    ]
    supported = sum(claim.supported for claim in claims)
    grounding = supported / len(claims) if claims else 1.0
    citations = check_citations(answer, (item.template_id for item in evidence))
    degenerate = finish_reason == "degenerate" or repetition_start(answer) is not None
    reasons: list[str] = []
    if not answer.strip():
        reasons.append("the answer is empty")
    if grounding < threshold:
        reasons.append(
            f"{len(claims) - supported} of {len(claims)} claims are not in the evidence "
            f"(grounding {grounding:.2f} < {threshold:.2f})"
        )
    if citations.invalid:
        reasons.append("cites templates not in the evidence: " + ", ".join(citations.invalid))
    if degenerate:
        reasons.append("the model began repeating itself and was cut")
    if reasons:
        verdict = "unverified"
    elif supported == len(claims):
        verdict = "verified"
    else:
        verdict = "partly_supported"
        reasons.append(f"{len(claims) - supported} of {len(claims)} claims are not in the evidence")
    return Verification(
        verdict=verdict,
        grounding=round(grounding, 4),
        threshold=threshold,
        claims=claims,
        unsupported_spans=_unsupported_spans(answer, claims),
        cited=citations.valid + citations.invalid,
        invalid_citations=citations.invalid,
        degenerate=degenerate,
        reasons=reasons,
    )
