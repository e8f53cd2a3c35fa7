"""The generic builder of data-file cases (`eval.incidents.datafile`) on small inline files."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from eval.incidents.builder import Builder
from eval.incidents.datafile import CaseFileError, check_placeholders, generate, parse_case

CRI = re.compile(r"(\S+) (stdout|stderr) F (.*)")

MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "class": "early-new-error",
    "story": "A thing breaks. Then another.",
    "source": {"title": "A vendor page", "url": "https://example.com/doc"},
    "namespace": "ho-tiny",
    "window": {"start": "2026-01-01T10:00:00Z", "minutes": 10},
    "expected": {"cause": "disk full", "keywords": ["disk"]},
    "pods": {
        "api": {"deployment": "api", "replicas": 2},
        "db": {"name": "db-0"},
        "job": {"cronjob": "nightly"},
    },
    "streams": [
        {
            "pod": "api",
            "container": "api",
            "lines": [
                {"every": 10, "text": "${ts:iso} INFO ok ${int:1-9} ${pod}"},
                {"at": [30, 31.5], "text": "${ts:py} ERROR disk full on ${pod:db}"},
            ],
        },
        {
            "pod": "db",
            "container": "db",
            "stream": "stderr",
            "lines": [
                {"rate": 0.5, "from": 0, "to": 60, "text": "${ts:pg} LOG a ${uuid}"},
                {"at": 100, "text": "first line\n\tat frame one\n\tat frame two"},
            ],
        },
    ],
}


def render(data: dict[str, Any]) -> dict[str, bytes]:
    case_file = parse_case(data)
    builder = Builder(case_file.case)
    generate(case_file)(builder)
    return builder.files()


def messages(files: dict[str, bytes], container: str) -> list[str]:
    out = []
    for path, content in files.items():
        if f"/{container}/" in path:
            for raw in content.decode().splitlines():
                match = CRI.fullmatch(raw)
                assert match, raw
                out.append(match[3])
    return out


def test_a_file_becomes_a_case_with_its_class_source_and_defaults() -> None:
    case = parse_case(MINIMAL).case
    assert case.suite == "heldout" and case.failure_class == "early-new-error"
    assert case.source == "A vendor page <https://example.com/doc>"
    assert case.scan_limit == 20_000  # the service's default, not the dev cases' 100,000
    assert case.window_seconds == 600
    assert case.expected.cause_pattern == "disk full" and not case.expected.no_cause
    # 1,200 s of lines every 10 s on two replicas, 2 × 2 errors, 30 s × 0.5, one 3-line event
    assert abs(case.approx_lines - (240 + 4 + 30 + 3)) <= 1


def test_rendering_is_deterministic_and_expands_placeholders() -> None:
    first, second = render(MINIMAL), render(copy.deepcopy(MINIMAL))
    assert first == second
    api = messages(first, "api")
    assert len({path.split("/")[0] for path in first if "/api/" in path}) == 2  # two replicas
    errors = [m for m in api if "ERROR" in m]
    assert len(errors) == 4 and all(m.endswith("disk full on db-0") for m in errors)
    assert not any("${" in m for m in api)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR disk full on db-0", errors[0])


def test_a_multi_line_text_is_one_event_on_its_stream() -> None:
    db = messages(render(MINIMAL), "db")
    at = db.index("first line")
    assert db[at + 1 : at + 3] == ["\tat frame one", "\tat frame two"]


def test_lines_stay_in_the_window_and_the_one_before() -> None:
    files = render(MINIMAL)
    stamps = [
        raw.split(" ", 1)[0] for content in files.values() for raw in content.decode().splitlines()
    ]
    assert min(stamps) >= "2026-01-01T09:50:00" and max(stamps) < "2026-01-01T10:10:00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class": "made-up"}, "`class`"),
        ({"expected": {"cause": None}}, "cause is expected"),
        ({"class": "fp-healthy"}, "cause is expected"),
        ({"source": {"title": "x", "url": "http://insecure"}}, "https"),
        ({"window": {"start": "2026-01-01T10:00:00", "minutes": 10}}, "time zone"),
        ({"expected": {"cause": "("}}, "no regex"),
        ({"extra": 1}, "unknown keys"),
        ({"pods": {"api": {"image": "x"}}}, "one of deployment"),
    ],
)
def test_a_malformed_file_is_refused_naming_what_is_wrong(
    change: dict[str, Any], message: str
) -> None:
    data = {**copy.deepcopy(MINIMAL), **change}
    with pytest.raises(CaseFileError, match=re.escape(message)):
        parse_case(data)


def test_a_line_needs_exactly_one_schedule_and_a_known_stream_pod() -> None:
    data = copy.deepcopy(MINIMAL)
    data["streams"][0]["lines"][0]["rate"] = 1
    with pytest.raises(CaseFileError, match="exactly one of"):
        parse_case(data)
    data = copy.deepcopy(MINIMAL)
    data["streams"][0]["pod"] = "nobody"
    with pytest.raises(CaseFileError, match="not in `pods`"):
        parse_case(data)


def test_unknown_placeholders_are_reported() -> None:
    data = copy.deepcopy(MINIMAL)
    data["streams"][0]["lines"][0]["text"] = "${ts:nope} ${wat} ${pod:ghost}"
    problems = check_placeholders(parse_case(data))
    assert len(problems) == 3, problems
