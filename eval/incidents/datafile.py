"""Cases as data: one YAML file per incident, turned into a `Spec` by one generic builder.

A held-out case is written without Python: its story and source, its expected cause, and its
lines as data. The format (every key below; `eval/heldout/README.md` shows a full example):

```yaml
name: pg-...                     # the file's stem; lower-case words joined by `-`
class: warning-precedes          # one of CLASSES
story: >-                        # what happened, two to five sentences
  ...
source: {title: ..., url: https://...}   # the public postmortem or vendor document it follows
namespace: ho-...                # RFC 1123 label, unique
window: {start: "2026-10-05T09:00:00Z", minutes: 30}   # the request window
scan_limit: 20000                # optional; the service's default
question: ...                    # optional
expected:
  cause: 'regex'                 # re.search on the ROOT cause's template; null: no cause named
  keywords: [...]                # optional: words a correct explanation says
tags: [...]                      # optional
pods:                            # aliases → pod names
  api: {deployment: orders-api, replicas: 2}   # <deployment>-<hash>-<5 chars>, one per replica
  db: {name: postgres-0}                       # a fixed name (StatefulSet pod)
  job: {cronjob: report}                       # <cronjob>-<8 digits>-<5 chars>
streams:
  - pod: api                     # an alias (every replica) or `alias#i` (one replica)
    container: api
    stream: stdout               # default stdout
    restart: 0                   # container restart count (file N.log)
    lines:
      - at: 612.5                # seconds from the window start (negative: window before)
        text: "..."
      - at: [10, 20.5]           # several times
        text: "..."
      - every: 5                 # about every 5 s (jitter ±10 %) over [from, to)
        jitter: 0.1
        from: -1800              # default: the start of the window before
        to: 900                  # default: the end of the window
        text: "..."
      - rate: 2.5                # Poisson arrivals, per second, over [from, to)
        text: "..."
noise:                           # real lines from Loghub-2k (eval/heldout/noise/)
  - loghub: Zookeeper
    pod: zk
    container: zookeeper
    rate: 0.3                    # lines per second over both windows, in file order
```

A `text` with several lines is one multi-line event (a stack trace), written at once. Texts
hold placeholders `${kind}` or `${kind:arg}`, drawn from the case's seeded RNG:

- `${ts:FMT}`: the line's time as the software prints it, FMT in TIME_FORMATS;
- `${int:LO-HI}`, `${num:LO-HI}` (three decimals), `${hex:N}`, `${token:N}`, `${uuid}`,
  `${ip}`, `${choice:a|b|c}`, `${seq}` (1, 2, … per line entry and pod), `${pod}` (this
  stream's pod), `${pod:alias}` (another alias's first pod), `${uid:alias}`.

Every value is drawn from a RNG seeded by the case's name, so a file renders to the same bytes
every time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from eval.incidents.builder import (
    Builder,
    clf,
    go_log,
    http_date,
    iso,
    klog_time,
    pg_time,
    py_time,
    rabbit_time,
    redis_time,
)
from eval.incidents.model import Case, Expected
from eval.incidents.spec import Spec

HELDOUT_DIR = Path(__file__).resolve().parents[1] / "heldout"
"""`cases/<name>.yaml` (one held-out case each) and `noise/` (Loghub-2k lines)."""
NOISE_DIR = HELDOUT_DIR / "noise"
DEV_DIR = Path(__file__).resolve().parents[1] / "dev"
"""`cases/<name>.yaml`: dev (tuning) cases in the same format, looked at freely."""
FINAL_DIR = HELDOUT_DIR / "final"
"""The `final` suite: held-out cases written after the scorer was done (issue 21)."""
DEFAULT_SCAN_LIMIT = 20_000  # the service's default `scan_limit`

CLASSES: dict[str, str] = {
    "warning-precedes": "a warning precedes the errors but repeats more often than they do",
    "slow-precursor": "a precursor begins minutes before the error burst",
    "grows-hundredfold": "seen a few times in the window before, then a hundredfold more",
    "early-new-error": "a new error begins early in the window, absent before",
    "old-one-off": "an unrelated one-off error long before the incident",
    "info-fatal-word": "an INFO line holding a fatal word (a JVM flag) is not the cause",
    "trace-last-part": "a stack trace whose cause is its last part",
    "change-at-info": "a change logged at INFO just before the errors begin",
    "sampled-away": "a single fatal line in a window too large to read whole",
    "fp-healthy": "a healthy window: no cause to name",
    "fp-error-before": "the only error is before the window: no cause to name",
    "fp-steady-loud": "a steady loud error, as loud before: no cause to name",
}
"""The nine failure classes of issue 21, then the false-positive kinds (no cause expected)."""
FALSE_POSITIVE = frozenset(c for c in CLASSES if c.startswith("fp-"))


def _ts_py(at: float) -> str:
    return py_time(at)


def _ts_dot(at: float) -> str:
    return py_time(at).replace(",", ".")


def _ts_es(at: float) -> str:
    return py_time(at).replace(" ", "T")


def _ts_syslog(at: float) -> str:
    d = datetime.fromtimestamp(at, UTC)
    return f"{d:%b} {d.day:>2} {d:%H:%M:%S}"


def _ts_tomcat(at: float) -> str:
    d = datetime.fromtimestamp(at, UTC)
    return f"{d:%d-%b-%Y %H:%M:%S}.{d.microsecond // 1000:03d}"


def _ts_php(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%d-%b-%Y %H:%M:%S}"


def _ts_haproxy(at: float) -> str:
    d = datetime.fromtimestamp(at, UTC)
    return f"{d:%d/%b/%Y:%H:%M:%S}.{d.microsecond // 1000:03d}"


def _ts_mssql(at: float) -> str:
    d = datetime.fromtimestamp(at, UTC)
    return f"{d:%Y-%m-%d %H:%M:%S}.{d.microsecond // 10000:02d}"


TIME_FORMATS: dict[str, Callable[[float], str]] = {
    "iso": iso,  # 2026-11-24T10:20:03.123Z
    "iso0": lambda at: iso(at, 0),  # 2026-11-24T10:20:03Z
    "iso6": lambda at: iso(at, 6),  # 2026-11-24T10:20:03.123456Z (MySQL 8, Go RFC3339Nano-ish)
    "py": _ts_py,  # 2026-11-24 10:20:03,123 (Python logging, log4j ISO8601, Kafka)
    "dot": _ts_dot,  # 2026-11-24 10:20:03.123 (logback, Spring's old default)
    "es": _ts_es,  # 2026-11-24T10:20:03,123 (Elasticsearch's log4j pattern)
    "pg": pg_time,  # 2026-11-24 10:20:03.123 UTC
    "clf": clf,  # 24/Nov/2026:10:20:03 +0000
    "go": go_log,  # 2026/11/24 10:20:03 (Go's log, nginx error log)
    "redis": redis_time,  # 24 Nov 2026 10:20:03.123
    "rabbit": rabbit_time,  # 2026-11-24 10:20:03.123456+00:00
    "klog": klog_time,  # 1124 10:20:03.123456
    "http": http_date,  # Tue, 24 Nov 2026 10:20:03 GMT
    "syslog": _ts_syslog,  # Nov 24 10:20:03
    "ruby": lambda at: iso(at, 6)[:-1],  # 2026-11-24T10:20:03.123456 (Ruby's Logger)
    "tomcat": _ts_tomcat,  # 24-Nov-2026 10:20:03.123 (Tomcat's OneLineFormatter)
    "php": _ts_php,  # 24-Nov-2026 10:20:03 (php-fpm)
    "gunicorn": lambda at: f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S} +0000",
    "haproxy": _ts_haproxy,  # 24/Nov/2026:10:20:03.123 (HAProxy's httplog accept date)
    "mssql": _ts_mssql,  # 2026-11-24 10:20:03.12 (SQL Server's errorlog)
    "epoch": lambda at: f"{at:.3f}",  # 1764578403.123
    "epoch_ms": lambda at: str(int(at * 1000)),  # 1764578403123
}

_PLACEHOLDER = re.compile(r"\$\{(\w+)(?::([^}]*))?\}")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


class CaseFileError(ValueError):
    """Raised when a case file is not well formed; the message names the file and the key."""


@dataclass(frozen=True)
class LineSpec:
    """One entry of a stream: a text and when it is written."""

    text: str
    at: tuple[float, ...] = ()
    every: float | None = None
    rate: float | None = None
    jitter: float = 0.1
    start: float | None = None
    stop: float | None = None


@dataclass(frozen=True)
class StreamSpec:
    """A container's lines: `pod` is an alias (all its replicas) or `alias#i`."""

    pod: str
    container: str
    stream: str
    restart: int
    lines: tuple[LineSpec, ...]


@dataclass(frozen=True)
class NoiseSpec:
    """Real Loghub-2k lines of `system`, in file order, at `rate` per second."""

    system: str
    pod: str
    container: str
    rate: float
    stream: str = "stdout"


@dataclass(frozen=True)
class CaseFile:
    """A parsed case file: the case, what to write, and where it came from."""

    case: Case
    pods: Mapping[str, Mapping[str, Any]]
    streams: tuple[StreamSpec, ...]
    noise: tuple[NoiseSpec, ...] = ()
    path: Path | None = field(default=None, compare=False)


# --- parsing --------------------------------------------------------------------------------


def _need(data: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise CaseFileError(f"{where}: `{key}` is required")
    value = data[key]
    if not isinstance(value, kind):
        raise CaseFileError(f"{where}: `{key}` has the wrong type ({type(value).__name__})")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CaseFileError(f"{where}: expected a number, got {value!r}")
    return float(value)


_LINE_KEYS = frozenset({"text", "at", "every", "rate", "jitter", "from", "to"})
_STREAM_KEYS = frozenset({"pod", "container", "stream", "restart", "lines"})
_NOISE_KEYS = frozenset({"loghub", "pod", "container", "rate", "stream"})
_CASE_KEYS = frozenset(
    {"name", "class", "story", "source", "namespace", "window", "scan_limit", "question"}
    | {"expected", "tags", "pods", "streams", "noise", "forbidden"}
)


def _known(raw: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise CaseFileError(f"{where}: unknown keys {unknown}")


def _line_spec(raw: Any, where: str) -> LineSpec:
    if not isinstance(raw, dict):
        raise CaseFileError(f"{where}: a line entry is a mapping")
    _known(raw, _LINE_KEYS, where)
    text = _need(raw, "text", where, str).rstrip("\n")
    kinds = [k for k in ("at", "every", "rate") if k in raw]
    if len(kinds) != 1:
        raise CaseFileError(f"{where}: give exactly one of `at`, `every`, `rate`")
    at: tuple[float, ...] = ()
    if "at" in raw:
        values = raw["at"] if isinstance(raw["at"], list) else [raw["at"]]
        at = tuple(_number(v, f"{where}.at") for v in values)
    every = _number(raw["every"], f"{where}.every") if "every" in raw else None
    rate = _number(raw["rate"], f"{where}.rate") if "rate" in raw else None
    if (every is not None and every <= 0) or (rate is not None and rate <= 0):
        raise CaseFileError(f"{where}: `every` and `rate` must be positive")
    return LineSpec(
        text=text,
        at=at,
        every=every,
        rate=rate,
        jitter=_number(raw.get("jitter", 0.1), f"{where}.jitter"),
        start=_number(raw["from"], f"{where}.from") if "from" in raw else None,
        stop=_number(raw["to"], f"{where}.to") if "to" in raw else None,
    )


def _stream_spec(raw: Any, where: str, aliases: Mapping[str, Any]) -> StreamSpec:
    if not isinstance(raw, dict):
        raise CaseFileError(f"{where}: a stream is a mapping")
    _known(raw, _STREAM_KEYS, where)
    pod = _need(raw, "pod", where, str)
    if pod.split("#", 1)[0] not in aliases:
        raise CaseFileError(f"{where}: pod `{pod}` is not in `pods`")
    container = _need(raw, "container", where, str)
    if not _NAME.fullmatch(container):
        raise CaseFileError(f"{where}: container `{container}` is not a DNS label")
    stream = raw.get("stream", "stdout")
    if stream not in ("stdout", "stderr"):
        raise CaseFileError(f"{where}: `stream` is stdout or stderr")
    lines = _need(raw, "lines", where, list)
    return StreamSpec(
        pod=pod,
        container=container,
        stream=stream,
        restart=int(raw.get("restart", 0)),
        lines=tuple(_line_spec(line, f"{where}.lines[{i}]") for i, line in enumerate(lines)),
    )


def _noise_spec(raw: Any, where: str, aliases: Mapping[str, Any]) -> NoiseSpec:
    if not isinstance(raw, dict):
        raise CaseFileError(f"{where}: a noise entry is a mapping")
    _known(raw, _NOISE_KEYS, where)
    system = _need(raw, "loghub", where, str)
    if not (NOISE_DIR / f"{system}_2k.log").is_file():
        raise CaseFileError(f"{where}: no Loghub file {system}_2k.log in {NOISE_DIR}")
    pod = _need(raw, "pod", where, str)
    if pod.split("#", 1)[0] not in aliases:
        raise CaseFileError(f"{where}: pod `{pod}` is not in `pods`")
    return NoiseSpec(
        system=system,
        pod=pod,
        container=_need(raw, "container", where, str),
        rate=_number(_need(raw, "rate", where, (int, float)), f"{where}.rate"),
        stream=raw.get("stream", "stdout"),
    )


def _pods(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not raw:
        raise CaseFileError(f"{where}: `pods` maps aliases to pods")
    out: dict[str, dict[str, Any]] = {}
    for alias, spec in raw.items():
        kinds = [k for k in ("deployment", "name", "cronjob") if k in (spec or {})]
        if not isinstance(spec, dict) or len(kinds) != 1:
            raise CaseFileError(f"{where}.pods.{alias}: one of deployment, name, cronjob")
        out[str(alias)] = dict(spec)
    return out


def _window(raw: Any, where: str) -> tuple[datetime, datetime]:
    if not isinstance(raw, dict):
        raise CaseFileError(f"{where}: `window` is {{start, minutes}}")
    start = _need(raw, "start", where, (str, datetime))
    begin = (
        start.astimezone(UTC)
        if isinstance(start, datetime)
        else datetime.fromisoformat(start.replace("Z", "+00:00"))
    )
    if begin.utcoffset() is None:
        raise CaseFileError(f"{where}: `window.start` needs a time zone (Z)")
    return begin, begin + timedelta(minutes=_number(_need(raw, "minutes", where, int), where))


def _estimate(
    streams: Sequence[StreamSpec], noise: Sequence[NoiseSpec], pods: Any, span: float
) -> int:
    """About how many lines the file writes (both windows), without rendering it."""
    total = 0.0
    for s in streams:
        replicas = 1 if "#" in s.pod else int(pods[s.pod].get("replicas", 1))
        for line in s.lines:
            size = line.text.count("\n") + 1
            lo = -span if line.start is None else max(-span, line.start)
            hi = span if line.stop is None else min(span, line.stop)
            width = max(0.0, hi - lo)
            if line.at:
                n = float(sum(-span <= t < span for t in line.at))
            elif line.every is not None:
                n = width / line.every
            else:
                n = width * (line.rate or 0.0)
            total += n * size * replicas
    for entry in noise:
        replicas = 1 if "#" in entry.pod else int(pods[entry.pod].get("replicas", 1))
        total += 2 * span * entry.rate * replicas
    return max(1, round(total))


def parse_case(
    data: Mapping[str, Any], path: Path | None = None, suite: str = "heldout"
) -> CaseFile:
    """A case file's content as a `CaseFile` of `suite`; CaseFileError names what is wrong."""
    where = str(path) if path else "case"
    _known(data, _CASE_KEYS, where)
    name = _need(data, "name", where, str)
    if not _NAME.fullmatch(name) or (path is not None and path.stem != name):
        raise CaseFileError(f"{where}: `name` must be the file's stem, lower-case words and -")
    failure_class = _need(data, "class", where, str)
    if failure_class not in CLASSES:
        raise CaseFileError(f"{where}: `class` {failure_class!r} is not one of {sorted(CLASSES)}")
    source = _need(data, "source", where, dict)
    title = _need(source, "title", f"{where}.source", str)
    url = _need(source, "url", f"{where}.source", str)
    if not url.startswith("https://"):
        raise CaseFileError(f"{where}: `source.url` must be an https URL")
    expected = _need(data, "expected", where, dict)
    cause = expected.get("cause")
    if (cause is None) != (failure_class in FALSE_POSITIVE):
        raise CaseFileError(f"{where}: a cause is expected exactly when the class is not fp-*")
    if cause is not None:
        try:
            re.compile(cause)
        except re.error as exc:
            raise CaseFileError(f"{where}: `expected.cause` is no regex: {exc}") from exc
    start, end = _window(_need(data, "window", where, dict), where)
    pods = _pods(_need(data, "pods", where, dict), where)
    streams = tuple(
        _stream_spec(s, f"{where}.streams[{i}]", pods)
        for i, s in enumerate(_need(data, "streams", where, list))
    )
    noise = tuple(
        _noise_spec(n, f"{where}.noise[{i}]", pods) for i, n in enumerate(data.get("noise") or [])
    )
    namespace = _need(data, "namespace", where, str)
    case = Case(
        name=name,
        story=" ".join(_need(data, "story", where, str).split()),
        namespace=namespace,
        start=start,
        end=end,
        expected=Expected(
            cause_pattern=cause or "",
            cause_keywords=tuple(str(k) for k in expected.get("keywords") or ()),
            no_cause=cause is None,
        ),
        forbidden=tuple(data.get("forbidden") or ()),
        tags=tuple(data.get("tags") or ()),
        approx_lines=_estimate(streams, noise, pods, (end - start).total_seconds()),
        question=data.get("question"),
        scan_limit=int(data.get("scan_limit", DEFAULT_SCAN_LIMIT)),
        suite=suite,
        failure_class=failure_class,
        source=f"{title} <{url}>",
    )
    return CaseFile(case=case, pods=pods, streams=streams, noise=noise, path=path)


def load_case(path: Path, suite: str = "heldout") -> CaseFile:
    """Read and parse one case file of `suite`."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CaseFileError(f"{path}: not a YAML mapping")
    return parse_case(data, path, suite)


def load_cases(root: Path = HELDOUT_DIR / "cases", suite: str = "heldout") -> list[CaseFile]:
    """Every `*.yaml` under `root`, by name, as cases of `suite` (the suite of that folder)."""
    return [load_case(path, suite) for path in sorted(root.glob("*.yaml"))]


# --- rendering ------------------------------------------------------------------------------


def _pod_names(b: Builder, pods: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each alias's pod names, drawn in the file's order (so the names are stable)."""
    out: dict[str, list[str]] = {}
    for alias, spec in pods.items():
        if "name" in spec:
            out[alias] = [str(spec["name"])]
        elif "cronjob" in spec:
            schedule = b.rng.randrange(29_000_000, 29_999_999)  # a CronJob's Job: minutes
            out[alias] = [f"{spec['cronjob']}-{schedule}-{b.token(5)}"]
        else:
            out[alias] = b.pods(str(spec["deployment"]), int(spec.get("replicas", 1)))
    return out


def _targets(names: Mapping[str, list[str]], pod: str) -> list[str]:
    alias, _, index = pod.partition("#")
    return [names[alias][int(index)]] if index else names[alias]


class _Render:
    """Expands the placeholders of one line entry for one pod."""

    def __init__(self, b: Builder, names: Mapping[str, list[str]], pod: str) -> None:
        self.b = b
        self.names = names
        self.pod = pod
        self.seq = 0

    def __call__(self, text: str, t: float) -> str:
        self.seq += 1
        return _PLACEHOLDER.sub(lambda m: self._value(m[1], m[2], t), text)

    def _value(self, kind: str, arg: str | None, t: float) -> str:
        b, rng = self.b, self.b.rng
        if kind == "ts":
            return TIME_FORMATS[arg or "iso"](b.at(t))
        if kind == "int":
            lo, hi = (int(x) for x in (arg or "0-9").split("-", 1))
            return str(rng.randint(lo, hi))
        if kind == "num":
            lo_f, hi_f = (float(x) for x in (arg or "0-1").split("-", 1))
            return f"{rng.uniform(lo_f, hi_f):.3f}"
        if kind == "hex":
            return b.hex(int(arg or 8))
        if kind == "token":
            return b.token(int(arg or 5))
        if kind == "uuid":
            return b.uuid()
        if kind == "ip":
            return b.pod_ip()
        if kind == "choice":
            return rng.choice((arg or "").split("|"))
        if kind == "seq":
            return str(self.seq)
        if kind == "pod":
            return self.names[arg][0] if arg else self.pod
        if kind == "uid":
            return b.uid(self.names[arg or ""][0])
        raise CaseFileError(f"unknown placeholder ${{{kind}}}")


def _times(b: Builder, line: LineSpec) -> Iterator[float]:
    lo = b.lo if line.start is None else line.start
    hi = b.hi if line.stop is None else line.stop
    if line.at:
        yield from line.at
    elif line.every is not None:
        yield from b.ticks(lo, hi, line.every, jitter=line.jitter)
    elif line.rate is not None:
        yield from b.poisson(lo, hi, line.rate)


def check_placeholders(case_file: CaseFile) -> list[str]:
    """Placeholders a file uses that the renderer does not know."""
    known = {"ts", "int", "num", "hex", "token", "uuid", "ip", "choice", "seq", "pod", "uid"}
    problems = []
    for s in case_file.streams:
        for line in s.lines:
            for m in _PLACEHOLDER.finditer(line.text):
                if m[1] not in known or (m[1] == "ts" and (m[2] or "iso") not in TIME_FORMATS):
                    problems.append(f"{s.container}: {m[0]}")
                if m[1] in ("pod", "uid") and m[2] and m[2] not in case_file.pods:
                    problems.append(f"{s.container}: {m[0]} names no alias")
    return problems


def _noise_lines(system: str) -> list[str]:
    text = (NOISE_DIR / f"{system}_2k.log").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def generate(case_file: CaseFile) -> Callable[[Builder], None]:
    """The function that writes the file's lines into a Builder."""

    def run(b: Builder) -> None:
        names = _pod_names(b, case_file.pods)
        for s in case_file.streams:
            for pod in _targets(names, s.pod):
                for line in s.lines:
                    render = _Render(b, names, pod)
                    multi = "\n" in line.text
                    for t in _times(b, line):
                        text = render(line.text, t)
                        if multi:
                            b.block(
                                pod,
                                s.container,
                                t,
                                text.split("\n"),
                                stream=s.stream,
                                restart=s.restart,
                            )
                        else:
                            b.log(pod, s.container, t, text, stream=s.stream, restart=s.restart)
        for n in case_file.noise:
            lines = _noise_lines(n.system)
            offset = b.rng.randrange(len(lines))
            for pod in _targets(names, n.pod):
                for i, t in enumerate(b.poisson(b.lo, b.hi, n.rate)):
                    text = lines[(offset + i) % len(lines)]
                    b.log(pod, n.container, t, text, stream=n.stream)

    return run


def spec_of(case_file: CaseFile) -> Spec:
    """The case and its generator, as the catalog holds every case."""
    return Spec(case_file.case, generate(case_file))
