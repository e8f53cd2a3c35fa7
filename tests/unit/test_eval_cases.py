"""The golden incident corpus (`eval.incidents`): metadata, generated logs, and read-back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from eval.incidents import Case, get_case, render_case, write_case
from eval.incidents.builder import to_ns
from eval.incidents.catalog import CASES_DIR, case_to_dict, golden_cases, is_small
from eval.load_loki import MAX_BATCH, load
from shared.logql import parse_log_filter
from shared.schemas import Filters
from workers.sources import ReadPlan, Window, read_all
from workers.sources.files import FileSource, parse_rfc3339_ns

CRI = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) F (.*)")
POD_DIR = re.compile(r"(?P<ns>[a-z0-9-]+)_(?P<pod>[a-z0-9.-]+)_(?P<uid>[0-9a-f-]{36})")
RFC1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
FILE_NAME = re.compile(r"\d+\.log")
HUGE = 100_000
"""Cases this large are only generated when EVAL_LARGE_CASES=1 (a few seconds each)."""

CASES = golden_cases()
"""The Python-table cases; the dev data files are tested in test_eval_dev.py."""
EVERYDAY = [c for c in CASES if c.approx_lines < HUGE]
HUGE_CASES = [c for c in CASES if c.approx_lines >= HUGE]


@dataclass(frozen=True)
class Line:
    path: str
    ts_ns: int
    stream: str
    message: str


@cache
def lines_of(name: str) -> tuple[Line, ...]:
    """Every CRI line of a case, parsed (cached: several tests look at the same case)."""
    out: list[Line] = []
    for path, content in render_case(get_case(name)).items():
        for raw in content.decode().split("\n")[:-1]:
            match = CRI.fullmatch(raw)
            assert match, f"{path}: not a CRI line: {raw!r}"
            ts, stream, message = match.groups()
            out.append(Line(path, parse_rfc3339_ns(ts), stream, message))
    return tuple(out)


def window_ns(case: Case) -> tuple[int, int, int]:
    """(previous window start, request start, request end) in ns."""
    start, end = to_ns(case.start), to_ns(case.end)
    return start - (end - start), start, end


def in_window(case: Case) -> Iterator[Line]:
    _, start, end = window_ns(case)
    return (line for line in lines_of(case.name) if start <= line.ts_ns < end)


# --- metadata -------------------------------------------------------------------------------


def test_at_least_26_cases_with_unique_names_and_namespaces() -> None:
    assert len(CASES) >= 26
    assert len({c.name for c in CASES}) == len(CASES)
    assert len({c.namespace for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_metadata_is_well_formed(case: Case) -> None:
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", case.name)
    assert RFC1123_LABEL.fullmatch(case.namespace)
    assert case.start.utcoffset() is not None and case.start.utcoffset() == case.end.utcoffset()
    assert case.start < case.end
    assert 1 <= case.scan_limit <= 1_000_000
    assert case.approx_lines > 0
    assert 2 <= case.story.count(". ") + 1 <= 5, case.story
    expected = case.expected
    if expected.empty or expected.low_severity_only:
        assert expected.cause_pattern == "" and expected.cause_keywords == ()
    else:
        re.compile(expected.cause_pattern)
        assert 1 <= len(expected.cause_keywords) <= 3


def test_coverage_of_sizes_and_kinds() -> None:
    sizes = sorted(c.approx_lines for c in CASES if "large" in c.tags)
    assert len(sizes) >= 3 and sizes[-1] >= 200_000 and sizes[0] >= 50_000
    assert sum(c.expected.empty for c in CASES) >= 1
    assert sum(c.expected.low_severity_only for c in CASES) >= 1
    tags = {tag for c in CASES for tag in c.tags}
    assert {"json", "logfmt", "multiline", "secrets", "noise", "restarts"} <= tags


# --- generated logs -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["db-credentials-rotated", "missing-config-key"])
def test_write_case_is_deterministic(name: str, tmp_path: Path) -> None:
    case = get_case(name)
    first, second = write_case(case, tmp_path / "a"), write_case(case, tmp_path / "b")
    assert first == tmp_path / "a" / name / "pods"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


@pytest.mark.parametrize("case", EVERYDAY, ids=lambda c: c.name)
def test_layout_cri_and_time_range(case: Case) -> None:
    lo, _, end = window_ns(case)
    last: dict[str, int] = {}
    for line in lines_of(case.name):
        pod_dir, container, file_name = line.path.split("/")
        match = POD_DIR.fullmatch(pod_dir)
        assert match and match["ns"] == case.namespace, pod_dir
        assert re.fullmatch(r"[a-z0-9-]+", container) and FILE_NAME.fullmatch(file_name)
        assert lo <= line.ts_ns < end, line
        assert line.ts_ns >= last.get(line.path, 0), f"{line.path} not sorted at {line}"
        last[line.path] = line.ts_ns
    written = len(lines_of(case.name))
    assert abs(written - case.approx_lines) <= 0.1 * case.approx_lines, written


@pytest.mark.parametrize("case", EVERYDAY, ids=lambda c: c.name)
def test_cause_lines_are_in_the_window_and_carry_the_keywords(case: Case) -> None:
    expected = case.expected
    if not expected.cause_pattern:
        return
    pattern = re.compile(expected.cause_pattern)
    matches = [line for line in lines_of(case.name) if pattern.search(line.message)]
    assert matches, "the cause pattern matches no line"
    _, start, end = window_ns(case)
    outside = [line for line in matches if not start <= line.ts_ns < end]
    assert not outside, f"cause lines outside the request window: {outside[:3]}"
    for keyword in expected.cause_keywords:
        assert any(keyword.lower() in line.message.lower() for line in matches), keyword


@pytest.mark.parametrize("case", EVERYDAY, ids=lambda c: c.name)
def test_forbidden_strings_occur_in_the_raw_logs(case: Case) -> None:
    messages = [line.message for line in lines_of(case.name)]
    for secret in case.forbidden:
        assert any(secret in m for m in messages), secret


def test_previous_window_has_logs_too() -> None:
    for case in EVERYDAY:
        _, start, _ = window_ns(case)
        assert any(line.ts_ns < start for line in lines_of(case.name)), case.name


def test_quiet_namespace_is_silent_in_the_window() -> None:
    quiet = [c for c in CASES if c.expected.empty]
    for case in quiet:
        assert lines_of(case.name), "the namespace had logs before the window"
        assert not list(in_window(case))


def test_files_are_read_back_by_the_file_source(tmp_path: Path) -> None:
    case = get_case("db-credentials-rotated")
    pods = write_case(case, tmp_path)
    _, start, end = window_ns(case)
    window = Window(Filters(namespace=case.namespace), parse_log_filter(""), start, end)
    lines, result = read_all(FileSource(pods), ReadPlan(window, case.scan_limit))
    assert result.seen == len(list(in_window(case))) == result.kept == len(lines)
    assert result.coverage is not None and result.coverage.mode == "complete"
    assert {raw.labels["namespace"] for raw in lines} == {case.namespace}
    assert {raw.labels["container"] for raw in lines} >= {"api", "postgres", "nginx"}
    pattern = re.compile(case.expected.cause_pattern)
    assert any(pattern.search(raw.line) for raw in lines)


# --- committed files ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_yaml_matches_the_catalog(case: Case) -> None:
    path = CASES_DIR / case.name / "case.yaml"
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == case_to_dict(case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_committed_pods_match_the_generator(case: Case) -> None:
    pods = CASES_DIR / case.name / "pods"
    if not is_small(case):
        assert not pods.exists(), "logs of large cases are generated at run time"
        return
    committed = {str(p.relative_to(pods)): p.read_bytes() for p in pods.rglob("*.log")}
    assert committed == render_case(case), "run `python -m eval.incidents --write`"


# --- Loki loader ----------------------------------------------------------------------------


def test_load_loki_pushes_every_line_in_small_batches(tmp_path: Path) -> None:
    case = get_case("missing-config-key")
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        loaded = load(client, "http://loki:3100", case, tmp_path, "node-1", None)
    entries = [
        (stream["stream"], value)
        for body in bodies
        for stream in body["streams"]
        for value in stream["values"]
    ]
    assert loaded.entries == len(entries) == len(lines_of(case.name))
    assert loaded.batches == len(bodies) >= 1
    assert all(sum(len(s["values"]) for s in body["streams"]) <= MAX_BATCH for body in bodies)
    labels, (ts, _line) = entries[0]
    assert set(labels) == {"namespace", "pod", "container", "node"}
    lo, _, end = window_ns(case)
    assert lo <= int(ts) < end


# --- the large cases ------------------------------------------------------------------------


@pytest.mark.parametrize("case", HUGE_CASES, ids=lambda c: c.name)
def test_huge_case_metadata(case: Case) -> None:
    assert case.scan_limit >= case.approx_lines // 2
    assert "large" in case.tags and case.expected.cause_pattern


@pytest.mark.parametrize("case", HUGE_CASES, ids=lambda c: c.name)
def test_huge_case_generation(case: Case) -> None:
    test_layout_cri_and_time_range(case)
    test_cause_lines_are_in_the_window_and_carry_the_keywords(case)
    lines_of.cache_clear()
