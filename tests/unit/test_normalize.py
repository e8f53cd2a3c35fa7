"""The normalize stage on incident fixtures: a rare root cause under floods of consequences."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from shared.schemas import LEVEL_RANK, Entry, Level
from workers.stages.normalize import MAX_MINED_CHARS, MAX_NAMES, normalize

T0_NS = int(datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
SECOND = 1_000_000_000
WINDOW_S = 600
API_PODS = [f"api-7d9f8c6b5-{s}" for s in ("x2x4k", "b8vnm", "q5zrt", "w9lcd")]


def entry(ts_s: float, pod: str, container: str, level: Level, message: str) -> Entry:
    return Entry(
        ts_ns=T0_NS + int(ts_s * SECOND),
        namespace="shop",
        pod=pod,
        container=container,
        node="node-1",
        level=level,
        message=message,
    )


def noise(rng: random.Random, count: int) -> list[Entry]:
    """Normal traffic over the whole window."""
    out = []
    for _ in range(count):
        ts = rng.uniform(0, WINDOW_S)
        pod = rng.choice(API_PODS)
        kind = rng.randrange(4)
        if kind == 0:
            msg = f"GET /api/v1/items/{rng.randrange(10**6)} 200 {rng.randrange(1, 90)}ms"
        elif kind == 1:
            msg = f"cache refreshed in {rng.randrange(5, 400)}ms keys={rng.randrange(10**4)}"
        elif kind == 2:
            msg = f"processed job {rng.randrange(10**8):08x} in {rng.random():.3f}s"
        else:
            msg = f"GET /healthz 200 {rng.randrange(1, 5)}ms"
        out.append(entry(ts, pod, "api", Level.INFO, msg))
    return out


def flood(
    rng: random.Random,
    start_s: float,
    count: int,
    make: Callable[[random.Random], str],
    level: Level,
) -> list[Entry]:
    """`count` consequence lines spread from `start_s` to the end of the window."""
    return [
        entry(rng.uniform(start_s, WINDOW_S), rng.choice(API_PODS), "api", level, make(rng))
        for _ in range(count)
    ]


def postgres_incident() -> tuple[list[Entry], str]:
    """Wrong database password after a secret rotation; 3 FATAL lines, ~4,000 consequences."""
    rng = random.Random(1)
    entries = noise(rng, 2500)
    for i, ts in enumerate((240.0, 241.5, 243.0)):
        entries.append(
            entry(
                ts,
                "postgres-0",
                "postgres",
                Level.FATAL,
                'FATAL:  password authentication failed for user "app"',
            )
        )
        entries.append(
            entry(
                ts + 0.001,
                "postgres-0",
                "postgres",
                Level.UNKNOWN,
                f'DETAIL:  Connection matched pg_hba.conf line {95 + i}: "host all all all md5"',
            )
        )
    entries += flood(
        rng,
        243.5,
        2000,
        lambda r: (
            f"could not connect to database: dial tcp 10.0.3.7:5432: connection refused "
            f"(retry {r.randrange(1, 50)})"
        ),
        Level.ERROR,
    )
    entries += flood(
        rng,
        244.0,
        600,
        lambda r: (
            f"Readiness probe failed: HTTP probe failed with statuscode: 503 "
            f"after {r.randrange(1, 900)}ms"
        ),
        Level.WARN,
    )
    entries += flood(
        rng,
        243.5,
        800,
        lambda r: (
            f"retrying database connection in {r.randrange(1, 30)}s "
            f"(attempt {r.randrange(1, 10)}/10)"
        ),
        Level.WARN,
    )
    entries += flood(
        rng,
        245.0,
        800,
        lambda r: (
            f"upstream request failed: 503 Service Unavailable path=/api/v1/items/"
            f"{r.randrange(10**6)}"
        ),
        Level.ERROR,
    )
    entries.sort(key=lambda e: e.ts_ns)
    return entries, "password authentication failed"


def oom_incident() -> tuple[list[Entry], str]:
    """The api container is OOMKilled twice; the kubelet line states no level."""
    rng = random.Random(2)
    entries = noise(rng, 3000)
    for ts, pod in ((180.0, API_PODS[0]), (420.0, API_PODS[2])):
        entries.append(
            entry(
                ts,
                pod,
                "api",
                Level.UNKNOWN,
                f"Container api in pod {pod} terminated: reason=OOMKilled exitCode=137 limit=512Mi",
            )
        )
    entries += flood(
        rng,
        181.0,
        400,
        lambda r: (
            f"Back-off restarting failed container api in pod "
            f"{r.choice(API_PODS)} ({r.randrange(10, 300)}s)"
        ),
        Level.WARN,
    )
    entries += flood(
        rng,
        181.0,
        1500,
        lambda r: (
            f"Readiness probe failed: Get http://10.0.{r.randrange(255)}.{r.randrange(255)}"
            ":8080/ready: dial tcp: connect: connection refused"
        ),
        Level.WARN,
    )
    entries += flood(
        rng,
        181.5,
        2000,
        lambda r: (
            "upstream connect error or disconnect/reset before headers. "
            f"reset reason: connection failure, transport failure reason: {r.randrange(100)}"
        ),
        Level.ERROR,
    )
    entries += flood(
        rng,
        182.0,
        1000,
        lambda r: f"request to api failed: 502 Bad Gateway (request_id={r.randrange(10**12):x})",
        Level.ERROR,
    )
    entries.sort(key=lambda e: e.ts_ns)
    return entries, "OOMKilled"


INCIDENTS = {"postgres": postgres_incident, "oom": oom_incident}


def newest_error_lines(entries: list[Entry], limit: int = 15) -> list[str]:
    """The seed's approach: the `limit` newest lines at level ERROR or worse."""
    errors = [e for e in entries if LEVEL_RANK[e.level] >= LEVEL_RANK[Level.ERROR]]
    errors.sort(key=lambda e: e.ts_ns, reverse=True)
    return [e.message for e in errors[:limit]]


@pytest.mark.parametrize("name", INCIDENTS)
def test_root_cause_in_top_evidence(name: str) -> None:
    entries, cause = INCIDENTS[name]()
    result = normalize(entries)
    top = result.evidence[:15]
    assert any(cause in item.template for item in top), [i.template for i in top]
    # In these fixtures it should lead, not just scrape into the top 15.
    assert cause in top[0].template


@pytest.mark.parametrize("name", INCIDENTS)
def test_naive_newest_errors_miss_root_cause(name: str) -> None:
    entries, cause = INCIDENTS[name]()
    assert not any(cause in line for line in newest_error_lines(entries))


def test_result_shape() -> None:
    entries, _ = postgres_incident()
    result = normalize(entries, max_evidence=5)
    assert result.entries == len(entries)
    assert result.templates > 5
    assert [e.template_id for e in result.evidence] == ["T1", "T2", "T3", "T4", "T5"]
    # The probable causes lead the evidence; the rest follow by score.
    assert result.findings is not None
    causes = {c.template_id for c in result.findings.probable_causes}
    assert [e.template_id for e in result.evidence[: len(causes)]] == sorted(causes)
    scores = [e.score for e in result.evidence if e.template_id not in causes]
    assert scores == sorted(scores, reverse=True)
    fatal = result.evidence[0]
    assert fatal.level is Level.FATAL
    assert fatal.count == 3
    assert fatal.pods == ["postgres-0"]
    assert fatal.containers == ["postgres"]
    assert fatal.first_seen == datetime(2024, 5, 1, 12, 4, tzinfo=UTC)
    assert fatal.last_seen == datetime(2024, 5, 1, 12, 4, 3, tzinfo=UTC)
    assert fatal.examples == ['FATAL:  password authentication failed for user "app"']
    for item in result.evidence:
        assert 1 <= len(item.examples) <= 3
        assert len(set(item.examples)) == len(item.examples)
        assert item.pods == sorted(item.pods)
        assert item.first_seen <= item.last_seen


def test_examples_limit_and_pod_cap() -> None:
    entries = [
        entry(i, f"web-{i}", f"c{i % 12}", Level.ERROR, f"request {i} failed: timeout after {i}s")
        for i in range(40)
    ]
    result = normalize(entries, max_examples=2)
    (item,) = result.evidence
    assert item.count == 40
    assert len(item.examples) == 2
    assert len(item.pods) == MAX_NAMES
    assert len(item.containers) == MAX_NAMES
    assert item.template == "request <*> failed: timeout after <*>"


def test_no_secret_reaches_evidence() -> None:
    secrets = ["hunter2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl", "S3cr3t!"]
    entries = [
        entry(1, "api-0", "api", Level.ERROR, f"login failed password={secrets[0]} user=app"),
        entry(2, "api-0", "api", Level.ERROR, f"login failed password=other{1} user=bob"),
        entry(3, "api-1", "api", Level.WARN, f"Authorization: Bearer {secrets[1]} rejected"),
        entry(4, "api-1", "api", Level.ERROR, f"dial postgres://app:{secrets[2]}@db:5432/x failed"),
    ]
    result = normalize(entries)
    assert result.redactions == 4
    dumped = result.model_dump_json()
    for secret in secrets:
        assert secret not in dumped
    assert "<redacted:secret>" in dumped


def test_empty_input() -> None:
    result = normalize([])
    assert result.evidence == []
    assert (result.entries, result.templates, result.redactions) == (0, 0, 0)


def test_deterministic() -> None:
    entries, _ = oom_incident()
    assert normalize(entries) == normalize(entries)


def test_a_template_cut_short_says_so() -> None:
    line = "payload rejected: " + "lorem ipsum dolor sit amet " * 4000
    result = normalize(
        [
            entry(1, "web-0", "web", Level.ERROR, line),
            entry(2, "web-0", "web", Level.ERROR, "payload too large"),
        ]
    )
    cut = next(e for e in result.evidence if e.template.startswith("payload rejected"))
    whole = next(e for e in result.evidence if e.template.startswith("payload too large"))
    assert cut.template.endswith("…")
    assert len(cut.template) <= MAX_MINED_CHARS + 2
    assert whole.template == "payload too large"
