"""Run the golden set: every incident through each strategy against a model, scored.

Per case and strategy: evidence recall (the cause is among the templates the model saw) and
its rank; findings recall (the first probable cause is the cause, or, for a quiet or
warning-only namespace, the findings say so); answer recall (the answer names the cause's
keywords); citation validity; whether the answer degenerated; leaks (a secret of the case in
the prompt or the result); compression (lines → templates → prompt tokens); time to first
token and in all.

Strict scoring (issue 21), per suite (`dev`, `heldout`) and per class: the rank of the first
probable cause whose **template** (not its examples) the cause pattern matches, giving
strict top-1, top-3 and the mean reciprocal rank. A case with no cause to find counts as found
only when no probable cause is named. A run that raises counts as a miss, never as skipped.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eval.clients import EvalClient
from eval.incidents import Case, all_cases, write_case
from eval.strategies import STRATEGIES, Outcome
from shared.schemas import AnalysisRequest
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".run" / "eval"
RESULTS = ROOT / "eval" / "results"


@dataclass
class Score:
    """One case under one strategy and model."""

    case: str
    strategy: str
    model: str
    tags: list[str]
    evidence_recall: bool | None  # None: the case has no cause to find
    evidence_rank: int | None
    findings_recall: bool | None  # None: the strategy has no findings
    answer_recall: bool | None  # None: the model was not asked
    citations_valid: int
    citations_invalid: int
    degenerate: bool
    leaks: list[str]
    lines_read: int
    templates: int
    prompt_tokens: int | None
    ttft_s: float | None
    total_s: float
    model_status: str
    suite: str = "dev"
    failure_class: str = ""
    strict_rank: int | None = None  # rank of the first probable cause matching; None: none
    strict_top1: bool | None = None  # None: the strategy has no findings
    strict_top3: bool | None = None
    strict_rr: float | None = None  # reciprocal rank (0 when missed)
    error: str | None = None  # the run failed: what it raised
    answer_format: str = "text"
    schema_valid: bool | None = None  # JSON mode: the answer parsed and matched its schema
    cause_agrees: bool | None = None  # the answer's cause is the findings' first cause
    answer: str = ""  # the model's text as the reader saw it (JSON mode: its Markdown)


def request_for(case: Case) -> AnalysisRequest:
    return AnalysisRequest.model_validate(
        {
            "time_range": {"start": case.start.isoformat(), "end": case.end.isoformat()},
            "filters": {"namespace": case.namespace},
            "limit": 15,
            "scan_limit": case.scan_limit,
            "question": case.question,
        }
    )


def _matches(pattern: re.Pattern[str] | None, texts: Sequence[str]) -> int | None:
    """1-based position of the first text the cause pattern matches."""
    if pattern is None:
        return None
    return next((n for n, text in enumerate(texts, 1) if pattern.search(text)), None)


def _findings_recall(case: Case, outcome: Outcome, pattern: re.Pattern[str] | None) -> bool | None:
    findings = outcome.findings
    if findings is None:
        return None
    if case.expected.empty:
        return findings.empty and not findings.probable_causes
    if case.expected.low_severity_only:
        return findings.only_low_severity and not findings.probable_causes
    if case.expected.no_cause:
        return not findings.probable_causes
    if not findings.probable_causes or pattern is None:
        return False
    cause = findings.probable_causes[0]
    shown = dict(zip(outcome.shown_ids, outcome.shown, strict=False))
    return bool(pattern.search(shown.get(cause.template_id, cause.template)))


def _no_cause_expected(case: Case) -> bool:
    expected = case.expected
    return (
        expected.empty
        or expected.low_severity_only
        or expected.no_cause
        or not (expected.cause_pattern)
    )


def strict_rank(case: Case, outcome: Outcome) -> int | None:
    """Strict rank: 1-based position of the first probable cause whose template matches.

    A case with no cause to find is ranked 1 when no probable cause is named (and, for a
    quiet or warning-only namespace, the findings say so), else None. A failed run: None.
    """
    findings = outcome.findings
    if findings is None or outcome.error is not None:
        return None
    expected = case.expected
    if _no_cause_expected(case):
        if findings.probable_causes:
            return None
        if expected.empty and not findings.empty:
            return None
        if expected.low_severity_only and not findings.only_low_severity:
            return None
        return 1
    pattern = re.compile(expected.cause_pattern)
    return next(
        (n for n, c in enumerate(findings.probable_causes, 1) if pattern.search(c.template)),
        None,
    )


def _answer_recall(case: Case, outcome: Outcome) -> bool | None:
    if case.expected.empty or case.expected.low_severity_only:
        # The honest answer: the model is not asked, nothing is invented.
        return outcome.model_status in ("skipped", "not asked") and not outcome.prompt
    if outcome.model_status != "answered":
        return None
    answer = outcome.answer.lower()
    return all(word.lower() in answer for word in case.expected.cause_keywords)


_CITED = re.compile(r"\bT\d{1,4}\b")


def answer_cause(outcome: Outcome) -> str | None:
    """The cause the answer names: the JSON answer's `cause`; in free text, the first template
    id cited (`none` when it cites none)."""
    if outcome.answer_format == "json":
        return outcome.structured_cause
    first = _CITED.search(outcome.answer)
    return first.group() if first else "none"


def cause_agreement(outcome: Outcome) -> bool | None:
    """Whether the answer's cause is the findings' first probable cause (`none` when they name
    none); None when the model did not answer or the strategy has no findings."""
    if outcome.model_status != "answered" or outcome.findings is None:
        return None
    causes = outcome.findings.probable_causes
    return answer_cause(outcome) == (causes[0].template_id if causes else "none")


def score(case: Case, strategy: str, model: str, outcome: Outcome) -> Score:
    expected = case.expected
    pattern = re.compile(expected.cause_pattern) if expected.cause_pattern else None
    rank = _matches(pattern, outcome.shown)
    public = outcome.prompt + outcome.answer + outcome.result_json
    if outcome.findings is not None:
        public += outcome.findings.model_dump_json()
    has_findings = outcome.findings is not None or (
        outcome.error is not None and strategy in FINDINGS_STRATEGIES
    )
    ranked = strict_rank(case, outcome)
    return Score(
        case=case.name,
        strategy=strategy,
        model=model,
        tags=list(case.tags),
        evidence_recall=None if pattern is None else rank is not None,
        evidence_rank=rank,
        findings_recall=(
            False
            if outcome.error is not None and strategy in FINDINGS_STRATEGIES
            else _findings_recall(case, outcome, pattern)
        ),
        answer_recall=_answer_recall(case, outcome),
        citations_valid=len(outcome.cited_valid),
        citations_invalid=len(outcome.cited_invalid),
        degenerate=outcome.finish_reason == "degenerate",
        leaks=[secret for secret in case.forbidden if secret in public],
        lines_read=outcome.lines_read,
        templates=outcome.templates,
        prompt_tokens=outcome.prompt_tokens,
        ttft_s=outcome.ttft_s,
        total_s=round(outcome.total_s, 3),
        model_status=outcome.model_status,
        suite=case.suite,
        failure_class=case.failure_class,
        strict_rank=ranked,
        strict_top1=ranked == 1 if has_findings else None,
        strict_top3=ranked is not None and ranked <= 3 if has_findings else None,
        strict_rr=(1.0 / ranked if ranked else 0.0) if has_findings else None,
        error=outcome.error,
        answer_format=outcome.answer_format,
        schema_valid=(
            outcome.structured_cause is not None
            if outcome.answer_format == "json" and outcome.model_status == "answered"
            else None
        ),
        cause_agrees=cause_agreement(outcome),
        answer=outcome.answer,
    )


def _rate(values: Sequence[bool | float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None


def strict_summary(scores: Sequence[Score]) -> dict[str, Any]:
    """Strict top-1, top-3 and MRR of some scores (one strategy), and how many runs failed."""
    return {
        "cases": len(scores),
        "strict_top1": _rate([s.strict_top1 for s in scores]),
        "strict_top3": _rate([s.strict_top3 for s in scores]),
        "mrr": _rate([s.strict_rr for s in scores]),
        "failed": sum(s.error is not None for s in scores),
    }


def summarize(scores: Sequence[Score]) -> dict[str, Any]:
    """The figures of one strategy and model over all cases."""
    cited = sum(s.citations_valid + s.citations_invalid for s in scores)
    ranks = [s.evidence_rank for s in scores if s.evidence_rank is not None]
    ttfts = [s.ttft_s for s in scores if s.ttft_s is not None]
    asked = [s for s in scores if s.model_status == "answered"]
    return {
        "cases": len(scores),
        "evidence_recall": _rate([s.evidence_recall for s in scores]),
        "median_cause_rank": statistics.median(ranks) if ranks else None,
        "findings_recall": _rate([s.findings_recall for s in scores]),
        "answer_recall": _rate([s.answer_recall for s in scores]),
        "citation_validity": (
            round(sum(s.citations_valid for s in scores) / cited, 3) if cited else 1.0
        ),
        "schema_valid_rate": _rate([s.schema_valid for s in scores]),
        "cause_agreement": _rate([s.cause_agrees for s in scores]),
        "degenerate_answers": sum(s.degenerate for s in asked),
        "degenerate_rate": round(sum(s.degenerate for s in asked) / len(asked), 3)
        if asked
        else 0.0,
        "leaks": sum(len(s.leaks) for s in scores),
        "lines_read": sum(s.lines_read for s in scores),
        "templates": sum(s.templates for s in scores),
        "prompt_tokens": sum(s.prompt_tokens or 0 for s in scores),
        "median_ttft_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "total_s": round(sum(s.total_s for s in scores), 1),
        **{k: v for k, v in strict_summary(scores).items() if k != "cases"},
    }


def by_suite_and_class(scores: Sequence[Score], strategy: str) -> dict[str, dict[str, Any]]:
    """Strict figures of one strategy per suite, then per class within each suite."""
    out: dict[str, dict[str, Any]] = {}
    mine = [s for s in scores if s.strategy == strategy]
    for suite in sorted({s.suite for s in mine}):
        in_suite = [s for s in mine if s.suite == suite]
        classes = sorted({s.failure_class for s in in_suite if s.failure_class})
        out[suite] = {
            "all": strict_summary(in_suite),
            "classes": {
                name: strict_summary([s for s in in_suite if s.failure_class == name])
                for name in classes
            },
        }
    return out


def revision() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def run(
    cases: Sequence[Case],
    strategies: Sequence[str],
    model: str,
    client: EvalClient | None,
    settings: Settings,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Every case through every strategy; the scores and their summaries."""
    scores: list[Score] = []
    for case in cases:
        pods = write_case(case, CACHE)
        request = request_for(case)
        for strategy in strategies:
            outcome = run_strategy(strategy, request, pods, client, settings)
            scored = score(case, strategy, model, outcome)
            scores.append(scored)
            progress(
                f"{case.name:<32} {strategy:<5} evidence {scored.evidence_recall!s:<5} "
                f"findings {scored.findings_recall!s:<5} strict {scored.strict_rank!s:<4} "
                f"answer {scored.answer_recall!s:<5} {scored.total_s:6.1f} s"
                + (f" FAILED: {scored.error}" if scored.error else "")
            )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": revision(),
        "model": model,
        "answer_format": settings.llm_answer_format,
        "strategies": list(strategies),
        "summary": {
            strategy: summarize([s for s in scores if s.strategy == strategy])
            for strategy in strategies
        },
        "suites": {
            suite: {
                strategy: summarize(
                    [s for s in scores if s.strategy == strategy and s.suite == suite]
                )
                for strategy in strategies
            }
            for suite in sorted({s.suite for s in scores})
        },
        "strict": {strategy: by_suite_and_class(scores, strategy) for strategy in strategies},
        "cases": [asdict(s) for s in scores],
    }


FINDINGS_STRATEGIES = frozenset({"ours"})
"""Strategies that compute findings: a failed run of one of them is a strict miss."""


def run_strategy(
    strategy: str,
    request: AnalysisRequest,
    pods: Path,
    client: EvalClient | None,
    settings: Settings,
) -> Outcome:
    """One strategy on one case; a run that raises becomes a failed outcome (a miss)."""
    started = time.monotonic()
    try:
        return STRATEGIES[strategy](request, pods, client, settings)
    except Exception as exc:  # any failure of the pipeline is a scored miss, not a crash
        return Outcome(
            shown=[],
            answer="",
            prompt="",
            total_s=time.monotonic() - started,
            model_status="failed",
            error=f"{type(exc).__name__}: {exc}"[:500],
        )


def cases_named(names: str, suite: str = "dev") -> list[Case]:
    """All cases of `suite` (`dev`, `heldout`, `final`, `all`), or those named (comma-separated)."""
    cases = all_cases(suite)
    if not names:
        return cases
    wanted = {name.strip() for name in names.split(",")}
    unknown = wanted - {c.name for c in cases}
    if unknown:
        raise SystemExit(f"unknown cases: {', '.join(sorted(unknown))}")
    return [c for c in cases if c.name in wanted]


def save(report: dict[str, Any], text: str, suite: str = "dev") -> Path:
    """Write the report as JSON and Markdown under eval/results/: `latest-<model>` for the dev
    suite, `latest-<model>-<suite>` for the others (so a held-out run keeps the dev figures)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", report["model"].lower()).strip("-")
    if report.get("answer_format", "auto") != "auto":
        slug = f"{slug}-{report['answer_format']}"
    name = f"latest-{slug}" if suite == "dev" else f"latest-{slug}-{suite}"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(text + "\n")
    return RESULTS / f"{name}.md"
