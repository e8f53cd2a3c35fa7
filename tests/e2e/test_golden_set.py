"""The dev and held-out suites through the service's evidence and the llama stub.

The floors are those of issue #13 (evidence recall ≥ 0.95, citation validity 1.0, no leaked
secret under either strategy) and of issue 21 (strict top-1 of the findings per suite,
`eval.report.STRICT_FLOORS`; no cause in a false-positive case); the original service's
`seed` strategy runs beside ours so a regression of the comparison shows too. The stub
answers as the real llama-server does (stream, timings, [DONE]), so the model's part is
plumbing here: answer-level figures come from `log-analyzer eval --model smollm2`
(docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.evaluate import eval_client, eval_settings
from eval import report, runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir: Path = tmp_path_factory.mktemp("eval")
    with eval_client("stub", ctx=4096, run_dir=run_dir) as (client, model):
        yield runner.run(
            runner.cases_named(""), ["ours", "seed"], model, client, eval_settings(512)
        )


def test_the_golden_set_holds_the_floors(evaluation: dict[str, Any]) -> None:
    assert evaluation["summary"]["ours"]["cases"] >= 25
    assert report.failures(evaluation) == []


def test_seed_is_measured_beside_ours_and_does_worse(evaluation: dict[str, Any]) -> None:
    ours, seed = evaluation["summary"]["ours"], evaluation["summary"]["seed"]
    assert seed["cases"] == ours["cases"]
    assert seed["evidence_recall"] < ours["evidence_recall"]


def test_a_namespace_with_nothing_to_report_is_never_sent_to_the_model(
    evaluation: dict[str, Any],
) -> None:
    quiet = [c for c in evaluation["cases"] if c["strategy"] == "ours" and "quiet" in c["tags"]]
    assert quiet, "the golden set lost its quiet namespace"
    for case in quiet:
        assert case["model_status"] == "skipped", case
        assert case["prompt_tokens"] in (None, 0), case
        assert case["findings_recall"], case


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir: Path = tmp_path_factory.mktemp("eval-heldout")
    with eval_client("stub", ctx=4096, run_dir=run_dir) as (client, model):
        yield runner.run(
            runner.cases_named("", "heldout"), ["ours"], model, client, eval_settings(512)
        )


def test_the_held_out_set_holds_its_strict_floor_and_names_no_false_cause(
    held_out: dict[str, Any],
) -> None:
    """Issue 21: strict top-1 on incidents the scorer was not tuned on, and no probable cause
    in a healthy window, one whose errors ended before it, or one with a steady loud error."""
    assert held_out["summary"]["ours"]["cases"] >= 40
    assert report.failures(held_out) == []
    false_positives = [c for c in held_out["cases"] if c["failure_class"].startswith("fp-")]
    assert len(false_positives) >= 6
    assert all(c["strict_top1"] for c in false_positives)
