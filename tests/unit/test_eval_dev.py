"""The dev data files (eval/dev/cases): loaded into the dev suite, never the held-out one, and
each file renders with its expected cause on a line of the request window.

No floor on what the findings rules score here: the scorer's tuning is judged elsewhere.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from eval.incidents import all_cases, render_case
from eval.incidents.builder import to_ns
from eval.incidents.catalog import golden_cases
from eval.incidents.datafile import (
    CLASSES,
    DEV_DIR,
    FALSE_POSITIVE,
    CaseFile,
    check_placeholders,
    load_cases,
)
from workers.evidence.templates import mask
from workers.sources.files import parse_rfc3339_ns

FILES = load_cases(DEV_DIR / "cases", "dev")
BIG = 200_000
"""Cases larger than this are parsed, not rendered, here (they take seconds each)."""
CRI = re.compile(r"(\S+) (stdout|stderr) F (.*)")


def name(case_file: CaseFile) -> str:
    return case_file.case.name


@cache
def window_lines(case_name: str) -> tuple[str, ...]:
    """The messages a case writes inside its request window."""
    case = next(f.case for f in FILES if f.case.name == case_name)
    start, end = to_ns(case.start), to_ns(case.end)
    out = []
    for content in render_case(case).values():
        for raw in content.decode().splitlines():
            match = CRI.fullmatch(raw)
            assert match, raw
            if start <= parse_rfc3339_ns(match[1]) < end:
                out.append(match[3])
    return tuple(out)


def test_the_loader_takes_the_suite_from_the_folder(tmp_path: Path) -> None:
    data = {
        "name": "tiny-dev",
        "class": "fp-healthy",
        "story": "Nothing breaks. All is well.",
        "source": {"title": "A vendor page", "url": "https://example.com/doc"},
        "namespace": "dv-tiny",
        "window": {"start": "2026-01-01T10:00:00Z", "minutes": 10},
        "expected": {"cause": None},
        "pods": {"api": {"deployment": "api"}},
        "streams": [{"pod": "api", "container": "api", "lines": [{"every": 10, "text": "ok"}]}],
    }
    (tmp_path / "tiny-dev.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    assert [f.case.suite for f in load_cases(tmp_path, "dev")] == ["dev"]
    assert [f.case.suite for f in load_cases(tmp_path)] == ["heldout"]  # the default folder's


def test_dev_files_are_in_dev_after_the_golden_cases_and_not_in_heldout() -> None:
    assert FILES, "eval/dev/cases holds no case"
    names = [f.case.name for f in FILES]
    dev = [c.name for c in all_cases("dev")]
    golden = [c.name for c in golden_cases()]
    assert dev == golden + names
    assert not set(names) & {c.name for c in all_cases("heldout")}
    assert all(c.suite == "dev" for c in all_cases("dev"))
    assert all(c.suite == "heldout" for c in all_cases("heldout"))


def test_every_class_has_a_dev_file() -> None:
    assert set(CLASSES) - {f.case.failure_class for f in FILES} == set()


@pytest.mark.parametrize("case_file", FILES, ids=name)
def test_each_file_is_well_formed(case_file: CaseFile) -> None:
    case = case_file.case
    assert case.namespace.startswith("dv-")
    assert case.failure_class in CLASSES
    assert (case.failure_class in FALSE_POSITIVE) == case.expected.no_cause
    assert check_placeholders(case_file) == []
    assert case_file.path is not None and case_file.path.parent == DEV_DIR / "cases"


@pytest.mark.parametrize(
    "case_file",
    [f for f in FILES if f.case.approx_lines < BIG and not f.case.expected.no_cause],
    ids=name,
)
def test_the_expected_cause_is_on_a_window_line(case_file: CaseFile) -> None:
    """The pattern is searched in templates, so it must also match the masked line."""
    pattern = re.compile(case_file.case.expected.cause_pattern)
    lines = window_lines(case_file.case.name)
    assert any(pattern.search(line) and pattern.search(mask(line)) for line in lines)


@pytest.mark.parametrize(
    "case_file", [f for f in FILES if f.case.failure_class == "sampled-away"], ids=name
)
def test_a_sampled_away_window_is_larger_than_its_scan_limit(case_file: CaseFile) -> None:
    assert len(window_lines(case_file.case.name)) > case_file.case.scan_limit
