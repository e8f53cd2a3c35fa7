"""Log line formats as real software prints them.

Every function takes epoch seconds (`Builder.at(t)`) where the line carries its own time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from eval.incidents.builder import clf, http_date, iso, klog_time, pg_time, py_time

Value = str | int | float | bool | None


def _logfmt_value(value: Value) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text == "" or any(c in text for c in ' ="\\\t'):
        return json.dumps(text)
    return text


def logfmt(pairs: Sequence[tuple[str, Value]]) -> str:
    """`key=value` pairs, values quoted (Go-style) only when they need it."""
    return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs)


def slog(at: float, level: str, msg: str, *pairs: tuple[str, Value]) -> str:
    """Go `log/slog` TextHandler: `time=... level=INFO msg="..." k=v`."""
    head: list[tuple[str, Value]] = [("time", iso(at)), ("level", level.upper()), ("msg", msg)]
    return logfmt([*head, *pairs])


def compact_json(obj: dict[str, object]) -> str:
    """JSON without spaces, as zap, pino and most JSON loggers print it."""
    return json.dumps(obj, separators=(",", ":"))


def zap(at: float, level: str, caller: str, msg: str, **fields: object) -> str:
    """A zap production-config JSON line with ISO 8601 timestamps."""
    return compact_json({"level": level, "ts": iso(at), "caller": caller, "msg": msg, **fields})


_PINO_LEVELS = {"trace": 10, "debug": 20, "info": 30, "warn": 40, "error": 50, "fatal": 60}


def pino(at: float, level: str, msg: str, pid: int = 1, **fields: object) -> str:
    """A pino JSON line (numeric level, epoch milliseconds)."""
    head: dict[str, object] = {
        "level": _PINO_LEVELS[level],
        "time": int(at * 1000),
        "pid": pid,
        "hostname": fields.pop("hostname", "app"),
    }
    return compact_json({**head, **fields, "msg": msg})


def pylog(at: float, level: str, logger: str, msg: str) -> str:
    """Python logging with `%(asctime)s %(levelname)s [%(name)s] %(message)s`."""
    return f"{py_time(at)} {level} [{logger}] {msg}"


def gunicorn_log(at: float, pid: int, level: str, msg: str) -> str:
    """gunicorn's error log: `[2026-11-24 10:20:03 +0000] [7] [INFO] msg`."""
    (date, clock) = py_time(at).split(" ")
    return f"[{date} {clock[:8]} +0000] [{pid}] [{level}] {msg}"


def _abbreviate(logger: str, width: int = 40) -> str:
    """Logback's `%logger{39}`: shorten package names until the name fits."""
    parts = logger.split(".")
    i = 0
    while len(".".join(parts)) > width - 1 and i < len(parts) - 1:
        parts[i] = parts[i][0]
        i += 1
    return ".".join(parts)


def spring(at: float, level: str, thread: str, logger: str, msg: str, app: str = "") -> str:
    """Spring Boot 3 console format."""
    app_part = f"[{app}] " if app else ""
    return (
        f"{iso(at)} {level.upper():>5} 1 --- {app_part}[{thread[-15:]:>15}] "
        f"{_abbreviate(logger):<40} : {msg}"
    )


def postgres(at: float, pid: int, level: str, msg: str, who: str = "") -> str:
    """Postgres with `log_line_prefix = '%m [%p] %q%u@%d '`: `... [4127] app@shop ERROR:  x`."""
    who_part = f"{who} " if who else ""
    return f"{pg_time(at)} [{pid}] {who_part}{level}:  {msg}"


def klog(at: float, severity: str, source: str, msg: str, thread: int = 1) -> str:
    """A klog line: `E1124 10:20:03.123456       1 reflector.go:147] msg`."""
    return f"{severity[0].upper()}{klog_time(at)} {thread:>7} {source}] {msg}"


def k8s_event(
    at: float,
    *,
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    message: str,
    type_: str = "Normal",
    count: int = 1,
    first_at: float | None = None,
    component: str = "kubelet",
    host: str = "node-2",
) -> str:
    """One Kubernetes event as kubernetes-event-exporter's stdout receiver prints it."""
    event_id = f"{int(at * 1000) & 0xFFFFFFFF:08x}"
    return compact_json(
        {
            "metadata": {"name": f"{name}.{event_id}", "namespace": namespace},
            "reason": reason,
            "message": message,
            "source": {"component": component, "host": host},
            "firstTimestamp": iso(first_at if first_at is not None else at, 0),
            "lastTimestamp": iso(at, 0),
            "count": count,
            "type": type_,
            "involvedObject": {"kind": kind, "namespace": namespace, "name": name},
        }
    )


# --- access logs ----------------------------------------------------------------------------


def nginx_access(
    at: float,
    *,
    ip: str,
    method: str,
    path: str,
    status: int,
    size: int,
    ua: str,
    seconds: float,
    upstream: str = "-",
    upstream_seconds: float | None = None,
) -> str:
    """nginx `combined` plus request and upstream times."""
    urt = "-" if upstream_seconds is None else f"{upstream_seconds:.3f}"
    return (
        f'{ip} - - [{clf(at)}] "{method} {path} HTTP/1.1" {status} {size} "-" "{ua}" '
        f'rt={seconds:.3f} upstream="{upstream}" urt="{urt}"'
    )


def envoy_access(
    at: float,
    *,
    method: str,
    path: str,
    status: int,
    flags: str,
    received: int,
    sent: int,
    ms: int,
    upstream_ms: int | None,
    client: str,
    ua: str,
    request_id: str,
    authority: str,
    upstream_host: str,
) -> str:
    """Envoy's default access log format."""
    upstream = "-" if upstream_ms is None else str(upstream_ms)
    return (
        f'[{iso(at)}] "{method} {path} HTTP/1.1" {status} {flags} {received} {sent} {ms} '
        f'{upstream} "{client}" "{ua}" "{request_id}" "{authority}" "{upstream_host}"'
    )


def gunicorn_access(
    at: float, *, ip: str, method: str, path: str, status: int, size: int, ua: str
) -> str:
    """gunicorn's access log (`%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s ...`)."""
    return f'{ip} - - [{clf(at)}] "{method} {path} HTTP/1.1" {status} {size} "-" "{ua}"'


def morgan(at: float, *, ip: str, method: str, path: str, status: int, size: int, ms: float) -> str:
    """Express `morgan(':remote-addr - :method :url :status :res[content-length] ...')`."""
    return f"::ffff:{ip} - [{http_date(at)}] {method} {path} {status} {size} - {ms:.3f} ms"
