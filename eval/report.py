"""An evaluation as people read it (Markdown), as Prometheus sees it, and as CI checks it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from bench.report import ROOT, replace_generated, table
from shared import metrics
from shared.metrics import MetricsRecorder

# What CI requires of the dev suite with the stub model (issue #13), and of the findings'
# strict top-1 per suite (issue 21: measured at the scorer's commit, a case below it).
FLOORS = {"evidence_recall": 0.95, "citation_validity": 1.0}
STRICT_FLOORS = {"dev": 0.75, "heldout": 0.80}

COLUMNS = [
    ("cases", "cases"),
    ("evidence_recall", "evidence recall"),
    ("median_cause_rank", "median rank of the cause"),
    ("findings_recall", "findings recall"),
    ("answer_recall", "answer recall"),
    ("citation_validity", "citation validity"),
    ("degenerate_rate", "degenerate rate"),
    ("schema_valid_rate", "schema-valid rate"),
    ("cause_agreement", "cause agreement"),
    ("leaks", "leaks"),
    ("lines_read", "lines read"),
    ("templates", "templates"),
    ("prompt_tokens", "prompt tokens"),
    ("median_ttft_s", "median TTFT s"),
    ("total_s", "total s"),
]
STRICT_COLUMNS = [
    ("cases", "cases"),
    ("strict_top1", "strict top-1"),
    ("strict_top3", "strict top-3"),
    ("mrr", "MRR"),
    ("failed", "failed runs"),
]


def _cell(value: Any) -> Any:
    return "–" if value is None else value


def summary_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """One row per (strategy, model), side by side."""
    rows = [
        [strategy, report["model"], *(_cell(figures[key]) for key, _ in COLUMNS)]
        for report in reports
        for strategy, figures in report["summary"].items()
    ]
    return table(
        ["strategy", "model", *(label for _, label in COLUMNS)],
        rows,
        align="ll" + "r" * len(COLUMNS),
    )


def strict_table(report: Mapping[str, Any]) -> str:
    """Strict figures per strategy and suite (issue 21): the first probable cause's template."""
    rows = [
        [strategy, suite, *(_cell(figures["all"][key]) for key, _ in STRICT_COLUMNS)]
        for strategy, suites in report.get("strict", {}).items()
        for suite, figures in suites.items()
        if figures["all"]["strict_top1"] is not None
    ]
    return table(
        ["strategy", "suite", *(label for _, label in STRICT_COLUMNS)],
        rows,
        align="ll" + "r" * len(STRICT_COLUMNS),
    )


def classes_table(report: Mapping[str, Any], strategy: str = "ours") -> str:
    """Strict figures of one strategy per suite and class (held-out cases have a class)."""
    rows = [
        [suite, name, *(_cell(figures[key]) for key, _ in STRICT_COLUMNS)]
        for suite, per_suite in report.get("strict", {}).get(strategy, {}).items()
        for name, figures in per_suite["classes"].items()
    ]
    return table(
        ["suite", "class", *(label for _, label in STRICT_COLUMNS)],
        rows,
        align="ll" + "r" * len(STRICT_COLUMNS),
    )


def cases_table(report: Mapping[str, Any]) -> str:
    """Per case: what each strategy found."""
    rows = []
    for case in report["cases"]:
        rows.append(
            [
                case["case"],
                case.get("suite", "dev"),
                case["strategy"],
                "yes" if case["evidence_recall"] else "no",
                _cell(case["evidence_rank"]),
                _cell({True: "yes", False: "no"}.get(case["findings_recall"])),
                _strict_cell(case),
                _cell({True: "yes", False: "no"}.get(case["answer_recall"])),
                case["model_status"],
                "yes" if case["degenerate"] else "",
                len(case["leaks"]),
                case["lines_read"],
                case["templates"],
                _cell(case["prompt_tokens"]),
                _cell(case["ttft_s"] and round(case["ttft_s"], 2)),
            ]
        )
    headers = [
        "case",
        "suite",
        "strategy",
        "cause in evidence",
        "rank",
        "findings",
        "strict rank",
        "answer",
        "model",
        "degenerate",
        "leaks",
        "lines",
        "templates",
        "prompt tokens",
        "TTFT s",
    ]
    return table(headers, rows, align="lll" + "r" * (len(headers) - 3))


def _strict_cell(case: Mapping[str, Any]) -> Any:
    if case.get("error"):
        return "failed"
    if case.get("strict_top1") is None:
        return "–"
    return case["strict_rank"] or "miss"


def markdown(report: Mapping[str, Any]) -> str:
    parts = [
        f"Evaluation of {report['revision']} against `{report['model']}` on "
        f"{report['date']} ({len({c['case'] for c in report['cases']})} incidents).",
        summary_table([report]),
    ]
    if report.get("strict"):
        parts.append(strict_table(report))
        if any(per["classes"] for per in report["strict"].get("ours", {}).values()):
            parts.append(classes_table(report))
    parts.append(cases_table(report))
    return "\n\n".join(parts)


EVALUATION_DOC = ROOT / "docs" / "evaluation.md"


def docs_block(report: Mapping[str, Any]) -> str:
    """The name of a report's generated block in docs/evaluation.md: one per model."""
    return "eval-" + (
        "stub"
        if report["model"] == "stub"
        else "smollm2"
        if "smollm2" in report["model"].lower()
        else "other"
    )


def write_docs(report: Mapping[str, Any], text: str) -> str:
    """Replace the report's block in docs/evaluation.md with `text`; the block's name."""
    name = docs_block(report)
    replace_generated(name, text, EVALUATION_DOC)
    return f"{EVALUATION_DOC.relative_to(ROOT)} ({name})"


def failures(
    report: Mapping[str, Any],
    floors: Mapping[str, float] = FLOORS,
    strict_floors: Mapping[str, float] = STRICT_FLOORS,
) -> list[str]:
    """What the `ours` strategy misses of the floors: the dev suite's (any model: degenerate
    rate 0, no model call for a quiet namespace), the strict top-1 of each suite run that has
    a floor, a probable cause named in a false-positive case; and any leak under any
    strategy and suite. The `final` suite (written after the scorer) has no floor: it is only
    reported."""
    problems = []
    suites = report.get("suites")
    ours = (suites.get("dev", {}) if suites is not None else report["summary"]).get("ours")
    if ours is not None:
        for key, floor in floors.items():
            value = ours.get(key)
            if value is None or value < floor:
                problems.append(f"ours: {key} {value} < {floor}")
        if ours.get("degenerate_rate"):
            problems.append(f"ours: degenerate rate {ours['degenerate_rate']} > 0")
        valid = ours.get("schema_valid_rate")
        if valid is not None and valid < 1.0:
            problems.append(f"ours: schema-valid rate {valid} < 1.0 (JSON answers)")
    strict = report.get("strict", {}).get("ours", {})
    for suite, floor in strict_floors.items():
        figures = strict.get(suite, {}).get("all")
        if figures is None:
            continue
        top1 = figures.get("strict_top1")
        if top1 is None or top1 < floor:
            problems.append(f"ours: {suite} strict top-1 {top1} < {floor}")
    for strategy, figures in report["summary"].items():
        if figures["leaks"]:
            problems.append(f"{strategy}: {figures['leaks']} leaked secrets")
    for case in report["cases"]:
        if case["strategy"] != "ours":
            continue
        if "quiet" in case["tags"] and case["model_status"] != "skipped":
            problems.append(f"{case['case']}: the model was asked about an empty window")
        if case.get("failure_class", "").startswith("fp-") and case.get("strict_top1") is False:
            problems.append(f"{case['case']}: a probable cause named in a false-positive case")
    return problems


GAUGES = {
    "evidence_recall": metrics.EVAL_EVIDENCE_RECALL,
    "findings_recall": metrics.EVAL_FINDINGS_RECALL,
    "answer_recall": metrics.EVAL_ANSWER_RECALL,
    "citation_validity": metrics.EVAL_CITATION_VALIDITY,
    "degenerate_rate": metrics.EVAL_DEGENERATE_RATE,
    "leaks": metrics.EVAL_LEAKS,
    "cases": metrics.EVAL_CASES,
    "median_ttft_s": metrics.EVAL_TTFT,
}


def publish(report: Mapping[str, Any], redis_url: str) -> int:
    """Set the report's figures as gauges in the service's metrics (served by `/metrics`)."""
    written = 0
    with redis.Redis.from_url(redis_url) as client:
        recorder = MetricsRecorder(client)
        for strategy, figures in report["summary"].items():
            for key, name in GAUGES.items():
                value = figures.get(key)
                if value is not None:
                    recorder.set(name, float(value), strategy=strategy, model=report["model"])
                    written += 1
    return written
