"""Benchmark a busy window: 10k, 100k and 1M lines, one root-cause line at 5, 50 and 95 %.

    .venv/bin/python bench/scale.py [--loki-url URL] [--sizes 10000,100000,1000000] [--docs]

Against a real Loki when `--loki-url` answers `/ready`, else the Loki stub in a process of
its own (`tests.stubs.loki_stub`) that waits `--stub-latency-ms` before evaluating each
query: a model of Loki's own work (index lookups, chunk fetches), which in a cluster runs on
other machines than the worker. The report says which. Each case is a namespace of its own:
`size` lines over 50 minutes: four services (JSON, logfmt, nginx, postgres; info,
some warnings, a steady trickle of harmless errors) and one FATAL line, the root
cause, at 5, 50 or 95 % of the window. Per case, in one run:

a. Read: `LokiSource.read` (LOKI_PARALLELISM ranges at once) against the same ranges
   fetched one after another by a plain httpx loop, the limit of sequential reading; lines/s.
b. Job: the whole pipeline (API, a Celery worker, a private Redis, the llama stub) with
   `scan_limit` = the window's size: time to the `findings` event, whether the cause was read
   and named, the worker's peak RSS and Redis's peak memory above its baseline (both sampled
   every 20 ms), and whether the job's stage data is gone once it ends.

Plus the 1M window at the default `scan_limit` (a sampled read), and a noisy 1M window at
the default `scan_limit`: the cause as the one FATAL line among 100k warnings and errors
(more than the budget), late in its bucket, where an even sample of the severe lines misses
it; the severity tiers must read it first (`--sampled-only` runs just these two). Writes
bench/results/scale.json; `--docs` regenerates the `scale` block of docs/benchmarks.md.
Exits 1 when a target is missed: the cause read and named as T1 in every case, 1M lines to
findings within 60 s, the parallel read at least twice the sequential one (against the
stub), peak worker RSS within 512 MiB and Redis within 64 MiB per job.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import redis

from bench.report import replace_generated, table
from cli.harness import Harness, Process
from shared.logql import LogFilter, build_query
from shared.schemas import Filters
from shared.settings import DEFAULT_SCAN_LIMIT
from tests.stubs.server import free_port
from tests.support.stack import service_env
from workers.sources import ReadPlan, Window
from workers.sources.loki import MAX_PAGE_SIZE, LokiSource, count_buckets
from workers.sources.plan import Buckets, bucket_edges, plan_tasks
from workers.sources.severity import TIERS

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
MINUTE = 60 * 10**9
WINDOW_NS = 50 * MINUTE
POSITIONS = (0.05, 0.5, 0.95)
NOISY_SEVERE_SHARE = 0.1  # of a noisy case's lines: warnings and errors
NOISY_CAUSE_AT = 0.53  # 96 % into its bucket (of 32): past an even sample's share of it
CAUSE = "FATAL config: required key PAYMENTS_URL is missing; refusing to start"
PUSH_BATCH = 5000
PARALLELISM = 4
MiB = 1024 * 1024
TARGETS = {"findings_1m_s": 60.0, "read_ratio": 2.0, "rss_mib": 512.0, "redis_mib": 64.0}
NO_LIMITS = {
    "MAX_STREAMS_PER_KEY": "100000",
    "MAX_ACTIVE_JOBS_PER_KEY": "100000",
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "LOKI_TIMEOUT_S": "60",
    "LOKI_PARALLELISM": str(PARALLELISM),
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- the data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    size: int
    cause_at: float
    scan_limit: int
    start_ns: int
    noisy: bool = False  # a tenth of the lines warnings and errors (else about 4 %)

    @property
    def namespace(self) -> str:
        noisy = "-noisy" if self.noisy else ""
        return f"scale-{self.size // 1000}k-{round(self.cause_at * 100)}{noisy}"

    @property
    def name(self) -> str:
        sampled = "" if self.scan_limit >= self.size else f", scan_limit {self.scan_limit:,}"
        noisy = f", {NOISY_SEVERE_SHARE * self.size:,.0f} warnings+errors" if self.noisy else ""
        return f"{self.size:,} lines{noisy}, cause at {self.cause_at:.0%}{sampled}"


def service_line(rng: random.Random, service: str, i: int, ts_ns: int, noisy: bool) -> str:
    """One background line of `service`: mostly info, some warnings, a few steady errors
    (`noisy`: many more of both, a tenth of all lines)."""
    roll = rng.random()
    # api: errors below `error`, warnings below `warn`; worker: warnings below `retry`.
    error, warn, retry = (0.1, 0.25, 0.15) if noisy else (0.03, 0.1, 0.05)
    ms = rng.randint(2, 900)
    stamp = datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")
    if service == "api":
        if roll < error:
            fields = {"level": "error", "msg": "upstream timeout", "upstream": "inventory"}
        elif roll < warn:
            fields = {"level": "warn", "msg": "slow request", "path": f"/items/{i % 5000}"}
        else:
            fields = {"level": "info", "msg": "request served", "path": f"/items/{i % 5000}"}
        return json.dumps({"ts": stamp, **fields, "ms": ms})
    if service == "worker":
        if roll < retry:
            return f'ts={stamp} level=warn msg="retrying job" job={i} attempt={rng.randint(1, 3)}'
        return f'ts={stamp} level=info msg="job done" job={i} duration_ms={ms}'
    if service == "nginx":
        status = 502 if roll < 0.01 else 200
        request = f"GET /items/{i % 5000} HTTP/1.1"
        return f'10.0.{i % 250}.{i % 7} - - [{stamp}] "{request}" {status} {ms * 3} "-" "curl/8"'
    if roll < 0.02:
        return f"{stamp} UTC [{100 + i % 50}] LOG:  checkpoint complete: wrote {ms} buffers"
    return f"{stamp} UTC [{100 + i % 50}] LOG:  duration: {ms / 10:.3f} ms  statement: SELECT 1"


def case_streams(case: Case) -> dict[tuple[tuple[str, str], ...], list[tuple[int, str]]]:
    """The case's lines by stream, each stream in time order (Loki wants that per stream)."""
    rng = random.Random(f"{case.size}-{case.cause_at}" + ("-noisy" if case.noisy else ""))
    services = (
        ("api", "api-7d9f"),
        ("worker", "worker-5c"),
        ("nginx", "ingress-0"),
        ("db", "postgres-0"),
    )
    streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
    for i in range(case.size - 1):  # and the cause: `size` lines in all
        service, pod = services[i % len(services)]
        ts = case.start_ns + WINDOW_NS * i // case.size + rng.randint(0, 999)
        labels = (("container", service), ("namespace", case.namespace), ("pod", pod))
        streams.setdefault(labels, []).append((ts, service_line(rng, service, i, ts, case.noisy)))
    cause_labels = (
        ("container", "payments"),
        ("namespace", case.namespace),
        ("pod", "payments-0"),
    )
    streams[cause_labels] = [(case.start_ns + int(WINDOW_NS * case.cause_at) + 17, CAUSE)]
    return streams


def push(client: httpx.Client, loki_url: str, case: Case) -> None:
    for labels, entries in case_streams(case).items():
        for at in range(0, len(entries), PUSH_BATCH):
            values = [[str(ts), line] for ts, line in entries[at : at + PUSH_BATCH]]
            body = {"streams": [{"stream": dict(labels), "values": values}]}
            response = client.post(f"{loki_url}/loki/api/v1/push", json=body, timeout=120)
            response.raise_for_status()


# --- a. the read ----------------------------------------------------------------------------


def plan_for(case: Case, scan_limit: int) -> ReadPlan:
    window = Window(
        Filters(namespace=case.namespace), LogFilter(), case.start_ns, case.start_ns + WINDOW_NS
    )
    return ReadPlan(window, scan_limit, severity_first=True)


def read_parallel(client: httpx.Client, loki_url: str, plan: ReadPlan) -> tuple[int, float]:
    started = time.perf_counter()
    read = LokiSource(client, loki_url, parallelism=PARALLELISM, timeout_s=120).read(plan)
    lines = sum(len(chunk.lines) for chunk in read.chunks)
    return lines, time.perf_counter() - started


def read_sequential(client: httpx.Client, loki_url: str, plan: ReadPlan) -> tuple[int, float]:
    """The plan's ranges, one after another: plain forward paging, JSON parsed, lines counted."""
    started = time.perf_counter()
    window = plan.window
    edges = bucket_edges(window.start_ns, window.end_ns)
    query = build_query(window.filters, window.log_filter)
    total = count_buckets(client, loki_url, query, edges, timeout_s=120)
    tiers = None  # counted, as LokiSource does, only when the window does not fit
    if sum(total) > plan.budget:
        tiers = [
            count_buckets(
                client, loki_url, build_query(window.filters, tier.log_filter), edges, timeout_s=120
            )
            for tier in TIERS
        ]
    lines = 0
    for task in plan_tasks(plan, Buckets(edges, total, tiers)):
        task_query = build_query(task.window.filters, task.window.log_filter)
        cursor, left = task.window.start_ns, task.limit or 10**12
        while cursor < task.window.end_ns and left > 0:
            params = {
                "query": task_query,
                "start": str(cursor),
                "end": str(task.window.end_ns),
                "limit": str(min(MAX_PAGE_SIZE, left)),
                "direction": "forward",
            }
            body = client.get(f"{loki_url}/loki/api/v1/query_range", params=params, timeout=120)
            result = body.raise_for_status().json()["data"]["result"]
            page = [int(v[0]) for s in result for v in s["values"]]
            lines += len(page)
            left -= len(page)
            if len(page) < MAX_PAGE_SIZE:
                break
            cursor = max(page) + 1
    return lines, time.perf_counter() - started


# --- b. the job ---------------------------------------------------------------------------


@dataclass
class Sampler:
    """Peak RSS of a process tree and peak Redis memory, sampled every 20 ms."""

    worker_pid: int
    redis_client: redis.Redis
    rss: int = 0
    redis_used: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.rss = max(self.rss, tree_rss(self.worker_pid))
            used = int(self.redis_client.info("memory")["used_memory"])
            self.redis_used = max(self.redis_used, used)


def tree_rss(pid: int) -> int:
    """The largest RSS among a process and its children (a prefork worker's pool)."""
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0
    largest = 0
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]) * 1024)
        except OSError:
            continue
    return largest


@dataclass
class JobRun:
    findings_s: float | None = None
    total_s: float = 0.0
    status: str = ""
    t1: str = ""
    cause_rank: int | None = None
    coverage: dict[str, Any] = field(default_factory=dict)
    rss_mib: float = 0.0
    redis_mib: float = 0.0
    stage_data_left: int = 0
    stages_s: dict[str, float] = field(default_factory=dict)


def run_job(stack: Stack, case: Case) -> JobRun:
    request = {
        "time_range": {
            "start": datetime.fromtimestamp(case.start_ns / 1e9, UTC).isoformat(),
            "end": datetime.fromtimestamp((case.start_ns + WINDOW_NS) / 1e9, UTC).isoformat(),
        },
        "filters": {"namespace": case.namespace},
        "scan_limit": case.scan_limit,
    }
    run = JobRun()
    client = redis.Redis.from_url(stack.redis_url)
    baseline = int(client.info("memory")["used_memory"])
    with httpx.Client(timeout=600) as http, Sampler(stack.worker.pid, client) as sampler:
        started = time.perf_counter()
        job = http.post(f"{stack.api_url}/v1/jobs", json=request).raise_for_status().json()
        with http.stream(
            "GET", job["events_url"], headers={"Accept": "text/event-stream"}
        ) as events:
            event = ""
            for line in events.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                if event == "findings" and run.findings_s is None:
                    run.findings_s = time.perf_counter() - started
                if event == "stage" and line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))["data"]
                    if data["state"] == "finished":
                        run.stages_s[data["stage"]] = (data.get("duration_ms") or 0) / 1000
                if event == "done":
                    break
        run.total_s = time.perf_counter() - started
        view = http.get(f"{stack.api_url}/v1/jobs/{job['job_id']}").json()
    run.status = view["status"]
    result = view.get("result") or {}
    evidence = result.get("evidence") or []
    run.t1 = evidence[0]["template"] if evidence else ""
    ranks = [n for n, item in enumerate(evidence, 1) if "PAYMENTS_URL" in item["template"]]
    run.cause_rank = ranks[0] if ranks else None
    run.coverage = ((result.get("findings") or {}).get("searched") or {}).get("coverage") or {}
    run.rss_mib = sampler.rss / MiB
    run.redis_mib = max(sampler.redis_used - baseline, 0) / MiB
    run.stage_data_left = len(client.keys(f"*{job['job_id']}:data:*"))
    return run


@dataclass
class Stack:
    api_url: str
    redis_url: str
    worker: Process


def start_stack(harness: Harness, loki_url: str) -> Stack:
    port = free_port()
    argv = [sys.executable, "-m", "tests.stubs.llama_stub", "--port", str(port)]
    harness.spawn("llama-stub", [*argv, "--tokens", "20"])
    llama_url = f"http://127.0.0.1:{port}"
    harness.wait_http(f"{llama_url}/health", 30, "llama stub")
    redis_url = harness.start_redis().url()
    env = service_env(REDIS_URL=redis_url, LOKI_URL=loki_url, LLAMA_URL=llama_url, **NO_LIMITS)
    worker = harness.start_worker(env, name="worker", concurrency=1)
    api_url = harness.start_api(env, name="api", timeout=90)
    return Stack(api_url, redis_url, worker)


def start_stub(harness: Harness, latency_ms: float) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "tests.stubs.loki_stub", "--port", str(port)]
    harness.spawn("loki-stub", [*argv, "--latency-ms", str(latency_ms)])
    url = f"http://127.0.0.1:{port}"
    harness.wait_http(f"{url}/ready", 30, "Loki stub")
    return url


def real_loki(url: str | None) -> bool:
    if not url:
        return False
    try:
        return httpx.get(f"{url}/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


# --- the run ------------------------------------------------------------------------------


def cases(
    sizes: Sequence[int], positions: Sequence[float], start_ns: int, *, sampled_only: bool = False
) -> Iterator[Case]:
    if not sampled_only:
        for size in sizes:
            for at in positions:
                yield Case(size, at, size, start_ns)
    largest = max(sizes)
    if largest > DEFAULT_SCAN_LIMIT:
        yield Case(largest, 0.5, DEFAULT_SCAN_LIMIT, start_ns)
        yield Case(largest, NOISY_CAUSE_AT, DEFAULT_SCAN_LIMIT, start_ns, noisy=True)


def measure(args: argparse.Namespace, harness: Harness, results: dict[str, Any]) -> None:
    backend = "real Loki" if real_loki(args.loki_url) else "Loki stub"
    loki_url = (
        args.loki_url if backend == "real Loki" else start_stub(harness, args.stub_latency_ms)
    )
    results["backend"] = backend
    results["loki_url"] = loki_url
    if backend == "Loki stub":
        results["stub_latency_ms"] = args.stub_latency_ms
    log(f"backend: {backend} at {loki_url}")
    stack = start_stack(harness, loki_url)
    # Recent enough for a real Loki to accept (it refuses samples older than a week).
    start_ns = (time.time_ns() // MINUTE - 120) * MINUTE
    rows = results["cases"] = []
    with httpx.Client() as client:
        pushed: set[str] = set()
        for case in cases(args.sizes, args.positions, start_ns, sampled_only=args.sampled_only):
            if case.namespace not in pushed:
                log(f"pushing {case.namespace} ({case.size:,} lines)")
                push(client, loki_url, case)
                pushed.add(case.namespace)
                time.sleep(1)
            plan = plan_for(case, case.scan_limit)
            seq_lines, seq_s = read_sequential(client, loki_url, plan)
            par_lines, par_s = read_parallel(client, loki_url, plan)
            log(f"{case.name}: read {par_lines:,} in {par_s:.1f}s, sequential {seq_s:.1f}s")
            job = run_job(stack, case)
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in job.stages_s.items())
            log(f"{case.name}: findings after {job.findings_s}s ({stages}), cause {job.cause_rank}")
            rows.append(
                {
                    "case": case.name,
                    "size": case.size,
                    "cause_at": case.cause_at,
                    "scan_limit": case.scan_limit,
                    "noisy": case.noisy,
                    "read_lines": par_lines,
                    "parallel_lines_per_s": par_lines / par_s,
                    "sequential_lines": seq_lines,
                    "sequential_lines_per_s": seq_lines / seq_s,
                    "ratio": (par_lines / par_s) / (seq_lines / seq_s) if seq_lines else None,
                    **job.__dict__,
                }
            )
    results["checks"] = checks(rows, backend)


def checks(rows: list[dict[str, Any]], backend: str) -> dict[str, bool]:
    full = [r for r in rows if r["scan_limit"] >= r["size"]]
    largest = max(r["size"] for r in rows)
    out = {
        "cause named T1 in every case": all(r["cause_rank"] == 1 for r in rows),
        "every job succeeded, stage data gone": all(
            r["status"] == "succeeded" and r["stage_data_left"] == 0 for r in rows
        ),
        f"peak worker RSS <= {TARGETS['rss_mib']:.0f} MiB": all(
            r["rss_mib"] <= TARGETS["rss_mib"] for r in rows
        ),
        f"Redis per job <= {TARGETS['redis_mib']:.0f} MiB": all(
            r["redis_mib"] <= TARGETS["redis_mib"] for r in rows
        ),
    }
    noisy = [r for r in rows if r.get("noisy")]
    if noisy:
        out["the one FATAL among 100k warnings+errors named T1 at the default scan_limit"] = all(
            r["cause_rank"] == 1 for r in noisy
        )
    if largest >= 1_000_000 and full:
        out["1M lines to findings <= 60 s"] = all(
            (r["findings_s"] or 1e9) <= TARGETS["findings_1m_s"]
            for r in full
            if r["size"] == largest
        )
    if backend == "Loki stub" and full:
        out[f"parallel read >= {TARGETS['read_ratio']:.0f}x sequential"] = all(
            (r["ratio"] or 0) >= TARGETS["read_ratio"] for r in full if r["size"] >= 100_000
        )
    return out


HEADERS = [
    "case",
    "read lines/s: parallel",
    "sequential",
    "ratio",
    "to findings s",
    "lines/s to findings",
    "cause",
    "coverage",
    "worker RSS MiB",
    "Redis MiB",
]


def render(results: dict[str, Any]) -> str:
    rows = results.get("cases", [])
    backend = results.get("backend", "?")
    if backend == "Loki stub":
        backend += f" ({results['stub_latency_ms']:g} ms per query)"
    lines = [
        f"`{results['command']}` on {results['machine']['cpu']} ({results['machine']['cores']} "
        f"cores), {results['date']}, against the {backend}.",
        "",
        table(
            HEADERS,
            [
                [
                    r["case"],
                    round(r["parallel_lines_per_s"]),
                    round(r["sequential_lines_per_s"]),
                    f"{r['ratio']:.2f}x" if r["ratio"] else "-",
                    r["findings_s"],
                    round(r["size"] / r["findings_s"]) if r["findings_s"] else "-",
                    f"T{r['cause_rank']}" if r["cause_rank"] else "missed",
                    f"{r['coverage'].get('mode', '?')} {r['coverage'].get('lines_read', 0):,}",
                    r["rss_mib"],
                    r["redis_mib"],
                ]
                for r in rows
            ],
            "l" + "r" * 9,
        ),
        "",
        *[f"- {'✔' if ok else '✘'} {name}" for name, ok in results.get("checks", {}).items()],
    ]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg_start": os.getloadavg()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loki-url", help="a real Loki to use when it answers /ready")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10_000, 100_000, 1_000_000],
    )
    parser.add_argument(
        "--positions",
        type=lambda text: [float(n) for n in text.split(",")],
        default=list(POSITIONS),
        help="where the cause line sits, as fractions of the window",
    )
    parser.add_argument("--stub-latency-ms", type=float, default=100.0)
    parser.add_argument(
        "--sampled-only",
        action="store_true",
        help="only the cases at the default scan_limit (the largest size, plain and noisy)",
    )
    parser.add_argument("--docs", action="store_true", help="update docs/benchmarks.md")
    return parser.parse_args(argv)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/scale.py", *sys.argv[1:]]),
        "machine": machine(),
        "logs": str(logs),
    }
    harness = Harness(logs)
    status = 0
    try:
        measure(args, harness, results)
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"failed: {results['error']} (service logs in {logs})")
        status = 1
    finally:
        harness.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = render(results)
    print(text)
    if args.docs and "error" not in results:
        replace_generated("scale", text)
    if not all(results.get("checks", {}).values()):
        status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
