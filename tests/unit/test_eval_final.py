"""The `final` suite (issue 21): held-out data files of `eval/heldout/final/`, loaded as their own
suite, part of `all`, and reported apart from `heldout`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from eval import runner
from eval.incidents import all_cases, get_case
from eval.incidents.catalog import SUITES
from eval.incidents.datafile import FINAL_DIR, load_cases
from tests.unit.test_eval_datafile import MINIMAL
from tests.unit.test_eval_strict import CASE, cause, outcome


def write(root: Path, name: str) -> None:
    data = {**MINIMAL, "name": name, "namespace": f"ho-{name}"}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def test_the_loader_gives_each_file_the_suite_it_is_read_for(tmp_path: Path) -> None:
    write(tmp_path, "one")
    write(tmp_path, "two")
    assert [f.case.suite for f in load_cases(tmp_path, suite="final")] == ["final", "final"]
    assert [f.case.suite for f in load_cases(tmp_path)] == ["heldout", "heldout"]


def test_final_is_a_suite_of_its_own_and_part_of_all() -> None:
    assert "final" in SUITES
    final = all_cases("final")
    assert [c.name for c in final] == [f.case.name for f in load_cases(FINAL_DIR, "final")]
    assert {c.suite for c in final} <= {"final"}
    assert not {c.name for c in final} & {c.name for c in all_cases("heldout")}
    every = all_cases("all")
    assert every == all_cases("dev") + all_cases("heldout") + final
    assert len({c.namespace for c in every}) == len(every)
    assert all(get_case(c.name) == c for c in final)
    with pytest.raises(ValueError, match="unknown suite"):
        all_cases("finals")


def test_final_scores_are_reported_apart_from_heldout() -> None:
    final = replace(CASE, name="f", suite="final")
    scores = [
        runner.score(CASE, "ours", "stub", outcome(cause("nope"))),
        runner.score(final, "ours", "stub", outcome(cause("disk full"))),
    ]
    strict = runner.by_suite_and_class(scores, "ours")
    assert strict["heldout"]["all"]["strict_top1"] == 0.0
    assert strict["final"]["all"]["strict_top1"] == 1.0
    assert strict["final"]["classes"]["early-new-error"]["cases"] == 1
