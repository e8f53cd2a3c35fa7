"""LokiSource.read against the Loki stub over HTTP: counts, plans, parallel ranges, coverage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from shared.errors import LokiError
from shared.logql import LogFilter, parse_log_filter
from shared.retry import RetryPolicy
from shared.schemas import Filters, RawLine
from shared.settings import DEFAULT_SCAN_LIMIT
from tests.stubs.loki_stub import LokiStub, start_loki_stub
from workers.sources import ReadPlan, SourceRead, Window, read_all
from workers.sources import plan as plan_module
from workers.sources.loki import LokiSource, count_buckets
from workers.sources.plan import bucket_edges
from workers.sources.severity import TIERS
from workers.stages.flatten import flatten, may_be_multiline

T0 = 1_795_500_000_000_000_000  # a whole minute
MINUTE = 60 * 10**9
SHOP = Filters(namespace="shop")
EVERYTHING = LogFilter()
NO_RETRY = RetryPolicy(attempts=0, base_s=0, cap_s=0)
ERROR_LINE = "ERROR upstream timeout calling inventory"
WARN_LINE = "WARN slow request"


@pytest.fixture
def loki() -> Iterator[LokiStub]:
    with start_loki_stub() as stub:
        yield stub


def source(client: httpx.Client, loki: LokiStub, **kw: object) -> LokiSource:
    kw.setdefault("sleep", lambda s: None)
    return LokiSource(client, loki.url, **kw)  # type: ignore[arg-type]


def push_busy(
    loki: LokiStub, lines: int, *, minutes: int = 10, cause_at: float | None = None
) -> None:
    """`lines` INFO lines spread over the window (two pods), and one FATAL at `cause_at`."""
    span = minutes * MINUTE
    for pod in ("api-1", "api-2"):
        entries = [
            (T0 + span * i // lines + (pod == "api-2"), f"INFO GET /items/{i} 200 {pod}")
            for i in range(0, lines, 2)
        ]
        loki.push({"namespace": "shop", "pod": pod, "container": "api"}, entries)
    if cause_at is not None:
        fatal = [(T0 + int(span * cause_at) + 7, "FATAL missing config key PAYMENTS_URL")]
        loki.push({"namespace": "shop", "pod": "api-1", "container": "api"}, fatal)


def read(loki: LokiStub, plan: ReadPlan, **kw: object) -> tuple[list[RawLine], SourceRead]:
    with httpx.Client() as client:
        return read_all(source(client, loki, **kw), plan)


def window(minutes: int = 10, log_filter: LogFilter = EVERYTHING) -> Window:
    return Window(SHOP, log_filter, T0, T0 + minutes * MINUTE)


def test_count_buckets_match_the_lines_of_each_bucket(loki: LokiStub) -> None:
    push_busy(loki, 999, minutes=7)
    edges = bucket_edges(T0 + 1_000_000, T0 + 7 * MINUTE - 3_000_000)  # not on a grid
    with httpx.Client() as client:
        counts = count_buckets(client, loki.url, '{namespace="shop"}', edges)
    times = sorted(ts for ts, _, _ in loki.stored())
    expected = [sum(1 for t in times if a < t <= b) for a, b in zip(edges, edges[1:], strict=False)]
    assert counts == expected  # Loki's ranges are (t - step, t]: an edge line counts before


@pytest.mark.parametrize("parallelism", [1, 4])
def test_concurrent_ranges_lose_nothing_and_repeat_nothing(
    loki: LokiStub, monkeypatch: pytest.MonkeyPatch, parallelism: int
) -> None:
    monkeypatch.setattr(plan_module, "RANGE_LINES", 40)
    push_busy(loki, 2000)
    # Lines on one nanosecond, exactly on range edges, across streams (no more than a page:
    # more than `page_size` lines on one nanosecond is fetch_range's documented limit).
    edges = bucket_edges(T0, T0 + 10 * MINUTE)
    for edge in edges[1:-1:3]:
        for pod in ("api-1", "api-2", "api-3"):
            labels = {"namespace": "shop", "pod": pod, "container": "api"}
            loki.push(labels, [(edge, f"WARN edge {n} {pod}") for n in range(2)])
    lines, done = read(loki, ReadPlan(window(), 100_000), parallelism=parallelism, page_size=7)
    got = Counter((r.ts_ns, r.labels["pod"], r.line) for r in lines)
    pushed = Counter(expected_lines(loki))
    assert got == pushed and max(got.values()) == 1
    assert done.coverage is not None and done.coverage.mode == "complete"
    assert done.coverage.lines_read == len(lines) == sum(pushed.values())
    ranges = {(r.params["start"], r.params["end"]) for r in loki.query_requests()}
    assert len(ranges) > 20  # read as many ranges, not one forward scan


def expected_lines(loki: LokiStub) -> list[tuple[int, str, str]]:
    return [(ts, labels["pod"], line) for ts, labels, line in loki.stored()]


def test_a_range_is_retried_on_its_own(loki: LokiStub) -> None:
    push_busy(loki, 300)
    loki.fail_next(503, 2, skip=1)  # after the count: the range fails twice, then answers
    lines, done = read(loki, ReadPlan(window(), 100_000), parallelism=1)
    assert done.coverage is not None and done.coverage.mode == "complete"
    assert len(lines) == 300
    assert [r.status for r in loki.query_requests()].count(503) == 2


def test_a_range_that_keeps_failing_is_reported_missing(
    loki: LokiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "RANGE_LINES", 50)
    push_busy(loki, 1000)
    loki.fail_next(503, 1, skip=3)
    lines, done = read(loki, ReadPlan(window(), 100_000), parallelism=1, retry=NO_RETRY)
    coverage = done.coverage
    assert coverage is not None and coverage.mode == "partial"
    assert len(coverage.failed) == 1 and "503" in coverage.failed[0]
    assert 900 <= len(lines) < 1000
    assert "Not read:" in coverage.describe()


def test_losing_most_of_the_window_fails_the_read(loki: LokiStub) -> None:
    push_busy(loki, 1000)
    loki.fail_next(503, 1000, skip=1)  # after the count (the window fits: no tier counts)
    with pytest.raises(LokiError, match="more than half of the window"):
        read(loki, ReadPlan(window(), 100_000, severity_first=True), retry=NO_RETRY)
    loki.clear_faults()


def test_a_loki_that_refuses_to_count_is_read_forward(loki: LokiStub) -> None:
    push_busy(loki, 500)
    loki.fail_next(400, 1, body="parse error : metric queries disabled")
    lines, done = read(loki, ReadPlan(window(), 200))
    assert len(lines) == 200 and done.coverage is not None
    assert (done.coverage.mode, done.coverage.lines_in_window) == ("cut", None)
    assert lines[0].line == "INFO GET /items/0 200 api-1"  # the head of the window
    assert "could not count" in done.notes[0]


@pytest.mark.parametrize("cause_at", [0.05, 0.5, 0.95])
def test_a_rare_fatal_anywhere_in_a_busy_window_is_read(loki: LokiStub, cause_at: float) -> None:
    push_busy(loki, 20_000, cause_at=cause_at)
    plan = ReadPlan(window(), 1000, severity_first=True)
    lines, done = read(loki, plan)
    fatal = [r for r in lines if r.line.startswith("FATAL")]
    assert len(fatal) == 1 and fatal[0].weight == 1.0
    coverage = done.coverage
    assert coverage is not None and coverage.mode == "sampled"
    assert coverage.lines_read == 1000
    assert coverage.lines_in_window == pytest.approx(20_001, abs=1)  # a line on the start edge
    assert (coverage.severe_in_window, coverage.severe_read) == (1, 1)
    assert all(r.read > 0 for r in coverage.ranges)  # the sample spans the whole window
    assert sum(r.weight for r in lines) == pytest.approx(20_001, rel=0.01)


def push_noisy(loki: LokiStub, *, cause_at: float) -> None:
    """12,500 ERROR and 12,500 WARN lines, 5,000 INFO lines over the window (more warnings
    and errors than the default budget), and one FATAL at `cause_at`."""
    span = 10 * MINUTE
    kinds = [ERROR_LINE] * 5 + [WARN_LINE] * 5 + ["INFO GET / 200"] * 2
    # Off the bucket edges: a line on the window's start is read but not counted.
    entries = [(T0 + 1 + span * i // 30_000, kinds[i % 12]) for i in range(30_000)]
    loki.push({"namespace": "shop", "pod": "api-1", "container": "api"}, entries)
    fatal = [(T0 + int(span * cause_at) + 7, "FATAL missing config key PAYMENTS_URL")]
    loki.push({"namespace": "shop", "pod": "payments-0", "container": "payments"}, fatal)


@pytest.mark.parametrize("cause_at", [0.03, 0.53, 0.998])
def test_a_single_fatal_among_many_errors_is_read_first(loki: LokiStub, cause_at: float) -> None:
    push_noisy(loki, cause_at=cause_at)
    lines, done = read(loki, ReadPlan(window(), DEFAULT_SCAN_LIMIT, severity_first=True))
    fatal = [r for r in lines if r.line.startswith("FATAL")]
    assert len(fatal) == 1 and fatal[0].weight == 1.0
    errors = [r for r in lines if r.line == ERROR_LINE]
    assert len(errors) == 12_500 and {r.weight for r in errors} == {1.0}  # the next tier, whole
    coverage = done.coverage
    assert coverage is not None and coverage.mode == "sampled"
    assert coverage.lines_read == DEFAULT_SCAN_LIMIT


def test_tiers_are_counted_only_when_the_window_does_not_fit(loki: LokiStub) -> None:
    push_busy(loki, 300, cause_at=0.5)

    def counts() -> int:
        return sum("count_over_time" in r.params["query"] for r in loki.query_requests())

    read(loki, ReadPlan(window(), 1000, severity_first=True))
    assert counts() == 1
    _, done = read(loki, ReadPlan(window(), 100, severity_first=True))
    assert counts() == 1 + 1 + len(TIERS)
    assert done.coverage is not None and [t.read for t in done.coverage.tiers] == [1, 0, 0]


def test_a_filter_reads_the_whole_window_not_its_head(loki: LokiStub) -> None:
    push_busy(loki, 4000)
    errors = [(T0 + MINUTE * m, f"ERROR timeout calling payments {m}") for m in range(10)]
    loki.push({"namespace": "shop", "pod": "api-1", "container": "api"}, errors)
    plan = ReadPlan(window(log_filter=parse_log_filter('|~ "GET|ERROR"')), 500)
    lines, done = read(loki, plan)
    assert done.coverage is not None and done.coverage.mode == "sampled"
    assert max(r.ts_ns for r in lines) > T0 + 9 * MINUTE


def test_a_filtered_traceback_line_brings_its_event(loki: LokiStub) -> None:
    push_busy(loki, 200)
    traceback = [
        "ERROR could not write segment",
        "Traceback (most recent call last):",
        '  File "/app/store.py", line 88, in write',
        "psycopg2.errors.DiskFull: could not extend file",
    ]
    at = T0 + 5 * MINUTE + 123
    labels = {"namespace": "shop", "pod": "db-0", "container": "app"}
    loki.push(labels, [(at + i * 1000, line) for i, line in enumerate(traceback)])
    plan = ReadPlan(window(log_filter=parse_log_filter('|= "DiskFull"')), 100)
    assert [r.line for r in read(loki, plan)[0]] == [traceback[-1]]
    with_context = ReadPlan(plan.window, 100, context=may_be_multiline)
    lines, done = read(loki, with_context)
    (event,) = [e for e in flatten(lines) if e.pod == "db-0"]
    assert event.message.splitlines() == traceback
    assert done.coverage is not None and done.coverage.context_lines >= 3
