"""workers.sources.loki against an in-memory Loki behind httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.errors import LokiError, LokiRejectedError
from shared.retry import RetryPolicy
from shared.schemas import FetchResult, RawLine
from workers.sources.loki import fetch_range

BASE = "http://loki.test:3100"
QUERY = '{namespace="shop"}'
Entry = tuple[int, dict[str, str], str]
Handler = Callable[[httpx.Request], httpx.Response]


class FakeLoki:
    """Answers query_range like Loki: earliest `limit` entries of [start, end) over all streams."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.calls: list[dict[str, str]] = []
        self.script: list[Handler] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.calls.append(params)
        if self.script:
            return self.script.pop(0)(request)
        start, end, limit = int(params["start"]), int(params["end"]), int(params["limit"])
        assert params["direction"] == "forward"
        window = [e for e in self.entries if start <= e[0] < end]
        # Same-timestamp order across streams is Loki's business; make it adversarial.
        window.sort(key=lambda e: (e[0], e[2][::-1]))
        grouped: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for ts, labels, line in window[:limit]:
            grouped.setdefault(tuple(sorted(labels.items())), []).append([str(ts), line])
        result = [{"stream": dict(k), "values": v} for k, v in reversed(list(grouped.items()))]
        body = {"status": "success", "data": {"resultType": "streams", "result": result}}
        return httpx.Response(200, json=body)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def _status(code: int, text: str = "", headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(code, text=text, headers=headers)


def _raise(exc: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return handler


A = {"namespace": "shop", "pod": "a"}
B = {"namespace": "shop", "pod": "b"}
C = {"namespace": "shop", "pod": "c"}


def _fetch(loki: FakeLoki, **kw: Any) -> tuple[FetchResult, list[float], list[tuple[int, int]]]:
    sleeps: list[float] = []
    pages: list[tuple[int, int]] = []
    kw.setdefault("scan_limit", 10_000)
    with loki.client() as client:
        result = fetch_range(
            client,
            BASE,
            QUERY,
            kw.pop("start_ns", 0),
            kw.pop("end_ns", 10**6),
            sleep=sleeps.append,
            on_page=lambda p, k: pages.append((p, k)),
            **kw,
        )
    return result, sleeps, pages


def _key(line: RawLine) -> tuple[int, str, str]:
    return (line.ts_ns, line.labels["pod"], line.line)


def test_pages_forward_and_reads_every_line_once() -> None:
    entries = [(100 + i, A, f"line {i}") for i in range(12)]
    loki = FakeLoki(entries)
    result, sleeps, pages = _fetch(loki, page_size=5)
    assert [r.line for r in result.lines] == [f"line {i}" for i in range(12)]
    assert (result.pages, result.seen, result.kept, result.dropped) == (3, 14, 12, 2)
    assert [c["start"] for c in loki.calls] == ["0", "104", "108"]
    assert all(c["end"] == str(10**6) and c["query"] == QUERY for c in loki.calls)
    assert pages == [(1, 5), (2, 9), (3, 12)]
    assert sleeps == []


def test_same_nanosecond_entries_across_page_boundaries() -> None:
    # Three streams writing at the same instants, two lines per stream per instant: six entries
    # share each nanosecond and a page of seven always ends inside a group.
    entries = [
        (1000 + t, labels, f"{labels['pod']}-{t}-{k}")
        for t in range(6)
        for labels in (A, B, C)
        for k in range(2)
    ]
    loki = FakeLoki(entries)
    result, _, _ = _fetch(loki, page_size=7)
    keys = [_key(r) for r in result.lines]
    assert sorted(keys) == sorted((ts, lab["pod"], line) for ts, lab, line in entries)
    assert len(set(keys)) == len(entries) == result.kept
    assert [r.ts_ns for r in result.lines] == sorted(r.ts_ns for r in result.lines)
    assert result.seen == result.kept + result.dropped
    assert result.dropped > 0  # boundary re-reads happened and were skipped


def test_streams_are_merged_in_time_order() -> None:
    entries = [(10, A, "a10"), (30, A, "a30"), (20, B, "b20"), (5, C, "c5"), (25, C, "c25")]
    result, _, _ = _fetch(FakeLoki(entries), page_size=100)
    assert [r.line for r in result.lines] == ["c5", "a10", "b20", "c25", "a30"]
    assert result.lines[0].labels == C


def test_scan_limit_keeps_the_oldest_lines() -> None:
    entries = [(100 + i, A, f"l{i}") for i in range(20)]
    loki = FakeLoki(entries)
    result, _, _ = _fetch(loki, page_size=5, scan_limit=7)
    assert [r.line for r in result.lines] == [f"l{i}" for i in range(7)]
    # Page 2 asks only for what is missing plus the boundary line it will re-read.
    assert [c["limit"] for c in loki.calls] == ["5", "3"]
    assert (result.pages, result.seen, result.kept, result.dropped) == (2, 8, 7, 1)


def test_lines_past_scan_limit_count_as_dropped() -> None:
    loki = FakeLoki([])
    values = [[str(100 + i), f"l{i}"] for i in range(5)]
    body = {
        "status": "success",
        "data": {"resultType": "streams", "result": [{"stream": A, "values": values}]},
    }
    loki.script = [lambda request: httpx.Response(200, json=body)]  # a Loki ignoring `limit`
    result, _, _ = _fetch(loki, page_size=5, scan_limit=3)
    assert (result.seen, result.kept, result.dropped) == (5, 3, 2)


def test_more_entries_at_one_nanosecond_than_a_page_moves_on() -> None:
    entries = [(500, A, f"same {i}") for i in range(8)] + [(501, A, "after")]
    loki = FakeLoki(entries)
    result, _, _ = _fetch(loki, page_size=5)
    assert result.lines[-1].line == "after"
    assert result.kept == 6  # 5 of the 8 at ns 500 were reachable, then "after"
    assert loki.calls[-1]["start"] == "501"


def test_empty_window_makes_no_request() -> None:
    loki = FakeLoki([(1, A, "x")])
    result, _, _ = _fetch(loki, start_ns=10, end_ns=10)
    assert loki.calls == [] and result.lines == [] and result.pages == 0


def test_no_match_is_one_page() -> None:
    result, _, _ = _fetch(FakeLoki([]))
    assert (result.pages, result.seen, result.kept) == (1, 0, 0)


def test_retries_429_500_and_timeouts_then_succeeds() -> None:
    loki = FakeLoki([(1, A, "x")])
    loki.script = [
        _status(429, "Too Many Requests", {"Retry-After": "2"}),
        _status(500, "internal"),
        _raise(httpx.ReadTimeout),
        _raise(httpx.ConnectError),
    ]
    result, sleeps, _ = _fetch(loki, retry=RetryPolicy(attempts=4, base_s=1.0, cap_s=30.0))
    assert [r.line for r in result.lines] == ["x"]
    assert len(sleeps) == 4
    assert sleeps[0] == 2.0  # Retry-After wins over backoff
    assert 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0 and 4.0 <= sleeps[3] <= 8.0
    assert len(loki.calls) == 5


def test_retry_exhaustion_raises_loki_error() -> None:
    loki = FakeLoki([])
    loki.script = [_status(503, "Ingester not ready")] * 10
    with pytest.raises(LokiError) as info:
        _fetch(loki, retry=RetryPolicy(attempts=2))
    assert "503" in info.value.message and "3 attempts" in info.value.message
    assert len(loki.calls) == 3


def test_retry_after_longer_than_the_cap_fails_fast() -> None:
    loki = FakeLoki([])
    loki.script = [_status(429, "slow down", {"Retry-After": "3600"})]
    with pytest.raises(LokiError):
        _fetch(loki)
    assert len(loki.calls) == 1


def test_400_raises_rejected_with_lokis_text() -> None:
    text = (
        "max entries limit per query exceeded, limit > max_entries_limit_per_query "
        "(100000 > 5000)\n"
    )
    loki = FakeLoki([])
    loki.script = [_status(400, text)]
    with pytest.raises(LokiRejectedError) as info:
        _fetch(loki)
    assert info.value.message == text.strip()
    assert len(loki.calls) == 1


def test_other_4xx_is_not_retried() -> None:
    loki = FakeLoki([])
    loki.script = [_status(404, "404 page not found")]
    with pytest.raises(LokiRejectedError):
        _fetch(loki)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"status": "error"}),
        json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
        json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "streams",
                    "result": [{"stream": {}, "values": [["x", "y"]]}],
                },
            }
        ),
    ],
)
def test_malformed_answers_raise_loki_error(body: str) -> None:
    loki = FakeLoki([])
    loki.script = [lambda request: httpx.Response(200, text=body)]
    with pytest.raises(LokiError):
        _fetch(loki)


@pytest.mark.parametrize(("page_size", "scan_limit"), [(0, 1), (5001, 1), (10, 0)])
def test_bad_arguments(page_size: int, scan_limit: int) -> None:
    with pytest.raises(ValueError):
        _fetch(FakeLoki([]), page_size=page_size, scan_limit=scan_limit)
