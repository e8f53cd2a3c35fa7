"""Measure redaction: recall and false positives on the secret corpus, speed on Loghub-2k.

    .venv/bin/python bench/redaction.py [--data PATH] [--baseline-rev REV] [--docs] [--json]

Recall: share of the corpus's secrets (tests/support/secrets_corpus.py, documented formats)
that vanish with a redaction counted. False-positive rate: share of its look-alikes that do
not come out unchanged. Speed: `redact` alone over all 32,000 Loghub-2k lines, least CPU
time of `--repeat` runs. Loghub holds no secrets, so every redaction there except e-mail
addresses is a false positive on real logs; the count per kind is reported too.
`--baseline-rev` measures `workers/evidence/redact.py` as of a git revision beside the
current one. Always writes bench/results/redaction.json; `--docs` rewrites its block of
docs/redaction.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.normalize import SYSTEMS, load_system  # noqa: E402  (needs the repo root on sys.path)
from bench.report import replace_generated, table  # noqa: E402
from tests.support.secrets_corpus import score  # noqa: E402
from workers.evidence.redact import redact  # noqa: E402
from workers.evidence.redaction_rules import RULES  # noqa: E402

Redact = Callable[[str], tuple[str, int]]
REDACTION_DOC = ROOT / "docs" / "redaction.md"
_KIND = re.compile(r"<redacted:(\w+)>")


def load_revision(rev: str) -> Redact:
    """`redact` from workers/evidence/redact.py as of git revision `rev`."""
    source = subprocess.run(
        ["git", "show", f"{rev}:workers/evidence/redact.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "redact_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("redact_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    baseline: Redact = module.redact
    return baseline


def best_times(fns: Sequence[Redact], lines: Sequence[str], repeat: int) -> list[float]:
    """Fastest CPU time of each function over `lines`, runs interleaved.

    CPU time of this process (`process_time`), not wall time: on a shared machine the wait
    for a core is not the redaction's cost, and interleaving spreads what load remains.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.process_time()
            for line in lines:
                fn(line)
            best[i] = min(best[i], time.process_time() - start)
    return best


def measure(fn: Redact, lines: Sequence[str], seconds: float) -> dict[str, Any]:
    """Corpus scores, Loghub-2k speed and what it redacted there."""
    result = score(fn)
    best = seconds
    on_loghub = Counter(kind for line in lines for kind in _KIND.findall(fn(line)[0]))
    return {
        "secrets": result.secrets,
        "look_alikes": result.look_alikes,
        "recall": round(result.recall, 4),
        "false_positive_rate": round(result.false_positive_rate, 4),
        "missed": result.missed,
        "false_positives": result.changed,
        "by_format": result.by_format,
        "lines_per_s": round(len(lines) / best),
        "us_per_line": round(1e6 * best / len(lines), 2),
        "loghub_redactions": dict(on_loghub.most_common()),
    }


def doc_block(result: dict[str, Any]) -> str:
    """The generated part of docs/redaction.md."""
    runs = [("this tree", result["current"])]
    if result.get("baseline"):
        runs.append((f"`{result['baseline_rev']}`", result["baseline"]))
    summary = table(
        [
            "redact.py",
            "secrets",
            "recall",
            "look-alikes",
            "false positives",
            "µs/line",
            "lines/s",
            "Loghub-2k redactions",
        ],
        [
            [
                name,
                r["secrets"],
                f"{r['recall']:.3f}",
                r["look_alikes"],
                f"{r['false_positive_rate']:.3f}",
                f"{r['us_per_line']:.2f}",
                f"{r['lines_per_s']:,}",
                ", ".join(f"{k} {n}" for k, n in r["loghub_redactions"].items()) or "none",
            ]
            for name, r in runs
        ],
        align="lrrrrrrl",
    )
    formats = table(
        ["format", "caught", "of"],
        [[f, hit, total] for f, (hit, total) in sorted(result["current"]["by_format"].items())],
    )
    misses = result["current"]["missed"] + result["current"]["false_positives"]
    return "\n\n".join(
        [
            f"Generated by `.venv/bin/python bench/redaction.py --docs"
            f"{' --baseline-rev ' + result['baseline_rev'] if result.get('baseline') else ''}`"
            f" on {time.strftime('%Y-%m-%d')} (Python {result['python']}, {result['machine']},"
            f" {len(RULES)} rules, best CPU time of {result['repeat']} interleaved runs over"
            f" {result['loghub_lines']:,} Loghub-2k lines); raw numbers in"
            " `bench/results/redaction.json`.",
            summary,
            "Per format (this tree):",
            formats,
            "Missed secrets and false positives (this tree): "
            + ("none." if not misses else "; ".join(f"`{line}`" for _, line in misses)),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "loghub2k")
    parser.add_argument("--baseline-rev", help="also measure redact.py of this git revision")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--docs", action="store_true", help="rewrite its block of the doc")
    args = parser.parse_args(argv)

    lines = [line for system in SYSTEMS for line in load_system(args.data, system)[0]]
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeat": args.repeat,
        "loghub_lines": len(lines),
    }
    fns: list[Redact] = [redact]
    if args.baseline_rev:
        fns.append(load_revision(args.baseline_rev))
    seconds = best_times(fns, lines, args.repeat)
    result["current"] = measure(redact, lines, seconds[0])
    if args.baseline_rev:
        result["baseline_rev"] = args.baseline_rev
        result["baseline"] = measure(fns[1], lines, seconds[1])
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "redaction.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.docs:
        replace_generated("redaction", doc_block(result), REDACTION_DOC)
    print(json.dumps(result) if args.json else doc_block(result))


if __name__ == "__main__":
    main()
