"""The pure parts of backfills (shared.backfill, shared.schemas.backfills)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.backfill import (
    absorb,
    item_count,
    item_request,
    merge_findings,
    request_hash,
    rollup,
    windows,
)
from shared.schemas import JobStatus, Level
from shared.schemas.backfills import (
    BackfillItem,
    BackfillRequest,
    Finding,
    Sighting,
    parse_duration,
)

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def request(**overrides: object) -> BackfillRequest:
    body: dict[str, object] = {
        "namespaces": ["shop", "pay"],
        "time_range": {
            "start": T0.isoformat(),
            "end": (T0 + timedelta(hours=2, minutes=30)).isoformat(),
        },
        "window": "1h",
    }
    body.update(overrides)
    return BackfillRequest.model_validate(body)


def test_windows_cover_the_range_and_the_last_one_is_shorter() -> None:
    body = request()
    spans = windows(body.time_range, body)
    assert [(s.start.hour, s.start.minute, s.end.hour, s.end.minute) for s in spans] == [
        (0, 0, 1, 0),
        (1, 0, 2, 0),
        (2, 0, 2, 30),
    ]
    assert item_count(body, 2) == 6


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("1h", 3600), ("2d", 172800)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("window", ["4m", "299s", "1 h", "h", "0m", "-5m"])
def test_a_window_below_five_minutes_or_unreadable_is_refused(window: str) -> None:
    with pytest.raises(ValidationError, match="window"):
        request(window=window)


def test_names_and_a_regex_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="not both"):
        request(namespace_regex="s.*")


def test_equal_requests_hash_equal_per_owner_and_tenant() -> None:
    body = request()
    one = item_request(body, "shop", windows(body.time_range, body)[0])
    same = item_request(request(), "shop", windows(body.time_range, body)[0])
    assert request_hash("a", None, one) == request_hash("a", None, same)
    assert request_hash("a", None, one) != request_hash("b", None, one)
    assert request_hash("a", None, one) != request_hash("a", "tenant", one)
    other = item_request(request(question="why?"), "shop", windows(body.time_range, body)[0])
    assert request_hash("a", None, one) != request_hash("a", None, other)


def item(namespace: str, hour: int, errors: int, new: int, cause: str | None) -> BackfillItem:
    return BackfillItem(
        namespace=namespace,
        start=T0 + timedelta(hours=hour),
        end=T0 + timedelta(hours=hour + 1),
        job_id=f"{namespace}-{hour}",
        status=JobStatus.SUCCEEDED,
        error_lines=errors,
        new_findings=new,
        cause=cause,
    )


def test_the_rollup_ranks_new_findings_before_error_volume() -> None:
    rows = rollup(
        [
            item("loud", 0, 5000, 0, "steady error"),
            item("loud", 1, 4000, 0, "steady error"),
            item("quiet", 0, 3, 1, "disk full"),
            item("quiet", 1, 40, 0, "disk full"),
        ]
    )
    assert [r.namespace for r in rows] == ["quiet", "loud"]
    assert rows[0].error_lines == 43 and rows[0].worst_window == T0 + timedelta(hours=1)
    assert rows[0].causes == ["disk full"] and rows[1].error_lines == 9000


def test_a_finding_absorbs_sightings_once_each() -> None:
    def seen(existing: Finding | None, job: str, hour: int, level: Level) -> Finding | None:
        start = T0 + timedelta(hours=hour)
        sighting = Sighting(job_id=job, start=start, end=start + timedelta(hours=1), count=2)
        return absorb(
            existing,
            namespace="shop",
            fingerprint="fp",
            template="disk full",
            level=level,
            first_seen=start,
            count=2,
            sighting=sighting,
        )

    first = seen(None, "j1", 0, Level.ERROR)
    assert first is not None and first.sightings == 1
    second = seen(first, "j2", 3, Level.FATAL)
    assert second is not None
    assert (second.sightings, second.lines, second.level) == (2, 4, Level.FATAL)
    assert second.first_seen == T0 and second.last_seen == T0 + timedelta(hours=4)
    assert seen(second, "j2", 3, Level.ERROR) is None  # that job was counted already


def sighted(job: str, hour: int, count: int = 2) -> Sighting:
    start = T0 + timedelta(hours=hour)
    return Sighting(job_id=job, start=start, end=start + timedelta(hours=1), count=count)


def finding(template: str, level: Level, *sightings: Sighting) -> Finding:
    return Finding(
        namespace="shop",
        fingerprint="fp",
        template=template,
        level=level,
        first_seen=min(s.start for s in sightings),
        last_seen=max(s.end for s in sightings),
        sightings=len(sightings),
        lines=sum(s.count for s in sightings),
        recent=list(sightings),
    )


def test_two_records_of_a_finding_merge_and_a_shared_sighting_counts_once() -> None:
    stored_before = finding("disk full", Level.FATAL, sighted("j1", 0), sighted("j2", 1, 5))
    stored_since = finding("disk full: /data", Level.ERROR, sighted("j2", 1, 5), sighted("j3", 4))
    merged = merge_findings(stored_since, stored_before)
    assert (merged.sightings, merged.lines) == (3, 2 + 5 + 2)
    assert [s.job_id for s in merged.recent] == ["j3", "j2", "j1"]  # newest first
    assert merged.level is Level.FATAL and merged.template == "disk full: /data"
    assert merged.first_seen == T0 and merged.last_seen == T0 + timedelta(hours=5)
    assert merge_findings(stored_before, stored_since).model_dump() == merged.model_dump()
