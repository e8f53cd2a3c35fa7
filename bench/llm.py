"""LLM streaming through the pipeline vs. what the real llama-server reports for itself.

Starts the embedded default (real llama-server + SmolLM2, a worker, the API) and runs N jobs
over the sample incident one after another. For each job it compares:
- tokens/s seen by an SSE client (first to last token) with the server's own
  `timings.predicted_per_second` for the same request (target ratio >= 0.97);
- time to first token at the client (from POST) with the server's `prompt_ms` plus one
  token's time, i.e. what the model itself needed before the first token.

Usage: python bench/llm.py [--jobs 10] [--ctx 4096] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.cli import SAMPLE_WINDOW  # noqa: E402 - after the path set-up above
from api.client import follow  # noqa: E402
from api.local_stack import local_stack  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "llm.json"


def run_job(client: httpx.Client, api: str, limit: int, offset_min: int = 0) -> dict[str, Any]:
    # A different window per job changes the prompt right after the system prompt, so the
    # server cannot serve it from its KV cache (llama-server reuses the longest common prefix).
    body = {
        "time_range": {"start": f"2026-11-24T10:{offset_min:02d}:00Z", "end": SAMPLE_WINDOW[1]},
        "filters": {"namespace": "shop"},
        "limit": limit,
        "scan_limit": 20_000,
    }
    posted = time.perf_counter()
    accepted = client.post(f"{api}/v1/jobs", json=body)
    accepted.raise_for_status()
    arrivals: list[float] = []
    llm_started = None
    result: dict[str, Any] = {}
    for event in follow(client, accepted.json()["events_url"]):
        now = time.perf_counter()
        data = event.json["data"]
        if event.event == "stage" and data["stage"] == "call_llm" and data["state"] == "started":
            llm_started = now
        elif event.event == "token":
            arrivals.append(now)
        elif event.event == "result":
            result = data
    timings = result["timings"]
    client_tps = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 2 else 0.0
    model_first_ms = timings["prompt_ms"] + timings["predicted_per_token_ms"]
    return {
        "tokens": len(arrivals),
        "server_tps": timings["predicted_per_second"],
        "client_tps": client_tps,
        "tps_ratio": client_tps / timings["predicted_per_second"],
        "ttft_from_post_ms": (arrivals[0] - posted) * 1000,
        "ttft_from_llm_stage_ms": (arrivals[0] - (llm_started or posted)) * 1000,
        "model_first_token_ms": model_first_ms,
        "prompt_tokens": timings["prompt_n"],
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    return {
        "jobs": len(rows),
        "median_client_tps": med("client_tps"),
        "median_server_tps": med("server_tps"),
        "median_tps_ratio": med("tps_ratio"),
        "min_tps_ratio": min(r["tps_ratio"] for r in rows),
        "median_ttft_from_post_ms": med("ttft_from_post_ms"),
        "median_ttft_from_llm_stage_ms": med("ttft_from_llm_stage_ms"),
        "median_model_first_token_ms": med("model_first_token_ms"),
        "ttft_ratio_post_vs_model": med("ttft_from_post_ms") / med("model_first_token_ms"),
        "ttft_ratio_llm_stage_vs_model": (
            med("ttft_from_llm_stage_ms") / med("model_first_token_ms")
        ),
        "median_prompt_tokens": med("prompt_tokens"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--limit", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cache-prompt",
        action="store_true",
        help="let the server reuse the KV cache (every job repeats the prompt)",
    )
    args = parser.parse_args()
    with local_stack(
        ROOT / ".run" / "bench-llm", redis_url="redis://127.0.0.1:6379/13", llama_ctx=args.ctx
    ) as stack:
        stack.start_redis()
        stack.start_llama(timeout=180)
        stack.start_worker()
        stack.start_api()
        with httpx.Client(timeout=60) as client:
            run_job(client, stack.urls["api"], args.limit)  # warm-up: load, caches
            rows = [
                run_job(client, stack.urls["api"], args.limit, offset_min=1 + i % 15)
                for i in range(args.jobs)
            ]
    summary = summarize(rows)
    report = {
        "summary": summary,
        "jobs": rows,
        "ctx": args.ctx,
        "limit": args.limit,
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{'job':>3} {'tokens':>6} {'server tok/s':>12} {'client tok/s':>12} {'ratio':>6} "
        f"{'TTFT post ms':>12} {'TTFT llm ms':>11} {'model ms':>9} {'prompt tok':>10}"
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>3} {r['tokens']:>6} {r['server_tps']:>12.1f} {r['client_tps']:>12.1f} "
            f"{r['tps_ratio']:>6.3f} {r['ttft_from_post_ms']:>12.0f} "
            f"{r['ttft_from_llm_stage_ms']:>11.0f} {r['model_first_token_ms']:>9.0f} "
            f"{r['prompt_tokens']:>10}"
        )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
