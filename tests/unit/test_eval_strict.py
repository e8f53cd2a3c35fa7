"""Strict scoring of the evaluation (issue 21): the first probable cause's template, per suite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eval import report, runner
from eval.incidents.model import Case, Expected
from eval.strategies import STRATEGIES, Outcome
from shared.schemas.findings import Findings, ProbableCause, Searched
from shared.settings import Settings

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
CASE = Case(
    name="c",
    story="s. t.",
    namespace="ns",
    start=T0,
    end=T0.replace(hour=11),
    expected=Expected(cause_pattern="disk full", cause_keywords=("disk",)),
    forbidden=(),
    tags=(),
    approx_lines=1,
    suite="heldout",
    failure_class="early-new-error",
)
NO_CAUSE = replace(
    CASE,
    expected=Expected(cause_pattern="", cause_keywords=(), no_cause=True),
    failure_class="fp-healthy",
)


def cause(template: str, examples_say: str = "") -> ProbableCause:
    return ProbableCause(
        template_id=f"t{abs(hash(template)) % 1000}",
        fingerprint="f",
        template=template,
        level="error",
        first_seen=T0,
        count=1,
        confidence="high",
        reasons=[examples_say],
    )


def outcome(*causes: ProbableCause, error: str | None = None) -> Outcome:
    findings = Findings(
        empty=False,
        summary="",
        searched=Searched(query="{}", start=T0, end=T0, lines_scanned=1),
        probable_causes=list(causes),
    )
    return Outcome(shown=[], answer="", prompt="", findings=findings, error=error)


@pytest.mark.parametrize(
    ("templates", "rank"),
    [
        (["disk full on <*>"], 1),
        (["connection refused", "disk full on <*>"], 2),
        (["a", "b", "disk full"], 3),
        (["connection refused"], None),
        ([], None),
    ],
)
def test_strict_rank_is_the_first_matching_template(templates: list[str], rank: int | None) -> None:
    assert runner.strict_rank(CASE, outcome(*map(cause, templates))) == rank


def test_only_the_template_counts_not_the_examples_or_reasons() -> None:
    shown = outcome(cause("connection refused", examples_say="disk full"))
    assert runner.strict_rank(CASE, shown) is None
    scored = runner.score(CASE, "ours", "stub", shown)
    assert scored.strict_top1 is False and scored.strict_rr == 0.0


def test_a_false_positive_case_is_found_only_when_no_cause_is_named() -> None:
    assert runner.strict_rank(NO_CAUSE, outcome()) == 1
    assert runner.strict_rank(NO_CAUSE, outcome(cause("anything"))) is None


def test_scores_carry_top1_top3_and_reciprocal_rank() -> None:
    scored = runner.score(CASE, "ours", "stub", outcome(cause("x"), cause("disk full")))
    assert (scored.strict_rank, scored.strict_top1, scored.strict_top3) == (2, False, True)
    assert scored.strict_rr == 0.5
    assert (scored.suite, scored.failure_class) == ("heldout", "early-new-error")


def test_a_failed_run_is_a_miss_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom(*_args: object) -> Outcome:
        raise RuntimeError("pipeline broke")

    monkeypatch.setitem(STRATEGIES, "ours", boom)
    failed = runner.run_strategy(
        "ours", runner.request_for(CASE), tmp_path, None, Settings(otel_sdk_disabled=True)
    )
    assert failed.error == "RuntimeError: pipeline broke" and failed.model_status == "failed"
    scored = runner.score(CASE, "ours", "stub", failed)
    assert (scored.strict_top1, scored.strict_top3, scored.strict_rr) == (False, False, 0.0)
    assert scored.findings_recall is False
    assert runner.strict_summary([scored])["failed"] == 1


def test_summaries_are_per_suite_and_class_and_floors_read_dev_only() -> None:
    dev = replace(CASE, suite="dev", failure_class="")
    scores = [
        runner.score(dev, "ours", "stub", outcome(cause("disk full"))),
        runner.score(CASE, "ours", "stub", outcome(cause("nope"))),
        runner.score(NO_CAUSE, "ours", "stub", outcome()),
    ]
    strict = runner.by_suite_and_class(scores, "ours")
    assert strict["dev"]["all"]["strict_top1"] == 1.0
    assert strict["heldout"]["all"] == {
        "cases": 2,
        "strict_top1": 0.5,
        "strict_top3": 0.5,
        "mrr": 0.5,
        "failed": 0,
    }
    assert strict["heldout"]["classes"]["early-new-error"]["strict_top1"] == 0.0
    held_out_only = {
        "summary": {"ours": runner.summarize(scores[1:])},
        "suites": {"heldout": {"ours": runner.summarize(scores[1:])}},
        "strict": {"ours": strict},
        "cases": [],
    }
    assert report.failures(held_out_only) == [
        f"ours: heldout strict top-1 0.5 < {report.STRICT_FLOORS['heldout']}"
    ]
    assert report.failures(held_out_only, strict_floors={"heldout": 0.5}) == []
    table = report.classes_table(held_out_only)
    assert "early-new-error" in table and "0.000" in table


def test_the_old_findings_recall_of_a_false_positive_case_is_no_cause_named() -> None:
    assert runner.score(NO_CAUSE, "ours", "stub", outcome()).findings_recall is True
    named = runner.score(NO_CAUSE, "ours", "stub", outcome(cause("x")))
    assert named.findings_recall is False


def test_a_cause_named_in_a_false_positive_case_fails_the_check() -> None:
    row = {
        "case": "fp-healthy-x",
        "strategy": "ours",
        "tags": [],
        "model_status": "skipped",
        "failure_class": "fp-healthy",
        "strict_top1": False,
    }
    figures = {"leaks": 0, "evidence_recall": 1.0, "citation_validity": 1.0}
    result = {"summary": {"ours": figures}, "suites": {}, "strict": {}, "cases": [row]}
    assert report.failures(result) == [
        "fp-healthy-x: a probable cause named in a false-positive case"
    ]
    assert report.failures({**result, "cases": [{**row, "strict_top1": True}]}) == []
