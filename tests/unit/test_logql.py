"""shared.logql: validation, canonical rendering, injection resistance, local evaluation."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from shared.errors import InvalidQueryError
from shared.logql import (
    LabelFilter,
    LineFilter,
    LogFilter,
    ParserStage,
    build_query,
    escape_logql_string,
    parse_log_filter,
    validate_filters,
    validate_request_filters,
)
from shared.schemas import AnalysisRequest, Filters
from shared.settings import SEVERE_LINE_FILTER
from tests.support.logql_corpus import HOSTILE, LOG_FILTER_CORPUS, ORACLE

# --- An independent reader for the queries we produce --------------------------------------
# Deliberately shares no code with shared.logql: it checks the *shape* of a produced query.

_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_GO_ESCAPES.update({"\\": "\\", '"': '"'})


def _read_go_string(text: str, i: int) -> tuple[str, int]:
    assert text[i] == '"', f"expected a string at {i} in {text!r}"
    out = []
    i += 1
    while text[i] != '"':
        ch = text[i]
        assert ch != "\n", "raw newline inside a produced string"
        if ch == "\\":
            esc = text[i + 1]
            if esc in _GO_ESCAPES:
                out.append(_GO_ESCAPES[esc])
                i += 2
            else:
                width = {"x": 2, "u": 4, "U": 8}[esc]
                out.append(chr(int(text[i + 2 : i + 2 + width], 16)))
                i += 2 + width
        else:
            out.append(ch)
            i += 1
    return "".join(out), i + 1


@dataclass
class Shape:
    matchers: list[tuple[str, str, str]]
    stages: list[str]
    strings: list[str]


_STAGE = re.compile(
    r"\s*(?:(?P<line>\|=|!=|\|~|!~)\s*(?=\")"
    r"|\|\s*(?P<parser>json|logfmt)\b"
    r"|\|\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)(?P<op>=~|!~|!=|==|>=|<=|=|>|<)"
    r")"
)


def read_shape(query: str) -> Shape:
    """Split a produced query into selector matchers and pipeline stage kinds."""
    assert query.startswith("{"), query
    i = 1
    matchers = []
    while True:
        m = re.compile(r"([a-z_]+)(=~|!~|!=|=)").match(query, i)
        assert m, f"bad matcher at {i}: {query!r}"
        value, i = _read_go_string(query, m.end())
        matchers.append((m.group(1), m.group(2), value))
        if query.startswith(", ", i):
            i += 2
            continue
        assert query[i] == "}", f"selector not closed at {i}: {query!r}"
        i += 1
        break
    stages, strings = [], []
    while i < len(query):
        m = _STAGE.match(query, i)
        assert m, f"unknown stage at {i}: {query[i:]!r}"
        i = m.end()
        if m.group("line"):
            stages.append(m.group("line"))
            value, i = _read_go_string(query, i)
            strings.append(value)
            while query.startswith(" or ", i):
                value, i = _read_go_string(query, i + 4)
                strings.append(value)
        elif m.group("parser"):
            stages.append(f"| {m.group('parser')}")
        else:
            stages.append(f"| label{m.group('op')}")
            if query[i] == '"':
                value, i = _read_go_string(query, i)
                strings.append(value)
            else:
                num = re.compile(r"[0-9]+(?:\.[0-9]+)?").match(query, i)
                assert num, f"bad number at {i}: {query!r}"
                i = num.end()
    return Shape(matchers, stages, strings)


# --- Canonical rendering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("   \n ", ""),
        (SEVERE_LINE_FILTER, SEVERE_LINE_FILTER),
        ('|~ "(?i)(error|warn)"', '|~ "(?i)(error|warn)"'),
        ('|="x"', '|= "x"'),
        ('|= `a"b`', '|= "a\\"b"'),
        ("|~ `\\d+ms`", '|~ "\\\\d+ms"'),
        ('|= "x"   or   "y"', '|= "x" or "y"'),
        ('|~ "a" or `b`', '|~ "a" or "b"'),
        ('!= "a" != "b"', '!= "a" != "b"'),
        ('!~ "health"', '!~ "health"'),
        ('| json|level = "error"', '| json | level="error"'),
        ("| logfmt | status>=500", "| logfmt | status>=500"),
        ("| logfmt | latency_ms > 100.5", "| logfmt | latency_ms>100.5"),
        ("| json | code == 0", "| json | code==0"),
        ('| json | code != "x" | code != 3', '| json | code!="x" | code!=3'),
        ('| __error__ = ""', '| __error__=""'),
        ('| pod =~ "api-.*"', '| pod=~"api-.*"'),
        ('|= "tab\\there"', '|= "tab\\there"'),
        ('|= "\\u00e9\\x41"', '|= "éA"'),
        ('|= "\\101"', '|= "A"'),
        ('|= "\\u202e"', '|= "\\u202e"'),
        ("|= `line\r\nbreak`", '|= "line\\nbreak"'),
        ('|= "x"\n|= "y"\t| json', '|= "x" |= "y" | json'),
    ],
)
def test_valid_filters_render_canonically(text: str, canonical: str) -> None:
    parsed = parse_log_filter(text)
    assert parsed.render() == canonical
    assert parse_log_filter(canonical) == parsed  # canonical form is a fixed point


def test_parsed_structure() -> None:
    parsed = parse_log_filter('|= "a" or "b" | json | level=~"err.*" | status >= 500 !~ "x"')
    assert parsed.stages == (
        LineFilter("|=", ("a", "b")),
        ParserStage("json"),
        LabelFilter("level", "=~", "err.*", numeric=False),
        LabelFilter("status", ">=", "500", numeric=True),
        LineFilter("!~", ("x",)),
    )


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("", '""'),
        ("shop", '"shop"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb\r\t", '"a\\nb\\r\\t"'),
        ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
        ("é🙂", '"é🙂"'),
        ("\u2028\u202e", '"\\u2028\\u202e"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("`", '"`"'),
    ],
)
def test_escape_logql_string(value: str, literal: str) -> None:
    assert escape_logql_string(value) == literal
    assert _read_go_string(literal, 0) == (value, len(literal))


def test_escape_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError):
        escape_logql_string("\ud800")


def test_build_query() -> None:
    assert build_query(Filters(namespace="shop"), LogFilter()) == '{namespace="shop"}'
    filters = Filters(namespace="shop", pod="api-.*", container="api", node="node-1.eu")
    query = build_query(filters, parse_log_filter('|~ "x" | json'))
    assert (
        query
        == '{namespace="shop", container="api", node="node-1.eu", pod=~"api-.*"} |~ "x" | json'
    )


def test_validate_request_filters() -> None:
    request = AnalysisRequest.model_validate(
        {
            "time_range": {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T11:00:00Z"},
            "filters": {"namespace": "shop", "pod": "api-.*"},
        }
    )
    filters, log_filter = validate_request_filters(request)
    assert filters.namespace == "shop"
    assert log_filter.is_empty  # no log_filter: every line, error-or-warning ones first
    bad = request.model_copy(update={"log_filter": '{namespace=~".*"}'})
    with pytest.raises(InvalidQueryError) as info:
        validate_request_filters(bad)
    assert info.value.field == "log_filter"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{namespace=~".*"}', 1),
        ('|= "x" or 1=1', 11),
        ('|= "unterminated', 4),
        ('|~ "(?i)(error"', 4),
        ('|= "x" | line_format "{{.a}}"', 10),
        ('|= "x" junk', 8),
    ],
)
def test_errors_name_the_position(text: str, where: int) -> None:
    with pytest.raises(InvalidQueryError) as info:
        parse_log_filter(text)
    assert info.value.field == "log_filter"
    assert f"position {where})" in info.value.message


# --- Injection corpus ------------------------------------------------------------------------

assert len(HOSTILE) >= 40

_OP = {"namespace": "=", "container": "=", "node": "=", "pod": "=~"}
_ORDER = ["namespace", "container", "node", "pod"]
_BASE = {"namespace": "shop", "container": "api", "node": "node-1", "pod": "api-.*"}


@pytest.mark.parametrize("field", _ORDER)
@pytest.mark.parametrize("value", HOSTILE, ids=[f"h{i}" for i in range(len(HOSTILE))])
def test_filter_injection_corpus(field: str, value: str) -> None:
    # model_construct skips pydantic's length checks: shared.logql must hold on its own.
    filters = Filters.model_construct(None, **{**_BASE, field: value})
    pipeline = parse_log_filter(SEVERE_LINE_FILTER)
    try:
        query = build_query(filters, pipeline)
    except InvalidQueryError as exc:
        assert exc.field == f"filters.{field}"
        assert not ORACLE[field](value), f"valid {field} {value!r} rejected: {exc.message}"
        return
    assert ORACLE[field](value), f"{field}={value!r} should have been rejected"
    shape = read_shape(query)
    expected = [(name, _OP[name], value if name == field else _BASE[name]) for name in _ORDER]
    assert shape.matchers == expected
    assert shape.stages == ["|~"]
    assert shape.strings == ["(?i)(error|warn|failed|exception|panic|fatal)"]


@pytest.mark.parametrize(
    ("text", "stages"), LOG_FILTER_CORPUS, ids=[f"lf{i}" for i in range(len(LOG_FILTER_CORPUS))]
)
def test_log_filter_injection_corpus(text: str, stages: list[str] | None) -> None:
    assert len(LOG_FILTER_CORPUS) >= 40
    if stages is None:
        with pytest.raises(InvalidQueryError) as info:
            parse_log_filter(text)
        assert info.value.field == "log_filter"
        assert "position" in info.value.message
        return
    parsed = parse_log_filter(text)
    query = build_query(Filters(namespace="shop"), parsed)
    shape = read_shape(query)
    assert shape.matchers == [("namespace", "=", "shop")]
    assert shape.stages == stages
    expected_strings = [
        s
        for stage in parsed.stages
        for s in (
            stage.patterns
            if isinstance(stage, LineFilter)
            else (stage.value,)
            if isinstance(stage, LabelFilter) and not stage.numeric
            else ()
        )
    ]
    assert shape.strings == expected_strings
    assert parse_log_filter(parsed.render()) == parsed


# --- Filter validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "Shop"),
        ("namespace", "a" * 64),
        ("container", "api_1"),
        ("node", "node..1"),
        ("node", "a" * 254),
        ("pod", ""),
        ("pod", "api-("),
        ("pod", "(?<=x)y"),
    ],
)
def test_invalid_filters_name_their_field(field: str, value: str) -> None:
    with pytest.raises(InvalidQueryError) as info:
        validate_filters(Filters.model_construct(None, **{**_BASE, field: value}))
    assert info.value.field == f"filters.{field}"


def test_valid_filters_pass_unchanged() -> None:
    filters = Filters(namespace="kube-system", container="c0", node="ip-10-0-0-1.ec2.internal")
    assert validate_filters(filters) is filters


# --- Local evaluation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "labels", "expected"),
    [
        ("", "anything", {}, True),
        ('|= "err"', "an error", {}, True),
        ('|= "err"', "all good", {}, False),
        ('!= "debug"', "debug: x", {}, False),
        ('|= "a" or "b"', "only b here", {}, True),
        ('|~ "(?i)ERROR"', "an error", {}, True),
        ('|~ "^err"', "an error", {}, False),
        ('!~ "health(z)?"', "GET /healthz", {}, False),
        (SEVERE_LINE_FILTER, "panic: runtime error", {}, True),
        (SEVERE_LINE_FILTER, "GET / 200", {}, False),
        ('| json | level="error"', '{"level":"error","msg":"x"}', {}, True),
        ('| json | level="error"', '{"level":"info"}', {}, False),
        ("| json | req_status >= 500", '{"req":{"status":503}}', {}, True),
        ("| json | req_status >= 500", '{"req":{"status":200}}', {}, False),
        ('| json | __error__=""', "not json", {}, False),
        ("| json | status > 5", "not json", {}, True),  # errors pass through, as in Loki
        ('| logfmt | msg="disk full"', 'level=error msg="disk full" retry', {}, True),
        ("| logfmt | took_ms < 10", "took_ms=12.5", {}, False),
        ("| logfmt | took_ms > 10", "took_ms=abc", {}, True),
        ('| pod=~"api-.*"', "x", {"pod": "api-1"}, True),
        ('| pod=~"api"', "x", {"pod": "api-1"}, False),  # label regexes are anchored
        ('| missing=""', "x", {}, True),
        ('| json | pod="x"', '{"pod":"x"}', {"pod": "api-1"}, False),
        ('| json | pod_extracted="x"', '{"pod":"x"}', {"pod": "api-1"}, True),
    ],
)
def test_local_evaluation(text: str, line: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_log_filter(text).matches_line(line, labels) is expected


def test_evaluate_returns_extracted_labels() -> None:
    result = parse_log_filter("| logfmt").evaluate('level=warn msg="a \\"b\\""', {"pod": "p"})
    assert result == {"pod": "p", "level": "warn", "msg": 'a "b"'}
