"""Benchmark the job pipeline end to end: time to first token, token relay, tracing overhead.

    .venv/bin/python bench/pipeline.py [--jobs 50] [--clients 200] [--json]

Starts its own processes through the harness (`cli.harness`): the llama stub
(`tests.stubs.llama_stub`, a separate process that stamps each token with its emission
time), the Loki stub (a thread here) with the tests' small incident, and per stack a private
redis-server, one Celery worker (prefork, concurrency 2) and one API (uvicorn), all with the
tests' environment (`tests.support.stack.service_env`, per-key limits lifted). Then, in one
run:

a. TTFT: POST /v1/jobs → first `token` SSE event, interleaved with direct requests to the
   stub's /v1/chat/completions (same prompt), plus where the pipeline's time goes.
b. Relay: per-token latency, stub emission → SSE client, with 1 client and with N clients
   on one API process (all following the same job; the job's Loki query is held so every
   client is subscribed before the first token).
c. Tracing: batches of jobs submitted back to back on a tracing-off and a tracing-on stack
   (both alive, separate Redis DBs, batches alternated ABBA); throughput and TTFT.

Always writes bench/results/pipeline.json; `--json` also prints it. Every process it starts is
stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
# The services run from the checkout first on PYTHONPATH (default: this one), so one bench can
# measure another checkout's code: `PYTHONPATH=/work/main .venv/bin/python bench/pipeline.py`.
CODE = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or ROOT).resolve()
sys.path.insert(0, str(CODE))

from bench.report import replace_generated  # noqa: E402
from cli.harness import Harness, Process, free_port  # noqa: E402
from shared.job_store import JobStore  # noqa: E402  (needs the repo root on sys.path)
from shared.schemas import NormalizeResult  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.stubs.loki_stub import LokiStub, start_loki_stub  # noqa: E402
from tests.stubs.otlp_receiver import OtlpReceiver, start_otlp_receiver  # noqa: E402
from tests.stubs.server import ThreadedServer  # noqa: E402
from tests.support.incident import job_request, push_incident  # noqa: E402
from tests.support.stack import service_env  # noqa: E402
from workers.llm.client import LlamaClient  # noqa: E402
from workers.llm.prompt import build_prompt  # noqa: E402
from workers.stages.call_llm import describe_window, plan_tokens  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pipeline.json"
STAGE_ORDER = ("query_loki", "flatten", "normalize", "call_llm")
FIRST_TOKEN_MS = 100
TOKEN_MS = 5
TOKENS = 100
WARMUP_JOBS = 4
CONNECT_CONCURRENCY = 50  # at once, over all client processes (see the report: Redis pool)
READY_MARGIN_NS = 50_000_000  # a client is subscribed this long after "stream open" at most
# The per-key limits would turn the load this benchmark makes into 429s: lift them.
NO_LIMITS = {
    "MAX_STREAMS_PER_KEY": "100000",
    "MAX_ACTIVE_JOBS_PER_KEY": "100000",
    "RATE_LIMIT_PER_MINUTE": "1000000",
}
# Every stamped token of a frame (the stub's token text is `<time_ns> `; merged ones abut).
_STAMP_ANY = re.compile(r"(\d{19}) ")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- small helpers -------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def group_pids(pgid: int) -> list[int]:
    """The live processes of one process group (a worker and its prefork children)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rfind(")") + 2 :].split()[2]) == pgid:
                pids.append(int(stat.parent.name))
    return pids


def pids_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by these processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/stat").read_text()
            rest = text[text.rfind(")") + 2 :].split()
            total += int(rest[11]) + int(rest[12])
    return total / _CLK_TCK


def group_cpu_s(pgid: int) -> float:
    return pids_cpu_s(group_pids(pgid))


def machine_cpu_s() -> dict[str, float]:
    """CPU seconds of the whole machine so far (all processes, all cores): busy and steal."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return {
        "machine busy": (user + nice + system + irq + softirq) / _CLK_TCK,
        "machine steal": steal / _CLK_TCK,
    }


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- processes ---------------------------------------------------------------------------


@dataclass
class Stack:
    """One API process and one Celery worker on a private redis-server of their own."""

    name: str
    api_url: str
    redis_url: str
    api: Process
    worker: Process

    def pgids(self) -> dict[str, int]:
        return {"api": self.api.pid, "worker": self.worker.pid}


@dataclass
class Services:
    """Everything the benchmark started; `close()` stops all of it."""

    harness: Harness
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    llama: Process | None = None
    llama_url: str = ""
    loki: LokiStub | None = None
    otlp: tuple[OtlpReceiver, ThreadedServer] | None = None
    stacks: list[Stack] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.harness.run_dir

    def close(self) -> None:
        self.stack.close()
        self.harness.stop()


def start_llama(services: Services) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tests.stubs.llama_stub", "--port", str(port)]
    argv += ["--first-token-ms", str(FIRST_TOKEN_MS), "--token-ms", str(TOKEN_MS)]
    argv += ["--tokens", str(TOKENS), "--stamp-tokens"]
    services.llama = services.harness.spawn("llama-stub", argv)
    services.llama_url = f"http://127.0.0.1:{port}"
    services.harness.wait_http(f"{services.llama_url}/health", 30, "llama stub")


def start_loki(services: Services) -> None:
    loki = start_loki_stub()
    services.stack.callback(loki.stop)
    services.loki = loki
    push_incident(loki.url)


def start_otlp(services: Services) -> tuple[OtlpReceiver, ThreadedServer]:
    if services.otlp is None:
        receiver, server = start_otlp_receiver()
        services.stack.callback(server.stop)
        services.otlp = (receiver, server)
    return services.otlp


def start_stack(services: Services, name: str, *, tracing: bool) -> Stack:
    """Start a redis-server, a worker and an API of their own; wait until /ready."""
    assert services.loki is not None
    harness = services.harness
    redis_url = harness.start_redis().url()
    overrides = {"LOKI_URL": services.loki.url, "LLAMA_URL": services.llama_url, **NO_LIMITS}
    # The relay holds the job's first Loki query while its clients connect (1,000 take longer
    # than the tests' 5 s Loki timeout, after which an unheld retry would start the job early).
    overrides["LOKI_TIMEOUT_S"] = "120"
    if tracing:
        overrides |= {
            "OTEL_SDK_DISABLED": "false",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": start_otlp(services)[1].url,
        }
    env = service_env(REDIS_URL=redis_url, **overrides)
    worker = harness.start_worker(env, name=f"{name}-worker", concurrency=2)
    api_url = harness.start_api(env, name=f"{name}-api", timeout=90)
    stack = Stack(name, api_url, redis_url, harness.processes[-1], worker)
    services.stacks.append(stack)
    return stack


# --- SSE following -------------------------------------------------------------------------


SSE_HEADERS = {"Accept": "text/event-stream"}


class _Ticket:
    """A slot of an optional semaphore, released at most once."""

    def __init__(self, gate: asyncio.Semaphore | None):
        self.gate = gate
        self.held = False

    async def acquire(self) -> None:
        if self.gate is not None:
            await self.gate.acquire()
            self.held = True

    def release(self) -> None:
        if self.held and self.gate is not None:
            self.gate.release()
            self.held = False


@dataclass
class Follower:
    """One SSE client of one job: what it saw and when (all times `time.time_ns()`)."""

    ready_ns: int = 0
    first_token_ns: int = 0
    first_token_stamp_ns: int = 0
    first_token_event_ts: float = 0.0
    done_ns: int = 0
    status: str = ""
    errors: int = 0
    rejected: int = 0  # connects answered 5xx (and retried)
    frames: int = 0  # token SSE frames received (fewer than tokens when the API coalesced)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[tuple[int, int]] = field(default_factory=list)  # (stamp, latency) per token

    async def run(
        self,
        client: httpx.AsyncClient,
        url: str,
        gate: asyncio.Semaphore | None = None,
        retries: int = 0,
    ) -> None:
        """Follow to `done`; `gate` bounds concurrent connects, 5xx answers are retried."""
        for attempt in range(retries + 1):
            ticket = _Ticket(gate)
            await ticket.acquire()
            try:
                async with client.stream("GET", url, headers=SSE_HEADERS) as resp:
                    if resp.status_code >= 500 and attempt < retries:
                        self.rejected += 1
                        ticket.release()
                        await asyncio.sleep(0.2)
                        continue
                    resp.raise_for_status()
                    await self._read(resp, ticket)
                    return
            finally:
                ticket.release()

    async def _read(self, resp: httpx.Response, ticket: _Ticket) -> None:
        event = "message"
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                if self._data(event, line[5:].strip()):
                    return
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line == "":
                event = "message"
            elif line.startswith(":") and not self.ready_ns:
                self.ready_ns = time.time_ns()
                ticket.release()

    def _data(self, event: str, data: str) -> bool:
        """Handle one event's data; True once the stream is over."""
        if event == "token":
            now = time.time_ns()
            # A frame the API coalesced for a client behind carries several stamped tokens.
            stamps = [int(m) for m in _STAMP_ANY.findall(data)]
            if not stamps:
                return False
            self.frames += 1
            self.samples += [(stamp, now - stamp) for stamp in stamps]
            stamp = stamps[0]
            if not self.first_token_ns:
                self.first_token_ns, self.first_token_stamp_ns = now, stamp
                self.first_token_event_ts = float(json.loads(data)["ts"])
        elif event == "stage":
            body = json.loads(data)
            info = self.stages.setdefault(body["data"]["stage"], {})
            info[body["data"]["state"]] = float(body["ts"])
            if body["data"].get("duration_ms") is not None:  # `started` carries null
                info["duration_ms"] = float(body["data"]["duration_ms"])
        elif event == "error":
            self.errors += 1
        elif event == "done":
            self.done_ns = time.time_ns()
            self.status = str(json.loads(data)["data"]["status"])
            return True
        return False


@dataclass
class JobRun:
    """One job as the benchmark saw it."""

    job_id: str
    submit_ns: int
    accepted_ns: int
    follower: Follower

    @property
    def ok(self) -> bool:
        return self.follower.status == "succeeded" and self.follower.first_token_ns > 0

    @property
    def ttft_ms(self) -> float:
        return (self.follower.first_token_ns - self.submit_ns) / 1e6


async def submit(client: httpx.AsyncClient, api_url: str) -> tuple[str, int, int]:
    submitted = time.time_ns()
    response = await client.post(f"{api_url}/v1/jobs", json=job_request())
    accepted = time.time_ns()
    if response.status_code != 202:
        raise RuntimeError(f"submit failed: {response.status_code} {response.text}")
    return str(response.json()["job_id"]), submitted, accepted


async def follow(
    client: httpx.AsyncClient,
    api_url: str,
    job_id: str,
    timeout: float = 60,
    gate: asyncio.Semaphore | None = None,
    retries: int = 0,
) -> Follower:
    follower = Follower()
    url = f"{api_url}/v1/jobs/{job_id}/events"
    await asyncio.wait_for(follower.run(client, url, gate, retries), timeout)
    return follower


async def run_job(client: httpx.AsyncClient, api_url: str, timeout: float = 30) -> JobRun:
    """Submit one job, connect right after the 202 and follow it to `done` (or give up)."""
    job_id, submitted, accepted = await submit(client, api_url)
    return JobRun(
        job_id, submitted, accepted, await follow_or_note(client, api_url, job_id, timeout)
    )


async def follow_or_note(
    client: httpx.AsyncClient, api_url: str, job_id: str, timeout: float
) -> Follower:
    """`follow`, but a job that never ends is logged and counted as failed, not fatal."""
    try:
        return await follow(client, api_url, job_id, timeout)
    except TimeoutError:
        view = (await client.get(f"{api_url}/v1/jobs/{job_id}")).text
        log(f"job {job_id} did not finish within {timeout:g} s: {view[:600]}")
        return Follower(status="timeout")


def new_client(connections: int = 20) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30, connect=10),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def warm_up(api_url: str, jobs: int = WARMUP_JOBS) -> None:
    """A few jobs first: each worker child imports and connects on its first task."""
    async with new_client() as client:
        runs = await asyncio.gather(*(run_job(client, api_url) for _ in range(jobs)))
        failed = [
            (await client.get(f"{api_url}/v1/jobs/{r.job_id}")).text for r in runs if not r.ok
        ]
    if failed:
        raise RuntimeError(f"warm-up jobs failed: {failed}")


# --- a. TTFT -------------------------------------------------------------------------------


def chat_body(messages: list[dict[str, str]]) -> dict[str, Any]:
    settings = Settings()
    return {
        "model": settings.model_name,
        "messages": messages,
        "stream": True,
        "max_tokens": settings.llm_max_tokens,
        "temperature": settings.llm_temperature,
        "stream_options": {"include_usage": True},
    }


async def direct_ttft_ms(client: httpx.AsyncClient, llama_url: str, body: dict[str, Any]) -> float:
    """POST straight to the stub; ms to the first chunk with content; reads the whole stream."""
    first = math.nan
    started = time.perf_counter()
    async with client.stream("POST", f"{llama_url}/v1/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if math.isnan(first) and line.startswith("data: {") and '"content":"' in line:
                first = (time.perf_counter() - started) * 1000
    return first


def profile_prompt(
    stack: Stack, job_id: str, llama_url: str
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Redo call_llm's prompt step for a finished job: its messages and its tokenize cost."""
    store = JobStore(redis.Redis.from_url(stack.redis_url), ttl_s=3600, backlog_max=50_000)
    # Stage data is deleted when a job ends: rebuild the evidence from the job's result
    # (what the model was shown) and the normalize counts.
    view = store.view(job_id)
    assert view.result is not None, f"job {job_id} has no result"
    counts = view.counts.normalize
    assert counts is not None, f"job {job_id} has no normalize counts"
    normalized = NormalizeResult(
        evidence=view.result.evidence,
        entries=counts.entries,
        templates=counts.templates,
        redactions=counts.redactions,
    )
    request = view.request
    settings = Settings()
    calls: list[str] = []
    hooks = {"request": [lambda r: calls.append(r.url.path)]}
    with httpx.Client(event_hooks=hooks) as http:
        client = LlamaClient(http, llama_url, model=settings.model_name)
        started = time.perf_counter()
        props = client.props()
        props_ms = (time.perf_counter() - started) * 1000
        _, budget = plan_tokens(props.n_ctx, settings.llm_max_tokens)
        started = time.perf_counter()
        prompt = build_prompt(
            normalized.evidence,
            header=describe_window(request, normalized),
            question=request.question,
            limit=request.limit,
            budget_tokens=budget,
            count_tokens=client.count_tokens,
        )
        build_ms = (time.perf_counter() - started) * 1000
        tokenize_calls = calls.count("/tokenize")
        tokenize_url = f"{llama_url}/tokenize"
        one = [
            _timed_ms(lambda: http.post(tokenize_url, json={"content": "x y z"})) for _ in range(20)
        ]
    profile = {
        "props_ms": props_ms,
        "tokenize_calls": tokenize_calls,
        "build_prompt_ms": build_ms,
        "tokenize_round_trip_ms": statistics.median(one),
        "evidence_items": len(normalized.evidence),
        "evidence_in_prompt": len(prompt.evidence),
        "prompt_tokens": prompt.prompt_tokens,
    }
    return prompt.messages, profile


def _timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


async def ttft_interleaved(
    stack: Stack, llama_url: str, body: dict[str, Any], jobs: int
) -> tuple[list[float], list[JobRun]]:
    direct: list[float] = []
    runs: list[JobRun] = []
    async with new_client() as client:
        for _ in range(jobs):
            direct.append(await direct_ttft_ms(client, llama_url, body))
            runs.append(await run_job(client, stack.api_url))
    return direct, runs


def breakdown(run: JobRun) -> dict[str, float]:
    """Where one job's TTFT went, in ms (wall clock of the same host, all processes)."""
    f = run.follower
    st = f.stages
    parts = {
        "POST /v1/jobs (store + enqueue)": (run.accepted_ns - run.submit_ns) / 1e6,
        "202 → query_loki started": st["query_loki"]["started"] * 1e3 - run.accepted_ns / 1e6,
    }
    for prev, nxt in itertools.pairwise(STAGE_ORDER):
        parts[f"{prev} (duration_ms)"] = st[prev]["duration_ms"]
        parts[f"{prev} → {nxt} handoff"] = (st[nxt]["started"] - st[prev]["finished"]) * 1e3
    parts["call_llm start → stub emits token 1"] = (
        f.first_token_stamp_ns / 1e6 - st["call_llm"]["started"] * 1e3
    )
    parts["stub emits → worker commits token"] = (
        f.first_token_event_ts * 1e3 - f.first_token_stamp_ns / 1e6
    )
    parts["worker commit → SSE client"] = f.first_token_ns / 1e6 - f.first_token_event_ts * 1e3
    # Stage durations overlap the "finished" timestamps: the gap between a stage's own
    # duration and its started/finished events is the event-commit overhead, folded in here.
    parts["(stage bookkeeping outside duration_ms)"] = sum(
        (st[s]["finished"] - st[s]["started"]) * 1e3 - st[s]["duration_ms"] for s in STAGE_ORDER[:3]
    )
    return parts


def run_ttft(services: Services, stack: Stack, jobs: int) -> dict[str, Any]:
    log("TTFT: profiling the prompt step on a warm-up job")
    sample = asyncio.run(_one_job(stack.api_url))
    messages, profile = profile_prompt(stack, sample.job_id, services.llama_url)
    log(f"TTFT: {jobs} pipeline jobs interleaved with {jobs} direct requests")
    cpu0 = _cpu_snapshot(services, [stack])
    wall0 = time.perf_counter()
    direct, runs = asyncio.run(
        ttft_interleaved(stack, services.llama_url, chat_body(messages), jobs)
    )
    cpu = _cpu_delta(services, [stack], cpu0, time.perf_counter() - wall0)
    good = [r for r in runs if r.ok]
    pipeline = [r.ttft_ms for r in good]
    parts = [breakdown(r) for r in good]
    names = list(parts[0]) if parts else []
    return {
        "direct_ms": summary([d for d in direct if not math.isnan(d)]),
        "pipeline_ms": summary(pipeline),
        "ratio_median": statistics.median(pipeline) / statistics.median(direct),
        "failed_jobs": len(runs) - len(good),
        "breakdown_median_ms": {n: statistics.median(p[n] for p in parts) for n in names},
        "prompt_profile": profile,
        "cpu_percent": cpu,
    }


async def _one_job(api_url: str) -> JobRun:
    async with new_client() as client:
        return await run_job(client, api_url)


# --- b. relay ------------------------------------------------------------------------------


CpuSamples = list[tuple[int, dict[str, float]]]  # (time_ns, CPU seconds per component)


def relay_shard(api_url: str, job_id: str, clients: int, connect_gate: int) -> dict[str, Any]:
    """Runs in a client process: `clients` SSE followers of one job; their token samples."""
    return asyncio.run(_relay_shard(api_url, job_id, clients, connect_gate))


async def _relay_shard(
    api_url: str, job_id: str, clients: int, connect_gate: int
) -> dict[str, Any]:
    cpu: CpuSamples = []
    sampler = asyncio.create_task(_sample_own_cpu(cpu))
    gate = asyncio.Semaphore(connect_gate)
    async with new_client(clients + 5) as client:
        results = await asyncio.gather(
            *(follow(client, api_url, job_id, 120, gate, retries=3) for _ in range(clients)),
            return_exceptions=True,
        )
    sampler.cancel()
    cpu.append((time.time_ns(), {"clients": time.process_time()}))
    followers = [r for r in results if isinstance(r, Follower)]
    return {
        "samples": [s for f in followers for s in f.samples],
        "ready_ns": max((f.ready_ns for f in followers), default=0),
        "tokens_per_client": [len(f.samples) for f in followers],
        "token_frames": sum(f.frames for f in followers),
        "failed_clients": len(results) - len(followers) + sum(f.errors > 0 for f in followers),
        "rejected_connects": sum(f.rejected for f in followers),
        "exceptions": sorted({repr(r)[:200] for r in results if isinstance(r, BaseException)}),
        "cpu": cpu,
    }


async def _sample_own_cpu(out: CpuSamples, interval: float = 0.05) -> None:
    while True:
        out.append((time.time_ns(), {"clients": time.process_time()}))
        await asyncio.sleep(interval)


class CpuSampler:
    """Samples the CPU seconds of the benchmark's processes every `interval` s in a thread."""

    def __init__(self, probes: dict[str, Callable[[], float]], interval: float = 0.05):
        self.probes = probes
        self.interval = interval
        self.samples: CpuSamples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            values = {}
            for name, probe in self.probes.items():
                with contextlib.suppress(OSError, ValueError, redis.RedisError):
                    values[name] = probe()
            self.samples.append((time.time_ns(), values))
            self._stop.wait(self.interval)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def window_percent(samples: CpuSamples, t0: int, t1: int) -> dict[str, float]:
    """CPU % per component between the last sample at or before t0 and the first at or after t1."""
    before = [s for s in samples if s[0] <= t0] or samples[:1]
    after = [s for s in samples if s[0] >= t1] or samples[-1:]
    (a_ns, a), (b_ns, b) = before[-1], after[0]
    if b_ns <= a_ns:
        return {}
    return {k: 100 * (b[k] - a[k]) / ((b_ns - a_ns) / 1e9) for k in a if k in b}


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def relay_job(
    services: Services,
    stack: Stack,
    pool: ProcessPoolExecutor,
    clients: int,
    procs: int,
    server_cpu: CpuSamples,
    hold_ms_per_client: float = 12.0,
) -> dict[str, Any]:
    """One job followed by `clients` clients in `procs` processes; Loki held while they connect.

    Only tokens the stub emitted after every client had its stream open count; the CPU
    figures cover the streaming window (first live token emitted → last one received).
    """
    assert services.loki is not None
    services.loki.hang_next(0.5 + clients * hold_ms_per_client / 1000)
    job_id, _, _ = asyncio.run(_submit_only(stack.api_url))
    gate = max(1, CONNECT_CONCURRENCY // procs)
    futures = [
        pool.submit(relay_shard, stack.api_url, job_id, n, gate) for n in split(clients, procs)
    ]
    shards = [f.result(timeout=180) for f in futures]
    for shard in shards:
        for text in shard["exceptions"]:
            log(f"relay client failed: {text}")
    ready = max(s["ready_ns"] for s in shards) + READY_MARGIN_NS
    live = [(st, lat) for shard in shards for st, lat in shard["samples"] if st > ready]
    total = sum(len(shard["samples"]) for shard in shards)
    t0 = min((st for st, _ in live), default=ready)
    t1 = max((st + lat for st, lat in live), default=ready)
    cpu = window_percent(server_cpu, t0, t1)
    cpu["clients"] = sum(window_percent(s["cpu"], t0, t1).get("clients", 0.0) for s in shards)
    return {
        "job_id": job_id,
        "latencies_ms": [lat / 1e6 for _, lat in live],
        "token_frames": sum(s["token_frames"] for s in shards),
        "tokens": total,
        "window_s": (t1 - t0) / 1e9,
        "cpu_percent": cpu,
        "dropped_before_ready": total - len(live),
        "failed_clients": sum(s["failed_clients"] for s in shards),
        "rejected_connects": sum(s["rejected_connects"] for s in shards),
        "short_clients": sum(n < TOKENS for s in shards for n in s["tokens_per_client"]),
    }


async def _submit_only(api_url: str) -> tuple[str, int, int]:
    async with new_client() as client:
        return await submit(client, api_url)


def cpu_probes(services: Services, stack: Stack) -> dict[str, Callable[[], float]]:
    """CPU-seconds readers for the stub, API, worker (with its children) and redis-server."""
    groups = {"api": stack.api, "worker": stack.worker, "llama stub": services.llama}
    probes: dict[str, Callable[[], float]] = {}
    for name, process in groups.items():
        if process is not None:
            probes[name] = functools.partial(pids_cpu_s, group_pids(process.pid))
    client = redis.Redis.from_url(stack.redis_url)
    probes["redis-server"] = lambda: redis_cpu_s(client)
    probes["machine busy"] = lambda: machine_cpu_s()["machine busy"]
    probes["machine steal"] = lambda: machine_cpu_s()["machine steal"]
    return probes


def run_relay(
    services: Services,
    stack: Stack,
    pool: ProcessPoolExecutor,
    clients: int,
    procs: int,
    jobs: int,
    hold_ms_per_client: float = 12.0,
) -> dict[str, Any]:
    log(f"relay: {jobs} jobs x {clients} client(s) in {procs} process(es)")
    latencies: list[float] = []
    counts = dict.fromkeys(
        ("dropped_before_ready", "failed_clients", "rejected_connects", "short_clients"), 0
    )
    cpu_weighted: dict[str, float] = {}
    windows = 0.0
    frames = tokens = 0
    with CpuSampler(cpu_probes(services, stack)) as sampler:
        for _ in range(jobs):
            result = relay_job(
                services, stack, pool, clients, procs, sampler.samples, hold_ms_per_client
            )
            latencies += result["latencies_ms"]
            for key in counts:
                counts[key] += result[key]
            windows += result["window_s"]
            frames += result["token_frames"]
            tokens += result["tokens"]
            for key, value in result["cpu_percent"].items():
                cpu_weighted[key] = cpu_weighted.get(key, 0.0) + value * result["window_s"]
    cpu = {k: v / windows for k, v in cpu_weighted.items()} if windows else {}
    per_s = len(latencies) / windows if windows else math.nan
    return {
        "clients": clients,
        "client_processes": procs,
        "jobs": jobs,
        "latency_ms": summary(latencies),
        "frames_per_s": per_s,
        **counts,
        "cpu_percent": cpu,
        "api_cpu_s_per_million_frames": api_cpu_per_million(cpu, per_s),
        "token_frames_per_token": frames / tokens if tokens else math.nan,
        "loadavg": os.getloadavg(),
    }


def api_cpu_per_million(cpu_percent: dict[str, float], frames_per_s: float) -> float:
    """The API's CPU-seconds per million token frames delivered (a token reaching one client
    counts as one, merged or not): its CPU share over the streaming window / delivery rate."""
    if not frames_per_s or "api" not in cpu_percent:
        return math.nan
    return cpu_percent["api"] / 100 / frames_per_s * 1e6


# --- c. tracing overhead -------------------------------------------------------------------


async def batch(api_url: str, jobs: int) -> tuple[float, list[JobRun]]:
    """Submit `jobs` back to back, follow each; wall seconds from first POST to last `done`."""
    async with new_client(jobs + 5) as client:
        started = time.time_ns()
        tasks = []
        for _ in range(jobs):
            job_id, submitted, accepted = await submit(client, api_url)
            follower = asyncio.create_task(follow_or_note(client, api_url, job_id, 120))
            tasks.append((job_id, submitted, accepted, follower))
        runs = [JobRun(j, s, a, await f) for j, s, a, f in tasks]
    return (max(r.follower.done_ns for r in runs) - started) / 1e9, runs


def run_tracing(
    services: Services, off: Stack, on: Stack, jobs: int, rounds: int
) -> dict[str, Any]:
    order = [(off, on), (on, off)] * math.ceil(rounds / 2)
    walls: dict[str, float] = {off.name: 0.0, on.name: 0.0}
    ttfts: dict[str, list[float]] = {off.name: [], on.name: []}
    failed: dict[str, int] = {off.name: 0, on.name: 0}
    cpu: dict[str, dict[str, float]] = {}
    for first, second in order[:rounds]:
        for stack in (first, second):
            log(f"tracing: batch of {jobs} jobs on {stack.name}")
            cpu0 = _cpu_snapshot(services, [stack])
            wall, runs = asyncio.run(batch(stack.api_url, jobs))
            delta = _cpu_delta(services, [stack], cpu0, wall)
            for key, value in delta.items():
                cpu.setdefault(stack.name, {}).setdefault(key, 0.0)
                cpu[stack.name][key] += value / rounds
            walls[stack.name] += wall
            ttfts[stack.name] += [r.ttft_ms for r in runs if r.ok]
            failed[stack.name] += sum(not r.ok for r in runs)
    total = jobs * rounds
    spans = len(services.otlp[0].snapshot()) if services.otlp else 0
    per_stack: dict[str, dict[str, Any]] = {
        name: {
            "jobs": total,
            "wall_s": walls[name],
            "jobs_per_s": total / walls[name],
            "ttft_ms": summary(ttfts[name]),
            "failed_jobs": failed[name],
            "cpu_percent": cpu[name],
            "cpu_ms_per_job": {
                role: cpu[name][role] / 100 * walls[name] / total * 1000
                for role in ("api", "worker")
            },
        }
        for name in walls
    }
    return {
        "batches": f"{rounds} rounds of {jobs} jobs per stack, alternated ABBA, both stacks alive",
        "stacks": per_stack,
        "throughput_ratio_off_on": per_stack[off.name]["jobs_per_s"]
        / per_stack[on.name]["jobs_per_s"],
        "ttft_median_ratio_on_off": per_stack[on.name]["ttft_ms"]["median"]
        / per_stack[off.name]["ttft_ms"]["median"],
        "spans_received": spans,
    }


# --- CPU accounting ------------------------------------------------------------------------


def _cpu_snapshot(services: Services, stacks: Sequence[Stack]) -> dict[str, float]:
    snap = {"bench (this process)": time.process_time()}
    if services.llama is not None:
        snap["llama stub"] = group_cpu_s(services.llama.pid)
    for stack in stacks:
        for role, pgid in stack.pgids().items():
            snap[role] = group_cpu_s(pgid)
    with contextlib.suppress(redis.RedisError):
        snap["redis-server"] = sum(
            redis_cpu_s(redis.Redis.from_url(stack.redis_url)) for stack in stacks
        )
    snap.update(machine_cpu_s())
    return snap


def _cpu_delta(
    services: Services, stacks: Sequence[Stack], before: dict[str, float], wall: float
) -> dict[str, float]:
    after = _cpu_snapshot(services, stacks)
    return {k: 100 * (after[k] - before[k]) / wall for k in before if k in after}


# --- report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


def render_ttft(t: dict[str, Any]) -> list[str]:
    rows = [
        (name, s["n"], s["median"], s["p90"])
        for name, s in (("direct (stub)", t["direct_ms"]), ("pipeline", t["pipeline_ms"]))
    ]
    p = t["prompt_profile"]
    return [
        "TTFT (ms)",
        table(("path", "n", "median", "p90"), rows),
        f"ratio median(pipeline)/median(direct) = {t['ratio_median']:.2f} (target <= 1.10)",
        "",
        "Where the pipeline's TTFT goes (median ms per part)",
        table(("part", "ms"), list(t["breakdown_median_ms"].items())),
        f"prompt step per job: GET /props {p['props_ms']:.1f} ms, {p['tokenize_calls']} "
        f"POST /tokenize in {p['build_prompt_ms']:.1f} ms (one round trip "
        f"{p['tokenize_round_trip_ms']:.2f} ms), {p['evidence_in_prompt']}/"
        f"{p['evidence_items']} evidence items, {p['prompt_tokens']} prompt tokens",
        "CPU %: " + ", ".join(f"{k} {v:.0f}" for k, v in t["cpu_percent"].items()),
        "",
    ]


def render_relay(r: dict[str, Any]) -> list[str]:
    s = r["latency_ms"]
    row = [s["n"], s["median"], s["p90"], s["p99"], s["max"], r["frames_per_s"]]
    row += [r["dropped_before_ready"], r["short_clients"], r["failed_clients"]]
    row += [r["rejected_connects"]]
    headers = ["samples", "p50 ms", "p90 ms", "p99 ms", "max ms", "frames/s"]
    headers += ["dropped", "short", "failed", "5xx"]
    return [
        f"Relay, {r['clients']} client(s) in {r['client_processes']} process(es), "
        f"{r['jobs']} job(s), all clients on the same job",
        table(headers, [row]),
        "CPU % while streaming: " + ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_percent"].items()),
        f"API CPU-s per million frames delivered: {r['api_cpu_s_per_million_frames']:.1f}; "
        f"SSE token frames per token: {r['token_frames_per_token']:.2f}; "
        "load average after: " + " ".join(f"{x:.2f}" for x in r["loadavg"]),
        "",
    ]


def render_tracing(tr: dict[str, Any]) -> list[str]:
    rows = [
        (name, s["jobs"], s["wall_s"], s["jobs_per_s"], s["ttft_ms"]["median"])
        + (s["ttft_ms"]["p90"], s["failed_jobs"])
        for name, s in tr["stacks"].items()
    ]
    headers = ("stack", "jobs", "wall s", "jobs/s", "TTFT med ms", "TTFT p90 ms", "failed")
    lines = [f"Tracing overhead ({tr['batches']})", table(headers, rows)]
    lines.append(
        f"throughput ratio off/on = {tr['throughput_ratio_off_on']:.3f} (target <= 1.05); "
        f"TTFT median on/off = {tr['ttft_median_ratio_on_off']:.3f}; "
        f"{tr['spans_received']} spans received"
    )
    for name, s in tr["stacks"].items():
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in s["cpu_percent"].items())
        per_job = ", ".join(f"{k} {v:.0f}" for k, v in s["cpu_ms_per_job"].items())
        lines.append(f"CPU % {name}: {cpu}; CPU ms per job: {per_job}")
    return lines


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    if "ttft" in results:
        out += render_ttft(results["ttft"])
    for key in ("relay_1", "relay_n"):
        if key in results:
            out += render_relay(results[key])
    if "tracing" in results:
        out += render_tracing(results["tracing"])
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, default=50, help="TTFT jobs (and as many direct requests)"
    )
    parser.add_argument("--clients", type=int, default=200, help="SSE clients in the relay run")
    parser.add_argument("--client-procs", type=int, default=2, help="processes for those clients")
    parser.add_argument("--relay-jobs", type=int, default=3, help="jobs in the many-client run")
    parser.add_argument(
        "--hold-ms-per-client",
        type=float,
        default=12.0,
        help="Loki held this long per client so all connect first (tokens before are dropped)",
    )
    parser.add_argument("--single-jobs", type=int, default=10, help="jobs in the 1-client run")
    parser.add_argument("--batch-jobs", type=int, default=30, help="jobs per tracing batch")
    parser.add_argument("--rounds", type=int, default=2, help="batches per stack (ABBA)")
    parser.add_argument("--skip", default="", help="comma list of: ttft,relay,tracing")
    parser.add_argument("--json", action="store_true", help="print the JSON object")
    parser.add_argument("--docs", action="store_true", help="rewrite its block in the docs")
    return parser.parse_args(argv)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_all(args: argparse.Namespace, services: Services, results: dict[str, Any]) -> None:
    skip = set(args.skip.split(","))
    ctx = get_context("spawn")
    pool = services.stack.enter_context(ProcessPoolExecutor(args.client_procs, mp_context=ctx))
    list(pool.map(split, [1] * args.client_procs, [1] * args.client_procs))  # start them now
    start_llama(services)
    start_loki(services)
    off = start_stack(services, "tracing-off", tracing=False)
    asyncio.run(warm_up(off.api_url))
    if "ttft" not in skip:
        results["ttft"] = run_ttft(services, off, args.jobs)
    if "relay" not in skip:
        results["relay_1"] = run_relay(services, off, pool, 1, 1, args.single_jobs)
        results["relay_n"] = run_relay(
            services,
            off,
            pool,
            args.clients,
            args.client_procs,
            args.relay_jobs,
            args.hold_ms_per_client,
        )
    if "tracing" not in skip:
        on = start_stack(services, "tracing-on", tracing=True)
        asyncio.run(warm_up(on.api_url))
        results["tracing"] = run_tracing(services, off, on, args.batch_jobs, args.rounds)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    logs = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/pipeline.py", *sys.argv[1:]]),
        "code": str(CODE),
        "machine": machine(),
        "settings": {
            "stub": {"first_token_ms": FIRST_TOKEN_MS, "token_ms": TOKEN_MS, "tokens": TOKENS},
            "worker": "celery prefork -c 2",
            "api": "1 uvicorn process",
            "args": vars(args),
        },
        "logs": str(logs),
    }
    log(f"services run the code of {CODE}")
    services = Services(Harness(logs))
    status = 0
    try:
        run_all(args, services, results)
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"failed: {results['error']} (service logs in {logs})")
        status = 1
        if not isinstance(exc, Exception):
            raise
    finally:
        log("stopping every process this benchmark started")
        services.close()
        results["machine"]["loadavg_end"] = os.getloadavg()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, default=float) + "\n")
        text = render(results)
        print(text)
        if args.docs and status == 0:
            replace_generated(
                "pipeline",
                f"Generated by `{results['command']}` on {results['date']}; raw numbers, "
                "per-part medians and CPU figures in `bench/results/pipeline.json`.\n\n"
                f"```\n{text}\n```",
            )
        if args.json:
            print(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
