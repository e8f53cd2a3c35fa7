"""Structured answers beside free text: two saved evaluations, figures over the cases they share.

    python -m eval.compare eval/results/latest-<slug>-json.json eval/results/latest-<slug>-text.json

Per run (strategy `ours`, the cases present in every run given): answered cases, degenerate
answers, schema-valid rate (JSON answers that parsed and matched their schema), cause
agreement (the answer's cause is the findings' first cause: the JSON `cause`, or in free text
the first template id cited), answer recall and invalid citations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import table


def _rate(values: list[bool | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known) / len(known):.3f} ({sum(known)}/{len(known)})" if known else "–"


def figures(cases: list[dict[str, Any]]) -> list[Any]:
    answered = [c for c in cases if c["model_status"] == "answered"]
    return [
        len(cases),
        len(answered),
        sum(c["degenerate"] for c in answered),
        _rate([c.get("schema_valid") for c in cases]),
        _rate([c.get("cause_agrees") for c in cases]),
        _rate([c["answer_recall"] for c in cases]),
        sum(c["citations_invalid"] for c in cases),
    ]


def compare(reports: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per report, over the `ours` cases every report has."""
    per_report = [
        {c["case"]: c for c in report["cases"] if c["strategy"] == "ours"} for report in reports
    ]
    shared = set.intersection(*(set(cases) for cases in per_report))
    rows = [
        [
            report.get("answer_format", "auto"),
            report["model"],
            report["revision"],
            *figures([cases[name] for name in sorted(shared)]),
        ]
        for report, cases in zip(reports, per_report, strict=True)
    ]
    headers = [
        "answer format",
        "model",
        "revision",
        "cases",
        "answered",
        "degenerate answers",
        "schema-valid",
        "cause agreement",
        "answer recall",
        "invalid citations",
    ]
    return table(headers, rows, align="lll" + "r" * 7)


def main() -> None:
    reports = [json.loads(Path(path).read_text()) for path in sys.argv[1:]]
    if not reports:
        raise SystemExit(__doc__)
    sys.stdout.write(compare(reports) + "\n")


if __name__ == "__main__":
    main()
