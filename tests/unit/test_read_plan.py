"""The read plan by severity tier, and the tiers' line filters."""

from __future__ import annotations

import pytest

from shared.logql import LogFilter, parse_log_filter
from shared.schemas import Filters
from workers.sources import ReadPlan, Window
from workers.sources.plan import Buckets, ReadTask, Tally, bucket_edges, is_complete, plan_tasks
from workers.sources.severity import REST, TIERS, tier_of

MINUTE = 60 * 10**9
T0 = 1_795_500_000_000_000_000
EDGES = bucket_edges(T0, T0 + 32 * MINUTE)
WINDOW = Window(Filters(namespace="shop"), LogFilter(), T0, T0 + 32 * MINUTE)


def spread(n: int) -> list[int]:
    """`n` lines spread over the 32 buckets."""
    return [n // 32 + (i < n % 32) for i in range(32)]


def one_at(bucket: int) -> list[int]:
    return [int(i == bucket) for i in range(32)]


def buckets(fatal: list[int], error: list[int], warn: list[int], rest: int) -> Buckets:
    total = [f + e + w + rest // 32 for f, e, w in zip(fatal, error, warn, strict=True)]
    return Buckets(EDGES, total, [fatal, error, warn])


def read_by_group(tasks: list[ReadTask]) -> dict[str, int]:
    out: dict[str, int] = {}
    for task in tasks:
        out[task.group] = out.get(task.group, 0) + (
            task.count if task.limit is None else task.limit
        )
    return out


def test_a_single_fatal_is_read_whole_before_errors_that_overflow_the_budget() -> None:
    counts = buckets(one_at(17), spread(60_000), spread(40_000), 900_000)
    tasks = plan_tasks(ReadPlan(WINDOW, 20_000, severity_first=True), counts)
    fatal = [t for t in tasks if t.group == "fatal"]
    assert fatal and not any(t.sampled for t in fatal)
    assert read_by_group(tasks) == {"fatal": 1, "error": 19_999}
    assert all(t.sampled for t in tasks if t.group == "error")
    assert not is_complete(tasks)


def test_tiers_that_fit_are_read_whole_and_the_rest_shares_what_is_left() -> None:
    counts = buckets(spread(10), spread(2_000), spread(5_000), 100_000)
    tasks = plan_tasks(ReadPlan(WINDOW, 20_000, severity_first=True), counts)
    assert read_by_group(tasks) == {"fatal": 10, "error": 2_000, "warn": 5_000, "rest": 12_990}
    assert not any(t.sampled for t in tasks if t.group != "rest")
    rest_filter = next(t for t in tasks if t.group == "rest").window.log_filter
    assert rest_filter == REST


def test_a_window_that_fits_is_read_whole_in_one_group() -> None:
    counts = buckets(spread(1), spread(100), spread(100), 3_200)
    tasks = plan_tasks(ReadPlan(WINDOW, 20_000, severity_first=True), counts)
    assert {t.group for t in tasks} == {"all"} and is_complete(tasks)


def test_coverage_is_exact_for_whole_tiers_and_estimated_for_sampled_ones() -> None:
    counts = buckets(one_at(3), spread(30_000), spread(40_000), 900_000)
    tasks = plan_tasks(ReadPlan(WINDOW, 20_000, severity_first=True), counts)
    tally = Tally(counts, tasks)
    for task in tasks:
        for k in range(task.count if task.limit is None else task.limit):
            tally.took(task.group, task.window.start_ns + k % 1000)
    coverage = tally.coverage(severity_first=True)
    assert coverage.mode == "sampled"
    assert [(t.tier, t.lines, t.read, t.complete) for t in coverage.tiers] == [
        ("fatal-or-worse", 1, 1, True),
        ("error", 30_000, 19_999, False),
        ("warning", 40_000, 0, False),
    ]
    assert (coverage.severe_in_window, coverage.severe_read) == (70_001, 20_000)
    text = coverage.describe()
    assert "every fatal-or-worse line (1), 19,999 of ~30,000 error lines" in text
    assert "0 of ~40,000 warning lines" in text


@pytest.mark.parametrize(
    ("line", "tier"),
    [
        ("FATAL config: required key PAYMENTS_URL is missing", "fatal"),
        ("panic: runtime error: invalid memory address", "fatal"),
        ('{"ts":"…","level":"critical","msg":"disk gone"}', "fatal"),
        ("2026/12/04 [emerg] 1#1: bind() failed", "fatal"),
        ("ts=1 level=alert msg=paging", "fatal"),
        ('{"level":60,"msg":"exiting"}', "fatal"),
        ("F1204 10:00:00.000000  1 main.go:42] cannot start", "fatal"),
        ('{"level":"error","msg":"upstream timeout"}', "error"),
        ("ts=1 lvl=eror msg=x", "error"),
        ("java.lang.NullPointerException: null", "error"),
        ("ValueError: bad literal", "error"),
        ("Traceback (most recent call last):", "error"),
        ("Failed to connect to redis:6379", "error"),
        ('{"level":50,"msg":"x"}', "error"),
        ("E1204 10:00:00.000000  1 reflector.go:1] watch failed", "error"),
        ('ts=1 level=warn msg="retrying job"', "warn"),
        ("WARNING: deprecated flag", "warn"),
        ("DeprecationWarning: use y", "warn"),
        ('{"level":40,"msg":"slow"}', "warn"),
        ("W1204 10:00:00.000000  1 x.go:1] slow", "warn"),
        ("INFO GET /items/1 200", None),
        ("requests=10 errors=0 warnings=0", None),
        ("sent alert email to on-call", None),
        ("a terrorist movie review", None),
        ('10.0.0.1 - - "GET / HTTP/1.1" 502 12', None),
    ],
)
def test_a_line_falls_in_the_tier_of_its_most_severe_level(line: str, tier: str | None) -> None:
    got = tier_of(line)
    assert (None if got is None else TIERS[got].name) == tier
    # The LogQL filters, as Loki (and the stub) evaluate them, split the lines the same way.
    by_filter = [t.name for t in TIERS if t.log_filter.keeps_line(line)]
    assert by_filter == ([] if tier is None else [tier])
    assert REST.keeps_line(line) == (tier is None)


def test_the_tier_filters_render_as_logql_that_parses_back() -> None:
    for log_filter in (*(t.log_filter for t in TIERS), REST):
        assert parse_log_filter(log_filter.render()) == log_filter
