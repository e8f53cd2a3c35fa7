"""Background noise that several cases share: databases, event exporters, stack frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eval.incidents.builder import Builder, go_log, redis_time
from eval.incidents.formats import k8s_event, logfmt, postgres, zap


def postgres_background(
    b: Builder,
    pod: str,
    lo: float,
    hi: float,
    *,
    database: str = "shop",
    tables: Sequence[str] = ("orders", "order_items", "customers"),
    restart: int = 0,
) -> None:
    """Checkpoints every 5 minutes and the odd autovacuum, as a healthy Postgres logs them."""
    rng = b.rng
    for t in b.ticks(lo, hi, 300.0, jitter=0.002):
        pid = rng.randrange(60, 90)
        line = postgres(b.at(t), pid, "LOG", "checkpoint starting: time")
        b.log(pod, "postgres", t, line, stream="stderr", restart=restart)
        done = t + rng.uniform(120, 270)
        buffers = rng.randrange(300, 4000)
        write = done - t - rng.uniform(0.05, 0.4)
        b.log(
            pod,
            "postgres",
            done,
            postgres(
                b.at(done),
                pid,
                "LOG",
                f"checkpoint complete: wrote {buffers} buffers ({buffers / 163.84:.1f}%); "
                f"0 WAL file(s) added, 0 removed, {rng.randrange(0, 3)} recycled; "
                f"write={write:.3f} s, sync={rng.uniform(0.001, 0.09):.3f} s, "
                f"total={done - t:.3f} s; sync files={rng.randrange(8, 90)}, "
                f"longest={rng.uniform(0.001, 0.02):.3f} s, average=0.001 s; "
                f"distance={buffers * 8} kB, estimate={buffers * 8 + rng.randrange(0, 900)} kB",
            ),
            stream="stderr",
            restart=restart,
        )
    for t in b.ticks(lo, hi, 420.0, jitter=0.5):
        autovacuum(b, pod, t, f"{database}.public.{rng.choice(tables)}", restart=restart)


def autovacuum(b: Builder, pod: str, t: float, table: str, *, restart: int = 0) -> None:
    """An autovacuum report: one log message printed over several lines."""
    rng = b.rng
    pages = rng.randrange(2_000, 90_000)
    removed = rng.randrange(100, 9_000)
    head = postgres(
        b.at(t),
        rng.randrange(2000, 9000),
        "LOG",
        f'automatic vacuum of table "{table}": index scans: 1',
    )
    b.block(
        pod,
        "postgres",
        t,
        [
            head,
            f"\tpages: 0 removed, {pages} remain, {pages // 20} scanned (5.00% of total)",
            f"\ttuples: {removed} removed, {pages * 48} remain, 0 are dead but not yet removable",
            f"\tavg read rate: {rng.uniform(1, 40):.3f} MB/s, "
            f"avg write rate: {rng.uniform(1, 20):.3f} MB/s",
            f"\tsystem usage: CPU: user: {rng.uniform(0.01, 0.3):.2f} s, system: 0.00 s, "
            f"elapsed: {rng.uniform(0.1, 2.5):.2f} s",
        ],
        stream="stderr",
        restart=restart,
    )


def redis_background(b: Builder, pod: str, lo: float, hi: float, *, pid: int = 1) -> None:
    """RDB snapshots every few minutes (`save 300 100`)."""
    rng = b.rng
    for t in b.ticks(lo, hi, 300.0, jitter=0.05):
        child = rng.randrange(100, 30_000)
        steps = (
            (0.0, f"{pid}:M {redis_time(b.at(t))} * 100 changes in 300 seconds. Saving..."),
            (0.001, f"{pid}:M {redis_time(b.at(t))} * Background saving started by pid {child}"),
            (0.4, f"{child}:C {redis_time(b.at(t + 0.4))} * DB saved on disk"),
            (
                0.41,
                f"{child}:C {redis_time(b.at(t + 0.41))} * Fork CoW for RDB: current "
                f"{rng.randrange(1, 9)} MB, peak {rng.randrange(9, 20)} MB, average 4 MB",
            ),
            (
                0.5,
                f"{pid}:M {redis_time(b.at(t + 0.5))} * Background saving terminated with success",
            ),
        )
        for dt, line in steps:
            b.log(pod, "redis", t + dt, line)


@dataclass(frozen=True)
class Events:
    """A kubernetes-event-exporter pod in the case's namespace."""

    b: Builder
    pod: str

    @classmethod
    def start(cls, b: Builder) -> Events:
        return cls(b, b.pod(b.replicaset("event-exporter")))

    def emit(
        self,
        t: float,
        kind: str,
        name: str,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        count: int = 1,
        first: float | None = None,
        component: str = "kubelet",
    ) -> None:
        """One event, logged a moment after it happened."""
        b = self.b
        line = k8s_event(
            b.at(t),
            namespace=b.case.namespace,
            kind=kind,
            name=name,
            reason=reason,
            message=message,
            type_="Warning" if warning else "Normal",
            count=count,
            first_at=b.at(first) if first is not None else None,
            component=component,
        )
        b.log(self.pod, "event-exporter", t + 0.05 + b.rng.uniform(0, 0.01), line)

    def container_start(self, t: float, pod: str, container: str, image: str) -> None:
        """Pulled/Created/Started for an image already on the node."""
        self.emit(
            t,
            "Pod",
            pod,
            "Pulled",
            f'Container image "{image}" already present on machine',
        )
        self.emit(t + 0.05, "Pod", pod, "Created", f"Created container {container}")
        self.emit(t + 0.1, "Pod", pod, "Started", f"Started container {container}")

    def backoff(self, t: float, pod: str, container: str, count: int, first: float) -> None:
        """The kubelet's crash-loop back-off event."""
        uid = self.b.uid(pod)
        self.emit(
            t,
            "Pod",
            pod,
            "BackOff",
            f"Back-off restarting failed container {container} in pod "
            f"{pod}_{self.b.case.namespace}({uid})",
            warning=True,
            count=count,
            first=first,
        )


def crash_loop_starts(first: float, runtime: float, until: float) -> list[float]:
    """Start times of a crash-looping container: kubelet back-off 10 s doubling to 5 min."""
    starts = [first]
    delay = 10.0
    while True:
        nxt = starts[-1] + runtime + delay
        if nxt >= until:
            return starts
        starts.append(nxt)
        delay = min(delay * 2, 300.0)


def java_trace(frames: Sequence[str], omitted: int = 0) -> list[str]:
    """Stack frames as the JVM prints them (`\\tat ...`), with `... N more` when cut."""
    lines = [f"\tat {frame}" for frame in frames]
    if omitted:
        lines.append(f"\t... {omitted} common frames omitted")
    return lines


def watcher_line(b: Builder, pod: str, container: str, reason: str, exit_code: int) -> str:
    """What a pod-watcher (Robusta/kubewatch style) logs when a container terminates."""
    return logfmt(
        [
            ("level", "warn"),
            ("msg", "container terminated"),
            ("namespace", b.case.namespace),
            ("pod", pod),
            ("container", container),
            ("reason", reason),
            ("exit_code", exit_code),
        ]
    )


def nginx_favicon_errors(b: Builder, pod: str, every: float = 240.0) -> None:
    """The classic steady nginx error: browsers asking for a favicon that is not there."""
    for t in b.ticks(b.lo, b.hi, every, jitter=0.6):
        b.log(
            pod,
            "nginx",
            t,
            f"{go_log(b.at(t))} [error] 29#29: *{b.rng.randrange(1000, 99_999)} open() "
            '"/usr/share/nginx/html/favicon.ico" failed (2: No such file or directory), '
            f'client: {b.pod_ip()}, server: _, request: "GET /favicon.ico HTTP/1.1"',
            stream="stderr",
        )


def metrics_export_errors(
    b: Builder, pod: str, container: str, every: float = 120.0, *, until: float | None = None
) -> None:
    """A Go service's OpenTelemetry metrics exporter failing now and then, all day long."""
    for t in b.ticks(b.lo, b.hi if until is None else until, every, jitter=0.5):
        b.log(
            pod,
            container,
            t,
            zap(
                b.at(t),
                "error",
                "otel/handler.go:28",
                "failed to upload metrics",
                error='Post "http://otel-collector.observability:4318/v1/metrics": context '
                "deadline exceeded",
            ),
        )
