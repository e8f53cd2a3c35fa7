"""The `final` suite (issue 21): held-out data files of `eval/heldout/final/`, loaded as their own
suite, part of `all`, and reported apart from `heldout`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from eval import runner
from eval.incidents import all_cases, get_case, render_case
from eval.incidents.builder import to_ns
from eval.incidents.catalog import SUITES
from eval.incidents.datafile import (
    FALSE_POSITIVE,
    FINAL_DIR,
    CaseFile,
    check_placeholders,
    load_cases,
)
from tests.unit.test_eval_datafile import MINIMAL
from tests.unit.test_eval_strict import CASE, cause, outcome
from workers.evidence.templates import mask
from workers.sources.files import parse_rfc3339_ns

FINAL = load_cases(FINAL_DIR, suite="final")
CRI = re.compile(r"(\S+) (stdout|stderr) F (.*)")


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


def test_ten_final_cases_cover_the_eight_classes_and_two_false_positives() -> None:
    assert len(FINAL) == 10
    assert len(list(FINAL_DIR.glob("*"))) == len(FINAL)  # nothing but cases
    classes = Counter(f.case.failure_class for f in FINAL)
    eight = {"warning-precedes", "slow-precursor", "grows-hundredfold", "early-new-error"}
    eight |= {"old-one-off", "info-fatal-word", "trace-last-part", "change-at-info"}
    assert eight <= set(classes)
    assert sum(n for c, n in classes.items() if c in FALSE_POSITIVE) == 2
    assert len({n.system for f in FINAL for n in f.noise}) >= 3


@pytest.mark.parametrize("case_file", FINAL, ids=lambda f: f.case.name)
def test_a_final_case_renders_its_cause_inside_the_window(case_file: CaseFile) -> None:
    case = case_file.case
    assert case.suite == "final" and case.scan_limit == 20_000
    assert re.fullmatch(r".+ <https://\S+>", case.source), case.source
    assert 2 <= case.story.count(". ") + 1 <= 5, case.story
    assert not check_placeholders(case_file)
    files = render_case(case)
    assert files == render_case(case)  # deterministic
    start, end = to_ns(case.start), to_ns(case.end)
    window, written = [], 0
    for content in files.values():
        for raw in content.decode().splitlines():
            match = CRI.fullmatch(raw)
            assert match, raw
            written += 1
            if start <= parse_rfc3339_ns(match[1]) < end:
                window.append(match[3])
    assert abs(written - case.approx_lines) <= 0.1 * case.approx_lines
    if case.failure_class in FALSE_POSITIVE:
        assert case.expected.no_cause and not case.expected.cause_pattern
        return
    assert not re.search(r"\d", case.expected.cause_pattern), "templates mask numbers"
    pattern = re.compile(case.expected.cause_pattern)
    matches = [line for line in window if pattern.search(line)]
    assert matches, "the cause pattern matches no line of the window"
    assert any(pattern.search(mask(line)) for line in matches), "pattern holds a variable part"
    for keyword in case.expected.cause_keywords:
        assert any(keyword.lower() in line.lower() for line in matches), keyword
