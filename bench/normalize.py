"""Benchmark the normalize stage's template miner against drain3 on Loghub-2k.

    .venv/bin/python bench/normalize.py [--data PATH] [--json] [--sizes 10000,100000,1000000]

Per system: GA, FGA, PA and FTA (the Loghub-2.0 metrics, bench/parsing_metrics.py) and
lines/s for our miner (redaction and masking included), drain3 0.9.11 with the published
per-system settings, and drain3 with one shared configuration, side by side in one run;
averages over all systems, over those no unit test mines and over those it does; then a
scaling run of our miner on synthetic lines (time and peak RSS, each size in a fresh
subprocess). Always writes bench/results/normalize.json; `--docs` also
rewrites its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.parsing_metrics import (  # noqa: E402  (needs the repo root on sys.path)
    f1_grouping_accuracy,
    f1_template_accuracy,
    grouping_accuracy,
    parsing_accuracy,
)
from bench.report import replace_generated  # noqa: E402
from workers.evidence.redact import Redactor  # noqa: E402
from workers.evidence.templates import TemplateMiner  # noqa: E402

SYSTEMS = (
    "HDFS Hadoop Spark Zookeeper BGL HPC Thunderbird Windows "
    "Linux Android HealthApp Apache Proxifier OpenSSH OpenStack Mac"
).split()

# Per-system Drain settings (regex, similarity threshold st, depth) exactly as published in
# logpai/logparser `logparser/Drain/benchmark.py` (commit c82e548, the commit that added the
# corrected Loghub-2k labels). logparser's `depth` and drain3's `depth` mean the same thing
# (both subtract 2 for the root and leaf levels); each regex match is replaced by `<*>`.
DRAIN_PER_SYSTEM: dict[str, dict[str, Any]] = {
    "HDFS": {"regex": [r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"], "st": 0.5, "depth": 4},
    "Hadoop": {"regex": [r"(\d+\.){3}\d+"], "st": 0.5, "depth": 4},
    "Spark": {
        "regex": [r"(\d+\.){3}\d+", r"\b[KGTM]?B\b", r"([\w-]+\.){2,}[\w-]+"],
        "st": 0.5,
        "depth": 4,
    },
    "Zookeeper": {"regex": [r"(/|)(\d+\.){3}\d+(:\d+)?"], "st": 0.5, "depth": 4},
    "BGL": {"regex": [r"core\.\d+"], "st": 0.5, "depth": 4},
    "HPC": {"regex": [r"=\d+"], "st": 0.5, "depth": 4},
    "Thunderbird": {"regex": [r"(\d+\.){3}\d+"], "st": 0.5, "depth": 4},
    "Windows": {"regex": [r"0x.*?\s"], "st": 0.7, "depth": 5},
    "Linux": {"regex": [r"(\d+\.){3}\d+", r"\d{2}:\d{2}:\d{2}"], "st": 0.39, "depth": 6},
    "Android": {
        "regex": [
            r"(/[\w-]+)+",
            r"([\w-]+\.){2,}[\w-]+",
            r"\b(\-?\+?\d+)\b|\b0[Xx][a-fA-F\d]+\b|\b[a-fA-F\d]{4,}\b",
        ],
        "st": 0.2,
        "depth": 6,
    },
    "HealthApp": {"regex": [], "st": 0.2, "depth": 4},
    "Apache": {"regex": [r"(\d+\.){3}\d+"], "st": 0.5, "depth": 4},
    "Proxifier": {
        "regex": [
            r"<\d+\ssec",
            r"([\w-]+\.)+[\w-]+(:\d+)?",
            r"\d{2}:\d{2}(:\d{2})*",
            r"[KGTM]B",
        ],
        "st": 0.6,
        "depth": 3,
    },
    "OpenSSH": {"regex": [r"(\d+\.){3}\d+", r"([\w-]+\.){2,}[\w-]+"], "st": 0.6, "depth": 5},
    "OpenStack": {"regex": [r"((\d+\.){3}\d+,?)+", r"/.+?\s", r"\d+"], "st": 0.5, "depth": 5},
    "Mac": {"regex": [r"([\w-]+\.){2,}[\w-]+"], "st": 0.7, "depth": 6},
}

# One shared drain3 configuration: the [MASKING] and [DRAIN] sections of drain3's own
# example config, logpai/Drain3 `examples/drain3.ini` (commit 0822117).
DRAIN_SHARED_MASKING = [
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
    (r"(?<=executed cmd )(\".+?\")", "CMD"),
]
DRAIN_SHARED_ST = 0.4
DRAIN_SHARED_DEPTH = 4
DRAIN_SHARED_MAX_CHILDREN = 100
DRAIN_SHARED_MAX_CLUSTERS = 1024

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def load_system(data: Path, system: str) -> tuple[list[str], list[str], list[str]]:
    """The `Content`, ground-truth `EventId` and `EventTemplate` of one Loghub-2k system."""
    path = data / system / f"{system}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return (
        [r["Content"] for r in rows],
        [r["EventId"] for r in rows],
        [r["EventTemplate"] for r in rows],
    )


def unit_test_systems() -> list[str]:
    """The systems whose lines the unit tests mine (tests/data/loghub_small): tuned on."""
    found = (ROOT / "tests" / "data" / "loghub_small").glob("*_300.csv")
    return sorted(path.name.removesuffix("_300.csv") for path in found)


# One contender's run: group per line, template per line, seconds.
Run = tuple[list[int], list[str], float]


def run_ours(lines: Sequence[str]) -> Run:
    start = time.perf_counter()
    miner = TemplateMiner()
    redact = Redactor()
    ids = []
    for line in lines:
        text, _ = redact(line)
        ids.append(miner.add(text))
    groups = [miner.resolve(i) for i in ids]
    seconds = time.perf_counter() - start
    texts = [t.text for t in miner.templates]
    return groups, [texts[g] for g in groups], seconds


def _drain3_miner(
    st: float, depth: int, masks: list[tuple[str, str]], prefix: str, suffix: str, **extra: Any
) -> Any:
    from drain3 import TemplateMiner as Drain3Miner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = st
    config.drain_depth = depth
    config.drain_max_children = extra.get("max_children", 100)
    config.drain_max_clusters = extra.get("max_clusters")
    config.drain_extra_delimiters = extra.get("extra_delimiters", [])
    config.mask_prefix = prefix
    config.mask_suffix = suffix
    config.masking_instructions = [MaskingInstruction(rx, name) for rx, name in masks]
    return Drain3Miner(config=config)


_NAMED_MASK = re.compile(r"<:\w+:>")  # drain3's shared masks name what they hide


def run_drain3(lines: Sequence[str], make: Callable[[], Any]) -> Run:
    start = time.perf_counter()
    miner = make()
    groups = [miner.add_log_message(line)["cluster_id"] for line in lines]
    seconds = time.perf_counter() - start
    final = {c.cluster_id: _NAMED_MASK.sub("<*>", c.get_template()) for c in miner.drain.clusters}
    return groups, [final[g] for g in groups], seconds


def drain3_per_system(system: str) -> Callable[[], Any]:
    setting = DRAIN_PER_SYSTEM[system]
    masks = [(rx, "*") for rx in setting["regex"]]
    return lambda: _drain3_miner(setting["st"], setting["depth"], masks, "<", ">")


def drain3_shared() -> Any:
    return _drain3_miner(
        DRAIN_SHARED_ST,
        DRAIN_SHARED_DEPTH,
        DRAIN_SHARED_MASKING,
        "<:",
        ":>",
        max_children=DRAIN_SHARED_MAX_CHILDREN,
        max_clusters=DRAIN_SHARED_MAX_CLUSTERS,
        extra_delimiters=["_"],
    )


CONTENDERS = ("ours", "drain3_per_system", "drain3_shared")
METRICS = ("ga", "fga", "pa", "fta")


def score(truth: Sequence[str], templates: Sequence[str], run: Run) -> dict[str, float]:
    """GA, FGA (on group labels), PA and FTA (on templates) of one run, rounded."""
    groups, parsed, _ = run
    return {
        "ga": round(grouping_accuracy(truth, groups), 4),
        "fga": round(f1_grouping_accuracy(truth, groups), 4),
        "pa": round(parsing_accuracy(templates, parsed), 4),
        "fta": round(f1_template_accuracy(templates, parsed), 4),
    }


def summarize(rows: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """Mean of each metric over `rows`; lines/s as all their lines over all their time."""
    lines = sum(r["lines"] for r in rows)
    summary: dict[str, Any] = {"system": name, "lines": lines, "systems": len(rows)}
    for contender in CONTENDERS:
        for metric in METRICS:
            key = f"{contender}_{metric}"
            summary[key] = round(sum(r[key] for r in rows) / len(rows), 4)
        seconds = sum(r[f"{contender}_seconds"] for r in rows)
        summary[f"{contender}_lines_per_s"] = round(lines / seconds)
        summary[f"{contender}_templates"] = sum(r[f"{contender}_templates"] for r in rows)
    for contender in CONTENDERS[1:]:
        summary[f"speedup_vs_{contender}"] = round(
            summary["ours_lines_per_s"] / summary[f"{contender}_lines_per_s"], 2
        )
    return summary


def accuracy_run(data: Path, repeat: int) -> dict[str, Any]:
    """GA, FGA, PA, FTA and throughput per system for ours, drain3 per-system and shared.

    Each contender runs `repeat` times, interleaved; the fastest time counts (as `timeit`
    does), which damps noise from other load on the machine. The metrics are deterministic.
    Averages: over all systems, over those no unit test mines, and over those it does.
    """
    rows: list[dict[str, Any]] = []
    tested = set(unit_test_systems())
    for system in SYSTEMS:
        lines, truth, templates = load_system(data, system)
        row: dict[str, Any] = {"system": system, "lines": len(lines), "unit_test": system in tested}
        contenders: dict[str, Callable[[], Run]] = {
            "ours": lambda: run_ours(lines),  # noqa: B023  (called within this iteration)
            "drain3_per_system": lambda: run_drain3(lines, drain3_per_system(system)),  # noqa: B023
            "drain3_shared": lambda: run_drain3(lines, drain3_shared),  # noqa: B023
        }
        runs: dict[str, Run] = {}
        for _ in range(repeat):
            for name, contender in contenders.items():
                run = contender()
                best = runs.get(name)
                runs[name] = run if best is None or run[2] < best[2] else best
        for name, run in runs.items():
            for metric, value in score(truth, templates, run).items():
                row[f"{name}_{metric}"] = value
            row[f"{name}_lines_per_s"] = round(len(lines) / run[2])
            row[f"{name}_templates"] = len(set(run[0]))
            row[f"{name}_seconds"] = round(run[2], 6)
        rows.append(row)
    held_out = [r for r in rows if not r["unit_test"]]
    return {
        "systems": rows,
        "average": summarize(rows, "Average"),
        "average_held_out": summarize(held_out, "Average, not in unit tests"),
        "average_unit_test": summarize(
            [r for r in rows if r["unit_test"]], "Average, unit-test systems"
        ),
    }


def synthetic_lines(data: Path, count: int, seed: int = 7) -> Iterator[str]:
    """`count` lines cycling through all Loghub-2k lines with fresh numbers; one line in 20
    also gets a random word, so distinct messages keep growing (as user names and hosts do).
    """
    base = [line for system in SYSTEMS for line in load_system(data, system)[0]]
    rng = random.Random(seed)
    digits = re.compile(r"\d+")

    def renumber(match: re.Match[str]) -> str:
        return str(rng.randrange(10 ** len(match.group())))

    for i in range(count):
        line = digits.sub(renumber, base[i % len(base)])
        if i % 20 == 0:
            words = line.split()
            words[rng.randrange(len(words))] = "".join(rng.choices(string.ascii_lowercase, k=8))
            line = " ".join(words)
        yield line


def scale_worker(data: Path, count: int) -> dict[str, Any]:
    """Mine `count` synthetic lines in this process; report time and peak RSS."""
    import resource

    chunk = 10_000
    lines = synthetic_lines(data, count)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    miner = TemplateMiner()
    redact = Redactor()
    seconds = 0.0
    done = 0
    while done < count:
        batch = [next(lines) for _ in range(min(chunk, count - done))]
        start = time.perf_counter()
        for line in batch:
            text, _ = redact(line)
            miner.add(text)
        seconds += time.perf_counter() - start
        done += len(batch)
    start = time.perf_counter()
    templates = len(miner.templates)
    finalize_s = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "lines": count,
        "mine_s": round(seconds, 3),
        "finalize_s": round(finalize_s, 3),
        "total_s": round(seconds + finalize_s, 3),
        "lines_per_s": round(count / (seconds + finalize_s)),
        "us_per_line": round(1e6 * (seconds + finalize_s) / count, 2),
        "templates": templates,
        "signatures": miner.signatures,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "baseline_rss_mib": round(baseline_kib / 1024, 1),
    }


def scaling_run(data: Path, sizes: Sequence[int]) -> list[dict[str, Any]]:
    results = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--data", str(data), "--scale-worker", str(size)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout))
    return results


SHORT = {"ours": "ours", "drain3_per_system": "drain3 tuned", "drain3_shared": "drain3 shared"}
AVERAGES = ("average", "average_held_out", "average_unit_test")


def format_tables(result: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    accuracy = result["accuracy"]
    rows = [*accuracy["systems"], *(accuracy[key] for key in AVERAGES if key in accuracy)]

    def name(row: dict[str, Any]) -> str:
        if "systems" not in row:
            return f"{row['system']} (unit tests)" if row.get("unit_test") else row["system"]
        return f"**{row['system']}** ({row['systems']})"

    out: list[str] = []
    for metrics in (("ga", "fga"), ("pa", "fta")):
        heads = [f"{m.upper()} {SHORT[c]}" for m in metrics for c in CONTENDERS]
        out += [
            "| System | " + " | ".join(heads) + " |",
            "|---|" + "---:|" * len(heads),
        ]
        for row in rows:
            cells = [f"{row[f'{c}_{m}']:.3f}" for m in metrics for c in CONTENDERS]
            out.append(f"| {name(row)} | " + " | ".join(cells) + " |")
        out.append("")
    heads = [f"lines/s {SHORT[c]}" for c in CONTENDERS] + ["ours ÷ drain3 tuned"]
    out += ["| System | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for row in rows:
        ratio = row["ours_lines_per_s"] / row["drain3_per_system_lines_per_s"]
        cells = [f"{row[f'{c}_lines_per_s']:,}" for c in CONTENDERS] + [f"{ratio:.2f}"]
        out.append(f"| {name(row)} | " + " | ".join(cells) + " |")
    if result.get("scaling"):
        out += [
            "",
            "| Lines | Time (s) | of which finalize (s) | µs/line | lines/s | Templates "
            "| Distinct masked | Peak RSS (MiB) | RSS before mining (MiB) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in result["scaling"]:
            out.append(
                f"| {row['lines']:,} | {row['total_s']:.2f} | {row['finalize_s']:.2f} "
                f"| {row['us_per_line']:.2f} | {row['lines_per_s']:,} | {row['templates']:,} "
                f"| {row['signatures']:,} | {row['peak_rss_mib']:.1f} "
                f"| {row['baseline_rss_mib']:.1f} |"
            )
    return "\n".join(out)


DOC_BLOCK = "normalize"


def weak_systems(result: dict[str, Any], below: float = 0.9) -> str:
    """One sentence naming the systems where our grouping accuracy is below `below`."""
    rows = [r for r in result["accuracy"]["systems"] if r["ours_ga"] < below]
    if not rows:
        return f"Every system scores at least {below} with ours."
    named = ", ".join(f"{r['system']} {r['ours_ga']:.3f}" for r in rows)
    return f"Systems where ours scores below {below}: {named}."


def headline(result: dict[str, Any]) -> str:
    """The figures the README quotes, in one sentence."""
    accuracy = result["accuracy"]
    every, held = accuracy["average"], accuracy["average_held_out"]
    return (
        f"Average GA ours {every['ours_ga']:.3f} vs drain3 tuned "
        f"{every['drain3_per_system_ga']:.3f} vs drain3 shared {every['drain3_shared_ga']:.3f} "
        f"(FGA {every['ours_fga']:.3f} / {every['drain3_per_system_fga']:.3f} / "
        f"{every['drain3_shared_fga']:.3f}, PA {every['ours_pa']:.3f} / "
        f"{every['drain3_per_system_pa']:.3f} / {every['drain3_shared_pa']:.3f}, FTA "
        f"{every['ours_fta']:.3f} / {every['drain3_per_system_fta']:.3f} / "
        f"{every['drain3_shared_fta']:.3f}); on the {held['systems']} systems no unit test "
        f"mines, GA {held['ours_ga']:.3f} vs {held['drain3_per_system_ga']:.3f}. Throughput "
        f"{every['ours_lines_per_s']:,} lines/s, "
        f"{every['speedup_vs_drain3_per_system']:.2f}× drain3 tuned and "
        f"{every['speedup_vs_drain3_shared']:.2f}× drain3 shared, redaction included."
    )


def doc_block(result: dict[str, Any]) -> str:
    """The generated part of this benchmark's section in docs/benchmarks.md."""
    load = result["load"]
    return "\n\n".join(
        [
            f"Generated by `.venv/bin/python bench/normalize.py --docs` on "
            f"{time.strftime('%Y-%m-%d')} (Python {result['python']}, {result['machine']}, "
            f"{result['repeat']} timing runs per contender; 1-minute load average "
            f"{load['before']:.2f} before and {load['after']:.2f} after the run on "
            f"{load['cpus']} CPUs); raw numbers in `bench/results/normalize.json`.",
            headline(result),
            format_tables(result),
            weak_systems(result),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "loghub2k")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="scaling run sizes, comma-separated; empty to skip",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per contender")
    parser.add_argument(
        "--docs", action="store_true", help="rewrite its section of docs/benchmarks.md"
    )
    parser.add_argument("--scale-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale_worker:
        print(json.dumps(scale_worker(args.data, args.scale_worker)))
        return

    import drain3  # noqa: F401  (fail early if the bench group is missing)

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    # Other processes share the machine: the load beside the figures says how much.
    before = os.getloadavg()[0]
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "data": str(args.data),
        "repeat": args.repeat,
        "accuracy": accuracy_run(args.data, args.repeat),
        "scaling": scaling_run(args.data, sizes),
    }
    result["load"] = {"before": before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "normalize.json").write_text(json.dumps(result, indent=2) + "\n")
    tables = format_tables(result)
    if args.docs:
        replace_generated(DOC_BLOCK, doc_block(result))
    print(json.dumps(result) if args.json else f"{headline(result)}\n\n{tables}")


if __name__ == "__main__":
    main()
