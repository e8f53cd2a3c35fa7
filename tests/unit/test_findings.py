"""Findings from the evidence alone: causes by onset, steady noise, new templates, honest
answers for a quiet or warning-only window; and the checks on the model's text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.schemas import Entry, Level
from workers.llm.answer import DegenerationGuard, check_citations, repetition_start
from workers.stages.normalize import WindowInfo, normalize

T0 = int(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp()) * 10**9
S = 10**9
WINDOW = WindowInfo(T0, T0 + 3600 * S, '{namespace="shop"}')


def entry(at_s: float, level: Level, message: str, pod: str = "api-0") -> Entry:
    return Entry(T0 + int(at_s * S), "shop", pod, "api", "node-1", level, message)


def steady_noise(start_s: float = 0) -> list[Entry]:
    """A harmless error every 10 s, all window long."""
    return [
        entry(start_s + t, Level.ERROR, "failed to refresh feature flags: 404 Not Found")
        for t in range(0, 3600, 10)
    ]


def incident(cause_at: float = 1800) -> list[Entry]:
    cause = [entry(cause_at, Level.ERROR, "pool exhausted: connection is not available")]
    follow = [
        entry(cause_at + 2 + t, Level.ERROR, f"upstream timed out after {t % 7 + 30}s", "gw-0")
        for t in range(300)
    ]
    return cause + follow + steady_noise()


def test_the_cause_is_the_first_error_that_began_and_others_followed() -> None:
    previous = steady_noise(start_s=-3600)
    result = normalize(incident(), previous=previous, window=WINDOW)
    findings = result.findings
    assert findings is not None and not findings.empty
    cause = findings.probable_causes[0]
    assert cause.template_id == "T1" and "pool exhausted" in cause.template
    assert cause.confidence != "low"  # its margin over the next candidate is wide
    assert any("absent from the previous window" in r for r in cause.reasons)
    assert set(cause.components) == {
        "rate",
        "association",
        "lead",
        "severity",
        "specificity",
        "change",
    }
    assert cause.score is not None and any(r.startswith("score ") for r in cause.reasons)
    assert cause.followed_by and cause.followed_by[0].after_s == pytest.approx(2, abs=0.1)
    # The loud, steady, harmless error is background: it is neither new nor a cause.
    flags = next(e for e in result.evidence if "feature flags" in e.template)
    assert flags.steady and flags.new is False
    assert all("feature flags" not in c.template for c in findings.probable_causes)
    assert "T1" in findings.new_templates
    assert findings.summary.startswith(f"Probable root cause ({cause.confidence} confidence): T1")
    assert findings.onset is not None and findings.onset.minute == 30


def test_without_a_previous_window_a_whole_window_error_is_still_steady() -> None:
    result = normalize(incident(), window=WINDOW)
    assert result.findings is not None
    assert "pool exhausted" in result.findings.probable_causes[0].template
    flags = next(e for e in result.evidence if "feature flags" in e.template)
    assert flags.steady and flags.new is None


def test_a_rare_cause_wins_over_a_loud_error_that_began_the_same_moment() -> None:
    refused = "billing call failed: connection refused"
    entries = [entry(600 + t * 0.01, Level.ERROR, refused) for t in range(400)]
    entries += [entry(601, Level.FATAL, "missing required config key=DATABASE_URL")]
    entries += [entry(640 + t, Level.WARN, f"invoice requeued retry_in={t}s") for t in range(60)]
    findings = normalize(entries, previous=[], window=WINDOW).findings
    assert findings is not None
    assert "DATABASE_URL" in findings.probable_causes[0].template


def test_a_warning_the_errors_followed_is_named_before_them() -> None:
    alarm = "memory resource limit alarm set on node rabbit@rabbitmq-0"
    entries = [entry(900, Level.WARN, alarm, "rabbitmq-0")]
    entries += [
        entry(920 + t, Level.ERROR, f"publish timed out after 5s; order {t} not sent", "orders-0")
        for t in range(60)
    ]
    previous = steady_noise(start_s=-3600)
    findings = normalize(entries + steady_noise(), previous=previous, window=WINDOW).findings
    assert findings is not None
    first, second = findings.probable_causes[:2]
    assert "alarm set" in first.template and first.level is Level.WARN
    assert "20 s before the errors rose" in first.reasons[0]
    assert "publish timed out" in second.template


def test_a_warning_louder_than_the_errors_after_it_is_a_symptom_not_the_cause() -> None:
    entries = [entry(900 + t, Level.WARN, f"token rejected kid=k{t % 3}") for t in range(200)]
    entries += [entry(920, Level.ERROR, "jwks refresh did not contain kid k1")]
    entries += [
        entry(921 + t, Level.ERROR, f"login failed for user {t}", "web-0") for t in range(5)
    ]
    findings = normalize(entries, previous=[], window=WINDOW).findings
    assert findings is not None
    assert "jwks refresh" in findings.probable_causes[0].template


def test_a_warning_logged_with_the_error_is_the_same_event() -> None:
    entries = [entry(900.0, Level.WARN, "SQL Error: 0, SQLState: null")]
    entries += [entry(900.01, Level.ERROR, "Connection is not available, request timed out")]
    entries += [
        entry(905 + t, Level.ERROR, f"request {t} failed with 504", "gw-0") for t in range(9)
    ]
    findings = normalize(entries, previous=[], window=WINDOW).findings
    assert findings is not None
    assert "Connection is not available" in findings.probable_causes[0].template


def test_a_schema_change_logged_as_info_is_seen_as_the_change_before_the_errors() -> None:
    ddl = "migrator@orders LOG:  statement: DROP INDEX CONCURRENTLY IF EXISTS idx_orders_customer"
    entries = [entry(600, Level.INFO, ddl, "postgres-0")]
    entries += [entry(605 + t, Level.ERROR, f"request canceled duration_ms={t}") for t in range(80)]
    entries += [entry(t, Level.INFO, "GET /healthz 200") for t in range(0, 3600, 5)]
    findings = normalize(entries, previous=[], window=WINDOW).findings
    assert findings is not None
    assert "DROP INDEX" in findings.probable_causes[0].template


def test_nothing_matched_means_an_empty_finding_and_no_cause() -> None:
    findings = normalize([], previous=[], window=WINDOW).findings
    assert findings is not None and findings.empty
    assert findings.searched.lines_scanned == 0 and not findings.probable_causes
    assert findings.summary.startswith("No log line matched")


def test_only_warnings_say_so_and_name_no_cause() -> None:
    entries = [entry(t, Level.WARN, f"slow query took {t}ms") for t in range(0, 3600, 60)]
    entries += [entry(t, Level.INFO, "GET /healthz 200") for t in range(0, 3600, 5)]
    findings = normalize(entries, previous=[], window=WINDOW).findings
    assert findings is not None and findings.only_low_severity
    assert not findings.probable_causes
    assert "no root cause" in findings.summary


def test_affected_pods_are_counted_from_warnings_and_errors() -> None:
    findings = normalize(incident(), previous=[], window=WINDOW).findings
    assert findings is not None
    assert list(findings.affected.pods) == ["api-0", "gw-0"]
    assert findings.affected.pods["gw-0"] == 300


# --- the model's text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "looping",
    [
        "## Summary\nThe first 2026-12-02 2026-12-02 2026-12-02",
        "Disk full.\n" + "4628 log events matched, mined into 4 templates.\n" * 3,
        "The database is down " * 4,
    ],
)
def test_a_looping_answer_is_seen_and_cut_to_one_copy(looping: str) -> None:
    start = repetition_start(looping)
    assert start is not None
    kept = looping[:start]
    assert repetition_start(kept) is None


@pytest.mark.parametrize(
    "fine",
    [
        "## Summary\nDisk full on postgres-0.\n## Evidence\n- T1 (1x)\n- T2 (3x)\n- T3 (9x)",
        "| id | count |\n| --- | --- |\n| T1 | 3 |",
        "......",
    ],
)
def test_an_ordinary_answer_is_left_alone(fine: str) -> None:
    assert repetition_start(fine) is None


def test_the_guard_stops_the_stream_and_keeps_one_copy() -> None:
    guard = DegenerationGuard()
    fed = []
    for fragment in ["The", " first", *[" 2026-12-02"] * 5]:
        fed.append(fragment)
        if not guard.feed(fragment):
            break
    assert guard.degenerate and len(fed) == 5
    assert guard.answer() == "The first 2026-12-02"


def test_citations_are_checked_against_the_ids_given() -> None:
    citations = check_citations("T1 then T3, see T12 and T1 again (T2x is not one)", ["T1", "T3"])
    assert citations.valid == ["T1", "T3"] and citations.invalid == ["T12"]


def test_the_guard_streams_a_long_answer_in_pieces_without_false_alarms() -> None:
    # 1,000 distinct 8,000-character words and no newline: nothing repeats, and the guard
    # must not rescan what it has already seen (the SSE load test streams exactly this).
    guard = DegenerationGuard()
    pieces = [f"{'x' * 8000}{i} " for i in range(1000)]
    assert all(guard.feed(piece) for piece in pieces)
    assert not guard.degenerate and guard.answer() == "".join(pieces)


def test_the_guard_finds_a_loop_that_arrives_a_token_at_a_time() -> None:
    guard = DegenerationGuard()
    text = "The disk is full on db-0.\n" + "Check the disk usage of db-0 now.\n" * 5
    fed = [guard.feed(char) for char in text]
    assert guard.degenerate and False in fed  # it asked to stop the stream
    assert guard.answer() == "The disk is full on db-0.\nCheck the disk usage of db-0 now."
