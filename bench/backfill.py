"""Benchmark backfills: items/s with one and two backfill worker processes, the time to first
token of an interactive job submitted mid-backfill against idle, Redis memory per 1,000 items.

    .venv/bin/python bench/backfill.py [--items 1000] [--docs]

Processes (through `cli.harness`): a private redis-server, the Loki stub (its own process,
`--latency-ms 20`), the llama stub (its own process, 20 tokens per answer, 2 slots), the API,
one worker on the `interactive` queue (concurrency 1) and one or two on the `backfill` queue
(concurrency 2 each), as deployed: backfill items never wait on the interactive queue.
`items` = namespaces × 5-minute windows over the pushed hour (40 lines per namespace and
window, one error in a few).

a. Idle: 5 interactive jobs one after another; time from POST to the first `token` event.
b. One backfill worker: a backfill of `items` items; items/s to done; meanwhile, 5 interactive
   jobs one after another (TTFT each); Redis `used_memory` before and after.
c. Two backfill workers: a second backfill (another question, so nothing is reused); items/s.

Writes bench/results/backfill.json; `--docs` regenerates the `backfill` block of
docs/benchmarks.md. Exits 1 when the target is missed: median TTFT mid-backfill ÷ idle ≤ 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.report import replace_generated, table
from cli.harness import Harness, free_port
from shared import queues
from tests.support.stack import service_env

RESULTS = Path(__file__).resolve().parent / "results" / "backfill.json"
START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
WINDOWS_PER_HOUR = 12  # 5-minute windows
LINES_PER_WINDOW = 40
INTERACTIVE_JOBS = 5
TARGET_TTFT_RATIO = 1.5
NO_LIMITS = {
    "MAX_STREAMS_PER_KEY": "100000",
    "MAX_ACTIVE_JOBS_PER_KEY": "100000",
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "MAX_BACKFILL_ITEMS": "100000",
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def push(loki_url: str, namespaces: list[str]) -> None:
    """Each namespace: LINES_PER_WINDOW lines per 5 minutes over the hour, a few errors."""
    step_ns = 300 * 10**9 // LINES_PER_WINDOW
    start_ns = int(START.timestamp()) * 10**9
    with httpx.Client(timeout=60) as client:
        for n, namespace in enumerate(namespaces):
            values = []
            for i in range(WINDOWS_PER_HOUR * LINES_PER_WINDOW):
                if i % 97 == n % 97:
                    line = f"ERROR payment gateway timeout after {i % 30 + 1}s order={i}"
                else:
                    line = f"INFO request served path=/items/{i % 50} ms={i % 90}"
                values.append([str(start_ns + i * step_ns), line])
            stream = {"namespace": namespace, "pod": f"{namespace}-0", "container": "app"}
            body = {"streams": [{"stream": stream, "values": values}]}
            client.post(f"{loki_url}/loki/api/v1/push", json=body).raise_for_status()


def ttft(api_url: str, namespace: str) -> float:
    """POST an interactive job, follow its events; seconds to the first token."""
    body = {
        "time_range": {"start": START.isoformat(), "end": (START + timedelta(hours=1)).isoformat()},
        "filters": {"namespace": namespace},
        "question": f"interactive {time.monotonic_ns()}",
    }
    started = time.monotonic()
    with httpx.Client(timeout=120) as client:
        accepted = client.post(f"{api_url}/v1/jobs", json=body)
        accepted.raise_for_status()
        with client.stream("GET", accepted.json()["events_url"]) as stream:
            for line in stream.iter_lines():
                if line == "event: token":
                    return time.monotonic() - started
                if line == "event: done":
                    break
    raise RuntimeError("the interactive job ended without a token")


def backfill(api_url: str, namespaces: list[str], question: str) -> str:
    body = {
        "namespaces": namespaces,
        "time_range": {"start": START.isoformat(), "end": (START + timedelta(hours=1)).isoformat()},
        "window": "5m",
        "question": question,
    }
    response = httpx.post(f"{api_url}/v1/backfills", json=body, timeout=120)
    response.raise_for_status()
    return str(response.json()["backfill_id"])


def wait_done(api_url: str, backfill_id: str, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = httpx.get(f"{api_url}/v1/backfills/{backfill_id}", timeout=60).json()
        if view["done"]:
            return dict(view)
        time.sleep(0.5)
    raise RuntimeError(f"backfill {backfill_id} did not finish")


def run(args: argparse.Namespace, harness: Harness) -> dict[str, Any]:
    namespaces = [f"bf-{n:03d}" for n in range(max(1, args.items // WINDOWS_PER_HOUR))]
    items = len(namespaces) * WINDOWS_PER_HOUR
    loki_port, llama_port = free_port(), free_port()
    harness.spawn(
        "loki-stub",
        [
            sys.executable,
            "-m",
            "tests.stubs.loki_stub",
            "--port",
            str(loki_port),
            "--latency-ms",
            "20",
        ],
    )
    harness.spawn(
        "llama-stub",
        [
            sys.executable,
            "-m",
            "tests.stubs.llama_stub",
            "--port",
            str(llama_port),
            "--tokens",
            "20",
            "--slots",
            "2",
        ],
    )
    loki_url, llama_url = f"http://127.0.0.1:{loki_port}", f"http://127.0.0.1:{llama_port}"
    harness.wait_http(f"{loki_url}/ready", 30, "Loki stub")
    harness.wait_http(f"{llama_url}/health", 30, "llama stub")
    push(loki_url, [*namespaces, "interactive"])
    redis_url = harness.start_redis().url()
    client = redis.Redis.from_url(redis_url)
    env = service_env(REDIS_URL=redis_url, LOKI_URL=loki_url, LLAMA_URL=llama_url, **NO_LIMITS)
    harness.start_worker(env, name="interactive", concurrency=1, queue_names=[queues.INTERACTIVE])
    harness.start_worker(env, name="backfill-1", concurrency=2, queue_names=[queues.BACKFILL])
    api_url = harness.start_api(env, name="api", timeout=90)
    log(f"{items} items per backfill ({len(namespaces)} namespaces x {WINDOWS_PER_HOUR} windows)")

    ttft(api_url, "interactive")  # warm up
    idle = [ttft(api_url, "interactive") for _ in range(INTERACTIVE_JOBS)]
    log(f"idle TTFT median {statistics.median(idle) * 1000:.0f} ms")

    memory_before = int(client.info("memory")["used_memory"])
    started = time.monotonic()
    first = backfill(api_url, namespaces, "nightly one")
    submitted_s = time.monotonic() - started
    time.sleep(2)
    busy = [ttft(api_url, "interactive") for _ in range(INTERACTIVE_JOBS)]
    view = wait_done(api_url, first)
    one_worker_s = time.monotonic() - started
    memory_after = int(client.info("memory")["used_memory"])
    log(f"one worker: {items} items in {one_worker_s:.1f} s; busy TTFT {busy}")

    harness.start_worker(env, name="backfill-2", concurrency=2, queue_names=[queues.BACKFILL])
    time.sleep(3)
    started = time.monotonic()
    second = backfill(api_url, namespaces, "nightly two")
    view2 = wait_done(api_url, second)
    two_workers_s = time.monotonic() - started
    log(f"two workers: {items} items in {two_workers_s:.1f} s")
    ratio = statistics.median(busy) / statistics.median(idle)
    return {
        "items": items,
        "submit_s": round(submitted_s, 2),
        "one_worker": {
            "seconds": round(one_worker_s, 1),
            "items_per_s": round(items / one_worker_s, 2),
            "totals": view["totals"],
        },
        "two_workers": {
            "seconds": round(two_workers_s, 1),
            "items_per_s": round(items / two_workers_s, 2),
            "totals": view2["totals"],
        },
        "ttft_idle_s": [round(t, 3) for t in idle],
        "ttft_mid_backfill_s": [round(t, 3) for t in busy],
        "ttft_ratio": round(ratio, 2),
        "redis_mib_per_1000_items": round((memory_after - memory_before) / 2**20 * 1000 / items, 1),
        "checks": {f"TTFT mid-backfill / idle <= {TARGET_TTFT_RATIO}": ratio <= TARGET_TTFT_RATIO},
    }


def render(results: dict[str, Any]) -> str:
    if "error" in results:
        return f"failed: {results['error']}"
    one, two = results["one_worker"], results["two_workers"]
    rows = [
        [
            "backfill, 1 worker process (2 children)",
            one["seconds"],
            one["items_per_s"],
            one["totals"]["succeeded"],
        ],
        [
            "backfill, 2 worker processes (2 children each)",
            two["seconds"],
            two["items_per_s"],
            two["totals"]["succeeded"],
        ],
    ]
    idle = statistics.median(results["ttft_idle_s"]) * 1000
    busy = statistics.median(results["ttft_mid_backfill_s"]) * 1000
    return "\n".join(
        [
            f"`{results['command']}` on {results['machine']}, {results['date']}: "
            f"{results['items']} items (5-minute windows), submitted in {results['submit_s']} s.",
            "",
            table(["run", "seconds", "items/s", "succeeded"], rows, "lrrr"),
            "",
            f"Interactive TTFT, median of {INTERACTIVE_JOBS}: idle {idle:.0f} ms, mid-backfill "
            f"{busy:.0f} ms: ratio {results['ttft_ratio']} (target ≤ {TARGET_TTFT_RATIO}). "
            f"Redis memory: {results['redis_mib_per_1000_items']} MiB per 1,000 items "
            "(job records with results, events, findings).",
            "",
            *[f"- {'✔' if ok else '✘'} {name}" for name, ok in results["checks"].items()],
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="about this many items")
    parser.add_argument("--docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/backfill.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    harness = Harness(logs)
    try:
        results.update(run(args, harness))
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc} (logs in {logs})"
    finally:
        harness.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    text = render(results)
    print(text)
    if args.docs and "error" not in results:
        replace_generated("backfill", text)
    return 0 if "error" not in results and all(results["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
