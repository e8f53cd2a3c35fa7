"""Collect a case's log lines per container run and render them as kubelet-layout CRI files.

Times are seconds relative to the case's window start: the previous window is ``[-L, 0)``
and the request window ``[0, L)``. Lines outside ``[-L, L)`` are dropped, so generators may
run a little past the edges.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache

from eval.incidents.model import Case

NS_PER_S = 1_000_000_000
POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# One record: (timestamp ns, sequence number, stream, message).
Record = tuple[int, int, str, str]


def case_seed(name: str) -> int:
    """A stable seed for a case (Python's `hash()` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a tz-aware datetime (exact for whole microseconds)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


@lru_cache(maxsize=1 << 16)
def _fields(sec: int) -> tuple[str, str, str, str, str, str, str, str]:
    """Year, month, day, hour, minute, second, month name and weekday of an epoch second."""
    d = datetime.fromtimestamp(sec, UTC)
    return (
        f"{d.year:04d}",
        f"{d.month:02d}",
        f"{d.day:02d}",
        f"{d.hour:02d}",
        f"{d.minute:02d}",
        f"{d.second:02d}",
        _MONTHS[d.month - 1],
        _WEEKDAYS[d.weekday()],
    )


def _split(at: float) -> tuple[tuple[str, str, str, str, str, str, str, str], int]:
    sec = int(at // 1)
    micros = min(int((at - sec) * 1_000_000), 999_999)
    return _fields(sec), micros


def rfc3339_ns(ts_ns: int) -> str:
    """A CRI timestamp: RFC 3339 with nine fraction digits and `Z`."""
    sec, nanos = divmod(ts_ns, NS_PER_S)
    y, mo, d, h, mi, s, _, _ = _fields(sec)
    return f"{y}-{mo}-{d}T{h}:{mi}:{s}.{nanos:09d}Z"


def iso(at: float, digits: int = 3) -> str:
    """`2026-11-24T10:20:03.123Z` (`digits` fraction digits, 0 for none)."""
    (y, mo, d, h, mi, s, _, _), micros = _split(at)
    frac = f".{micros:06d}"[: digits + 1] if digits else ""
    return f"{y}-{mo}-{d}T{h}:{mi}:{s}{frac}Z"


def py_time(at: float) -> str:
    """Python logging's default: `2026-11-24 10:20:03,123`."""
    (y, mo, d, h, mi, s, _, _), micros = _split(at)
    return f"{y}-{mo}-{d} {h}:{mi}:{s},{micros // 1000:03d}"


def pg_time(at: float) -> str:
    """Postgres `%m`: `2026-11-24 10:20:03.123 UTC`."""
    (y, mo, d, h, mi, s, _, _), micros = _split(at)
    return f"{y}-{mo}-{d} {h}:{mi}:{s}.{micros // 1000:03d} UTC"


def clf(at: float) -> str:
    """Common log format: `24/Nov/2026:10:20:03 +0000`."""
    (y, _, d, h, mi, s, mon, _), _ = _split(at)
    return f"{d}/{mon}/{y}:{h}:{mi}:{s} +0000"


def go_log(at: float) -> str:
    """Go's standard `log` package: `2026/11/24 10:20:03`."""
    (y, mo, d, h, mi, s, _, _), _ = _split(at)
    return f"{y}/{mo}/{d} {h}:{mi}:{s}"


def redis_time(at: float) -> str:
    """Redis: `24 Nov 2026 10:20:03.123`."""
    (y, _, d, h, mi, s, mon, _), micros = _split(at)
    return f"{d} {mon} {y} {h}:{mi}:{s}.{micros // 1000:03d}"


def rabbit_time(at: float) -> str:
    """RabbitMQ 3.9+: `2026-11-24 10:20:03.123456+00:00`."""
    (y, mo, d, h, mi, s, _, _), micros = _split(at)
    return f"{y}-{mo}-{d} {h}:{mi}:{s}.{micros:06d}+00:00"


def klog_time(at: float) -> str:
    """klog header time: `1124 10:20:03.123456`."""
    (_, mo, d, h, mi, s, _, _), micros = _split(at)
    return f"{mo}{d} {h}:{mi}:{s}.{micros:06d}"


def http_date(at: float) -> str:
    """RFC 7231 date: `Tue, 24 Nov 2026 10:20:03 GMT`."""
    (y, _, d, h, mi, s, mon, wd), _ = _split(at)
    return f"{wd}, {d} {mon} {y} {h}:{mi}:{s} GMT"


class Builder:
    """The log lines of one case, per (pod, container, restart), with a seeded RNG."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.rng = random.Random(case_seed(case.name))
        self.window = case.window_seconds
        self.epoch = case.start.timestamp()
        self._start_ns = to_ns(case.start)
        self._hi_ns = to_ns(case.end)
        self._lo_ns = self._start_ns - (self._hi_ns - self._start_ns)
        self._uids: dict[str, str] = {}
        self._runs: dict[tuple[str, str, int], list[Record]] = {}
        self._seq = 0

    # --- time -----------------------------------------------------------------------------

    @property
    def lo(self) -> float:
        """Start of the previous window, relative to the request window's start."""
        return -self.window

    @property
    def hi(self) -> float:
        """End of the request window."""
        return self.window

    def at(self, t: float) -> float:
        """Epoch seconds of relative time `t`."""
        return self.epoch + t

    def ticks(self, lo: float, hi: float, every: float, jitter: float = 0.1) -> Iterator[float]:
        """Times in ``[lo, hi)`` about `every` seconds apart, with a random phase."""
        t = lo + self.rng.uniform(0, every)
        while t < hi:
            yield t
            t += every * self.rng.uniform(1 - jitter, 1 + jitter)

    def poisson(self, lo: float, hi: float, rate: float) -> Iterator[float]:
        """Poisson arrivals in ``[lo, hi)`` at `rate` events per second."""
        if rate <= 0:
            return
        t = lo + self.rng.expovariate(rate)
        while t < hi:
            yield t
            t += self.rng.expovariate(rate)

    # --- names and ids --------------------------------------------------------------------

    def token(self, n: int, alphabet: str = POD_ALPHABET) -> str:
        """`n` random characters from `alphabet`."""
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def hex(self, n: int) -> str:
        """`n` random lower-case hex digits."""
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        """A random UUID4 string."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def replicaset(self, deployment: str) -> str:
        """A new ReplicaSet name, `<deployment>-<pod-template-hash>`."""
        return f"{deployment}-{self.token(self.rng.choice((9, 10)))}"

    def pod(self, replicaset: str) -> str:
        """A new pod name of `replicaset`, `<replicaset>-<5 chars>`."""
        return f"{replicaset}-{self.token(5)}"

    def pods(self, deployment: str, replicas: int) -> list[str]:
        """`replicas` pods of one new ReplicaSet of `deployment`."""
        rs = self.replicaset(deployment)
        return [self.pod(rs) for _ in range(replicas)]

    def uid(self, pod: str) -> str:
        """The pod's (stable, fake) UID.

        A pod recreated under the same name (a StatefulSet pod) is keyed `name#n`: same
        directory name, new UID.
        """
        if pod not in self._uids:
            self._uids[pod] = self.uuid()
        return self._uids[pod]

    def pod_ip(self) -> str:
        """A pod IP in 10.244.0.0/16."""
        return f"10.244.{self.rng.randrange(0, 8)}.{self.rng.randrange(2, 250)}"

    # --- lines ----------------------------------------------------------------------------

    def ns(self, t: float) -> int:
        """Nanoseconds since the epoch of relative time `t`."""
        return self._start_ns + int(t * NS_PER_S)

    def log(
        self,
        pod: str,
        container: str,
        t: float,
        text: str,
        *,
        stream: str = "stdout",
        restart: int = 0,
    ) -> None:
        """One line written at `t` (the runtime stamps it some microseconds later)."""
        ts = self.ns(t) + self.rng.randrange(20_000, 600_000)
        if self._lo_ns <= ts < self._hi_ns:
            self._append(pod, container, restart, ts, stream, text)

    def block(
        self,
        pod: str,
        container: str,
        t: float,
        lines: Sequence[str],
        *,
        stream: str = "stderr",
        restart: int = 0,
    ) -> None:
        """A multi-line event written in one go (1 µs apart); dropped whole if it sticks out."""
        base = self.ns(t) + self.rng.randrange(20_000, 600_000)
        if base < self._lo_ns or base + 1_000 * len(lines) >= self._hi_ns:
            return
        for i, text in enumerate(lines):
            self._append(pod, container, restart, base + 1_000 * i, stream, text)

    def _append(
        self, pod: str, container: str, restart: int, ts: int, stream: str, text: str
    ) -> None:
        self._seq += 1
        key = (pod, container, restart)
        run = self._runs.get(key)
        if run is None:
            self.uid(pod)
            run = self._runs[key] = []
        run.append((ts, self._seq, stream, text))

    # --- output ---------------------------------------------------------------------------

    def files(self) -> dict[str, bytes]:
        """Relative path (`<ns>_<pod>_<uid>/<container>/<restart>.log`) to file content."""
        out: dict[str, bytes] = {}
        namespace = self.case.namespace
        for (pod, container, restart), records in sorted(self._runs.items()):
            name = pod.split("#", 1)[0]
            path = f"{namespace}_{name}_{self._uids[pod]}/{container}/{restart}.log"
            records.sort()
            out[path] = "".join(
                f"{rfc3339_ns(ts)} {stream} F {text}\n" for ts, _, stream, text in records
            ).encode()
        return out
