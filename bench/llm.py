"""LLM streaming through the pipeline vs. what the real llama-server reports for itself.

Starts the embedded default (real llama-server + SmolLM2, a worker, the API) and runs N jobs
over the sample incident one after another. For each job it compares:
- tokens/s seen by an SSE client (first to last token) with the server's own
  `timings.predicted_per_second` for the same request (target ratio >= 0.97);
- time to first token at the client (from POST) with the server's `prompt_ms` plus one
  token's time, i.e. what the model itself needed before the first token.

By default the prompt cache is off (LLM_CACHE_PROMPT=false) and each job's window starts a
minute later, so every prompt is processed cold. `--cache-prompt` turns the cache on and
repeats the same job: the server then reuses the prompt from its cache.

Usage: python bench/llm.py [--jobs 10] [--ctx 4096] [--cache-prompt] [--json]
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

from bench.report import replace_generated, table  # noqa: E402
from cli.client import follow  # noqa: E402
from cli.harness import harness, local_env  # noqa: E402
from cli.main import SAMPLE_WINDOW  # noqa: E402 - after the path set-up above


def run_job(
    client: httpx.Client, api: str, limit: int, offset_min: int = 0
) -> dict[str, Any] | None:
    """One job's figures; None when the server reported no timings for it (the model was
    skipped or failed, or the degeneration guard cut the answer and re-sent it)."""
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
    timings = result.get("timings")
    if not timings or len(arrivals) < 3:
        print(
            f"job without server timings: model {result.get('model_status')}, "
            f"finish {result.get('finish_reason')}",
            file=sys.stderr,
        )
        return None
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
        "prompt_tokens": result["prompt_tokens"],
        "prompt_tokens_cached": result["prompt_tokens_cached"],
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
        "median_prompt_tokens_cached": med("prompt_tokens_cached"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--limit", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--docs", action="store_true", help="rewrite its block in the docs")
    parser.add_argument(
        "--cache-prompt",
        action="store_true",
        help="let the server reuse the KV cache (every job repeats the prompt)",
    )
    args = parser.parse_args()
    cache = "true" if args.cache_prompt else "false"
    with harness(ROOT / ".run" / "bench-llm") as stack:
        redis_url = stack.start_redis().url()
        llama_url = stack.start_llama(ctx=args.ctx)
        env = local_env(redis_url, llama_url, LLM_CACHE_PROMPT=cache)
        stack.start_worker(env)
        api = stack.start_api(env)
        with httpx.Client(timeout=60) as client:
            run_job(client, api, args.limit)  # warm-up: load, caches
            # A different window per job changes the prompt right after the system prompt, so
            # the server cannot serve it from its cache (it reuses the longest common prefix).
            ran = [
                run_job(client, api, args.limit, offset_min=0 if args.cache_prompt else 1 + i % 15)
                for i in range(args.jobs)
            ]
            rows = [r for r in ran if r is not None]
        stack.check()
    summary = summarize(rows)
    report = {
        "summary": summary,
        "jobs": rows,
        "jobs_without_timings": len(ran) - len(rows),
        "jobs_requested": args.jobs,
        "ctx": args.ctx,
        "limit": args.limit,
        "cache_prompt": args.cache_prompt,
        "date": time.strftime("%Y-%m-%d"),
    }
    name = "llm-cached" if args.cache_prompt else "llm"
    results = ROOT / "bench" / "results" / f"{name}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    text = render(report, f"bench/results/{name}.json")
    if args.docs:
        replace_generated(name, text)
    print(json.dumps(report) if args.json else text)


def render(report: dict[str, Any], results: str) -> str:
    """The run as Markdown: per-job rows, then the two ratios."""
    rows = [
        [
            i,
            r["tokens"],
            r["prompt_tokens"],
            r["prompt_tokens_cached"],
            round(r["server_tps"], 1),
            round(r["client_tps"], 1),
            f"{r['tps_ratio']:.4f}",
            round(r["ttft_from_post_ms"]),
            round(r["ttft_from_llm_stage_ms"]),
            round(r["model_first_token_ms"]),
        ]
        for i, r in enumerate(report["jobs"], 1)
    ]
    summary = report["summary"]
    cache = "on, the same job repeated" if report["cache_prompt"] else "off, a new window per job"
    command = "bench/llm.py --cache-prompt" if report["cache_prompt"] else "bench/llm.py"
    return "\n\n".join(
        [
            f"Generated by `.venv/bin/python {command} --jobs {report['jobs_requested']} --docs` "
            f"on "
            f"{report['date']} (`-c {report['ctx']}`, limit {report['limit']}, prompt cache "
            f"{cache}); raw numbers in `{results}`. Jobs left out for lack of server timings "
            f"(answer cut by the degeneration guard and re-sent, or the model skipped): "
            f"{report['jobs_without_timings']}.",
            table(
                [
                    "job",
                    "tokens",
                    "prompt tokens",
                    "of which cached",
                    "server tok/s",
                    "client tok/s",
                    "ratio",
                    "TTFT from POST ms",
                    "TTFT from call_llm ms",
                    "model ms",
                ],
                rows,
            ),
            f"- Client tokens/s ÷ the server's own: median "
            f"{summary['median_tps_ratio']:.4f}, minimum {summary['min_tps_ratio']:.4f} "
            "(target ≥ 0.97).",
            f"- TTFT from the POST ÷ the model's prompt time + first token: "
            f"{summary['ttft_ratio_post_vs_model']:.3f} "
            f"({summary['median_ttft_from_post_ms']:.0f} vs "
            f"{summary['median_model_first_token_ms']:.0f} ms median); from the start of "
            f"`call_llm`: {summary['ttft_ratio_llm_stage_vs_model']:.3f}.",
        ]
    )


if __name__ == "__main__":
    main()
