"""The Loki client against the stub over real HTTP on 127.0.0.1, and the stub's own contract."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from shared.errors import LokiError, LokiRejectedError
from shared.logql import build_query, parse_log_filter
from shared.retry import RetryPolicy
from shared.schemas import Filters
from tests.stubs.loki_stub import LokiStub, start_loki_stub
from workers.sources.loki import fetch_range

T0 = 1_795_530_166_000_000_000
HOUR = 3600 * 10**9
SHOP = {"namespace": "shop", "node": "node-1"}


def rfc3339(ns: int) -> str:
    seconds, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def no_sleep(seconds: float) -> None:
    pytest.fail(f"unexpected retry (sleep {seconds}s)")


@pytest.fixture
def loki() -> Iterator[LokiStub]:
    with start_loki_stub() as stub:
        yield stub


@pytest.fixture
def http(loki: LokiStub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=loki.url, timeout=5) as client:
        yield client


def _query(http: httpx.Client, query: str, **params: str) -> httpx.Response:
    params.setdefault("start", str(T0))
    params.setdefault("end", str(T0 + HOUR))
    return http.get("/loki/api/v1/query_range", params={"query": query, **params})


def test_12000_lines_with_shared_timestamps_are_read_once_in_order(
    loki: LokiStub, http: httpx.Client
) -> None:
    expected = []
    for pod in ("api-1", "api-2", "worker-1"):
        labels = {**SHOP, "pod": pod, "container": pod.split("-")[0]}
        # 4000 lines per stream, 8 lines per nanosecond, the same instants in every stream:
        # 24 entries share each timestamp and page boundaries fall inside those groups.
        entries = [(T0 + i // 8, f"{pod} ERROR n={i}") for i in range(4000)]
        loki.push(labels, entries)
        expected += [(ts, pod, line) for ts, line in entries]
    pages: list[tuple[int, int]] = []
    query = build_query(Filters(namespace="shop"), parse_log_filter('|= "ERROR"'))
    result = fetch_range(
        http,
        loki.url,
        query,
        T0,
        T0 + HOUR,
        scan_limit=100_000,
        page_size=5000,
        on_page=lambda p, k: pages.append((p, k)),
        sleep=no_sleep,
    )
    got = [(r.ts_ns, r.labels["pod"], r.line) for r in result.lines]
    assert len(got) == len(set(got)) == 12_000 == result.kept
    assert sorted(got) == sorted(expected)
    assert [ts for ts, _, _ in got] == sorted(ts for ts, _, _ in expected)
    assert result.seen == result.kept + result.dropped
    assert result.pages == 3 and pages[-1] == (3, 12_000)
    assert result.lines[0].labels == {
        "namespace": "shop",
        "node": "node-1",
        "pod": "api-1",
        "container": "api",
        "service_name": "api",
        "detected_level": "error",
    }
    calls = loki.query_requests()
    assert [c.params["direction"] for c in calls] == ["forward"] * 3
    starts = [int(c.params["start"]) for c in calls]
    assert starts == sorted(starts) and starts[0] == T0
    assert all(c.params["query"] == query and int(c.params["limit"]) <= 5000 for c in calls)


def test_scan_limit_against_the_stub(loki: LokiStub, http: httpx.Client) -> None:
    loki.push({**SHOP, "pod": "p"}, [(T0 + i, f"l{i}") for i in range(50)])
    result = fetch_range(
        http, loki.url, '{namespace="shop"}', T0, T0 + HOUR, scan_limit=20, page_size=8
    )
    assert [r.line for r in result.lines] == [f"l{i}" for i in range(20)]
    assert result.kept == 20


def test_client_surfaces_lokis_400_text(loki: LokiStub, http: httpx.Client) -> None:
    with pytest.raises(LokiRejectedError) as info:
        fetch_range(http, loki.url, '{namespace="shop"', T0, T0 + HOUR, scan_limit=10)
    assert info.value.message == (
        "parse error at line 1, col 18: syntax error: unexpected $end, expecting } or ,"
    )


def test_client_retries_injected_failures(loki: LokiStub, http: httpx.Client) -> None:
    loki.push({**SHOP, "pod": "p"}, [(T0, "ERROR x")])
    loki.fail_next(429, retry_after="1")
    loki.fail_next(503, times=2)
    sleeps: list[float] = []
    result = fetch_range(
        http, loki.url, '{namespace="shop"}', T0, T0 + HOUR, scan_limit=10, sleep=sleeps.append
    )
    assert [r.line for r in result.lines] == ["ERROR x"]
    assert [r.status for r in loki.query_requests()] == [429, 503, 503, 200]
    assert sleeps[0] == 1.0 and len(sleeps) == 3


def test_client_retries_a_hung_request_after_its_timeout(
    loki: LokiStub, http: httpx.Client
) -> None:
    loki.push({**SHOP, "pod": "p"}, [(T0, "ERROR x")])
    loki.hang_next(30)
    sleeps: list[float] = []
    result = fetch_range(
        http,
        loki.url,
        '{namespace="shop"}',
        T0,
        T0 + HOUR,
        scan_limit=10,
        timeout_s=0.3,
        sleep=sleeps.append,
    )
    assert [r.line for r in result.lines] == ["ERROR x"] and len(sleeps) == 1


def test_client_gives_up_when_failures_persist(loki: LokiStub, http: httpx.Client) -> None:
    loki.fail_next(500, times=10)
    with pytest.raises(LokiError):
        fetch_range(
            http,
            loki.url,
            '{namespace="shop"}',
            T0,
            T0 + HOUR,
            scan_limit=10,
            retry=RetryPolicy(attempts=2),
            sleep=lambda s: None,
        )
    assert len(loki.query_requests()) == 3


# --- The stub speaks like Loki ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "params", "text"),
    [
        (
            '{namespace="shop"',
            {},
            "parse error at line 1, col 18: syntax error: unexpected $end, expecting } or ,",
        ),
        (
            '{namespace="shop"} |= "x" or 1=1',
            {},
            "parse error at line 1, col 30: syntax error: unexpected NUMBER, "
            "expecting STRING or ip",
        ),
        (
            '{namespace="shop"}',
            {"limit": "100000"},
            "max entries limit per query exceeded, limit > max_entries_limit_per_query "
            "(100000 > 5000)",
        ),
        (
            '{namespace="shop"}',
            {"end": str(T0 + 3000 * HOUR)},
            "the query time range exceeds the limit (query length: 3000h0m0s, limit: 30d1h)",
        ),
        (
            '{namespace="shop"}',
            {"end": str(T0 - 1)},
            "end timestamp must not be before or equal to start time",
        ),
        (
            '{namespace=~".*"}',
            {},
            "parse error : queries require at least one regexp or equality matcher that does not "
            'have an empty-compatible value. For instance, app=~".*" does not meet this '
            'requirement, but app=~".+" will',
        ),
        (
            '{namespace="shop"} |~ "(?i)(error"',
            {},
            "parse error : stage '|~ \"(?i)(error\"' : error parsing regexp: missing closing ): "
            "`(?i)(error`",
        ),
    ],
)
def test_stub_errors_match_the_reference(
    http: httpx.Client, query: str, params: dict[str, str], text: str
) -> None:
    response = _query(http, query, **params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.strip() == text


def test_stub_push_query_and_labels(loki: LokiStub, http: httpx.Client) -> None:
    body = {
        "streams": [
            {
                "stream": {
                    "namespace": "shop",
                    "pod": "api-7d9f-abc",
                    "container": "api",
                    "node": "node-1",
                },
                "values": [
                    [str(T0 + 2), "ERROR connection refused redis:6379"],
                    [str(T0 + 1), "info: started"],
                    [str(T0 + 2), "ERROR connection refused redis:6379"],  # exact duplicate
                ],
            }
        ]
    }
    push = http.post("/loki/api/v1/push", json=body)
    assert push.status_code == 204 and push.content == b""

    backward = _query(http, '{namespace="shop", pod=~"api-.*"}').json()
    assert backward["status"] == "success"
    assert backward["data"]["resultType"] == "streams"
    assert backward["data"]["stats"]["summary"]["totalEntriesReturned"] == 2
    streams = {s["stream"]["detected_level"]: s for s in backward["data"]["result"]}
    assert streams["error"]["stream"] == {
        "container": "api",
        "detected_level": "error",
        "namespace": "shop",
        "node": "node-1",
        "pod": "api-7d9f-abc",
        "service_name": "api",
    }
    assert streams["error"]["values"] == [[str(T0 + 2), "ERROR connection refused redis:6379"]]

    limited = _query(http, '{namespace="shop"}', limit="1", direction="forward").json()
    assert [s["values"] for s in limited["data"]["result"]] == [[[str(T0 + 1), "info: started"]]]
    # start is inclusive, end exclusive.
    edge = _query(http, '{namespace="shop"}', start=str(T0 + 2), end=str(T0 + 3)).json()
    assert [v for s in edge["data"]["result"] for v in s["values"]] == [
        [str(T0 + 2), "ERROR connection refused redis:6379"]
    ]
    assert _query(http, '{namespace="shop"}', end=str(T0 + 2)).json()["data"]["result"][0][
        "values"
    ] == [[str(T0 + 1), "info: started"]]
    rfc = _query(
        http, '{namespace="shop"} |= "refused"', start=rfc3339(T0 + 2), end=rfc3339(T0 + HOUR)
    ).json()
    assert [v for s in rfc["data"]["result"] for v in s["values"]] == [
        [str(T0 + 2), "ERROR connection refused redis:6379"]
    ]
    nothing = _query(http, '{namespace="other"}').json()
    assert nothing["status"] == "success" and nothing["data"]["result"] == []

    assert http.get("/loki/api/v1/labels").json() == {
        "status": "success",
        "data": ["container", "namespace", "node", "pod", "service_name"],
    }
    assert http.get("/loki/api/v1/label/namespace/values").json() == {
        "status": "success",
        "data": ["shop"],
    }
    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.text.strip() == "ready"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("ERROR connection refused redis:6379", "error"),
        ('PANIC: could not write to file "pg_wal/x"', "fatal"),
        ('{"level":"warning","msg":"slow"}', "warn"),
        ("ts=1 lvl=debug msg=x", "debug"),
        ("GET /healthz 200", "unknown"),
    ],
)
def test_stub_detects_levels(loki: LokiStub, http: httpx.Client, line: str, level: str) -> None:
    loki.push({**SHOP, "pod": "p"}, [(T0, line)])
    result = _query(http, '{namespace="shop"}').json()["data"]["result"]
    assert [s["stream"]["detected_level"] for s in result] == [level]


def test_stub_fault_control(loki: LokiStub, http: httpx.Client) -> None:
    loki.fail_next(503, times=5)
    assert _query(http, '{namespace="shop"}').status_code == 503
    loki.fail_next(503, 0)  # cancel the rest
    assert _query(http, '{namespace="shop"}').status_code == 200
    loki.fail_next(500, path=None)
    assert http.get("/loki/api/v1/labels").status_code == 500
    loki.ready = False
    not_ready = http.get("/ready")
    assert not_ready.status_code == 503 and not_ready.text.startswith("Ingester not ready")
    assert [(r.path, r.status) for r in loki.requests] == [
        ("/loki/api/v1/query_range", 503),
        ("/loki/api/v1/query_range", 200),
        ("/loki/api/v1/labels", 500),
        ("/ready", 503),
    ]


def test_stub_backward_orders_values_newest_first(loki: LokiStub, http: httpx.Client) -> None:
    loki.push({**SHOP, "pod": "p"}, [(T0 + i, f"l{i}") for i in range(5)])
    result = _query(http, '{namespace="shop"}', limit="3").json()["data"]["result"]
    assert [v[1] for v in result[0]["values"]] == ["l4", "l3", "l2"]
