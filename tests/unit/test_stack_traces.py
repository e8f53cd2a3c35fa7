"""Joined stack traces are named by their innermost cause; explicit levels are not raised by
words; a finding renamed that way keeps its identity (issue 21)."""

from __future__ import annotations

from dataclasses import replace

import fakeredis
import pytest

from shared import redis_keys
from shared.findings_store import record_sightings
from shared.schemas import LEVEL_RANK, AnalysisRequest, JobResult, Level, NormalizeResult, RawLine
from shared.schemas.backfills import Finding
from shared.tenancy import DEFAULT_TENANT
from tests.support.incident import job_request
from workers.evidence.ranking import severity
from workers.stages.flatten import flatten
from workers.stages.normalize import WindowInfo, normalize

T0 = 1_795_514_400_000_000_000  # 2026-11-24T10:00:00Z
SECOND = 1_000_000_000
WINDOW_S = 600
POD = {"namespace": "shop", "pod": "api-7d9f8c6b5-x2x4k", "container": "api", "node": "n1"}
TTL = 3600

JAVA = (
    "2026-11-24 10:01:40.123 ERROR 1 --- [exec-{n}] c.e.orders.OrderController : "
    "Request {n} failed",
    "org.example.orders.OrderStoreException: could not save order {n}",
    "\tat org.example.orders.OrderStore.save(OrderStore.java:88)",
    "\tat org.example.orders.OrderController.create(OrderController.java:41)",
    "Caused by: org.example.db.PoolException: no connection available",
    "\tat org.example.db.Pool.borrow(Pool.java:120)",
    "\t... 12 more",
    "Caused by: java.net.ConnectException: Connection refused",
    "\tat java.base/sun.nio.ch.Net.connect0(Native Method)",
    "\t... 20 more",
)
PYTHON = (
    "2026-11-24 10:01:40,123 ERROR [worker] Task {n} failed",
    "Traceback (most recent call last):",
    '  File "/app/tasks.py", line 42, in run',
    "    store(result)",
    '  File "/app/store.py", line 10, in store',
    "    fh.write(data)",
    "OSError: [Errno 30] Read-only file system: '/data/out'",
)
GO = (
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]",
    "",
    "goroutine {n} [running]:",
    "main.(*OrderHandler).Lookup(0x0, {{0xc0001a2000, 0x24}})",
    "\t/app/handler.go:88 +0x1c",
    "main.main()",
    "\t/app/main.go:20 +0x55",
)
NODE = (
    "2026-11-24T10:01:40.123Z error: unhandled rejection in checkout {n}",
    "TypeError: Cannot read properties of undefined (reading 'total')",
    "    at computeTotal (/app/src/cart.js:41:23)",
    "    at processTicksAndRejections (node:internal/process/task_queues:95:5)",
)
CASES = {
    # name: (event lines, words the name must hold)
    "java": (JAVA, ("ConnectException", "Connection refused")),
    "python": (PYTHON, ("OSError", "Read-only file system")),
    "go": (GO, ("nil pointer dereference", "main.(*OrderHandler).Lookup")),
    "node": (NODE, ("TypeError", "reading 'total'")),
}


def at(t: float, line: str) -> RawLine:
    return RawLine(T0 + int(t * SECOND), POD, line)


def incident(event: tuple[str, ...]) -> list[RawLine]:
    """Info traffic all through the window; three of `event` from 100 s, then a timeout error
    that follows them."""
    lines = [at(t, f"INFO GET /api/items/{t} 200 12ms") for t in range(0, WINDOW_S, 5)]
    for n, start in enumerate((100.0, 110.0, 120.0)):
        lines += [at(start + i * 0.001, text.format(n=4100 + n)) for i, text in enumerate(event)]
    lines += [at(130.0 + t, f"ERROR checkout {t} timed out after 30s") for t in range(5)]
    lines.sort(key=lambda line: line.ts_ns)
    return lines


def analyse(lines: list[RawLine], *, heads_only: bool = False) -> NormalizeResult:
    entries = flatten(lines)
    if heads_only:  # what the miner saw before: the first line of each event
        entries = [replace(e, message=e.message.split("\n", 1)[0]) for e in entries]
    return normalize(entries, window=WindowInfo(T0, T0 + WINDOW_S * SECOND))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stack_trace_is_named_by_its_innermost_cause(name: str) -> None:
    event, words = CASES[name]
    result = analyse(incident(event))
    assert result.findings is not None
    cause = result.findings.probable_causes[0]
    assert all(word in cause.template for word in words), cause.template
    # The whole event stays in the evidence.
    item = next(i for i in result.evidence if i.template_id == cause.template_id)
    first, last = event[0].format(n=4100), event[-1].format(n=4100)
    assert any(first in ex and last in ex for ex in item.examples), item.examples


def test_an_explicit_level_is_not_raised_by_the_words_of_its_line() -> None:
    flags = "INFO [main] Starting JVM with -Xmx512m -XX:+HeapDumpOnOutOfMemoryError"
    assert severity(Level.INFO, flags) == LEVEL_RANK[Level.INFO]
    assert severity(Level.INFO, "container api OOMKilled") == LEVEL_RANK[Level.INFO]
    # Without a level, words count only as whole words: the flag's name is not one.
    assert severity(Level.UNKNOWN, "-XX:+HeapDumpOnOutOfMemoryError") < LEVEL_RANK[Level.FATAL]
    lines = [at(0.0, f"2026-11-24 10:00:00.000 {flags}")]
    lines += [at(200.0 + t, f"ERROR payment {t} declined: upstream returned 503") for t in range(3)]
    lines += [at(t, f"INFO GET /api/items/{t} 200 12ms") for t in range(1, WINDOW_S, 5)]
    lines.sort(key=lambda line: line.ts_ns)
    result = analyse(lines)
    assert result.findings is not None
    named = [c.template for c in result.findings.probable_causes]
    assert named and "upstream returned" in named[0], named
    assert not any("HeapDump" in t for t in named), named


def job(result: NormalizeResult) -> tuple[AnalysisRequest, JobResult]:
    request = AnalysisRequest.model_validate(job_request())
    return request, JobResult(
        analysis="", findings=result.findings, evidence=result.evidence, model="m"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_finding_named_by_its_cause_keeps_the_identity_stored_before(name: str) -> None:
    event, words = CASES[name]
    lines = incident(event)
    client = fakeredis.FakeRedis()
    # A previous version named the event by its head and stored it under that fingerprint.
    before = record_sightings(
        client, DEFAULT_TENANT, "old", *job(analyse(lines, heads_only=True)), TTL
    )
    assert before, "the previous version found the event"
    known = {f.fingerprint for f in before}
    now = analyse(lines)
    assert now.findings is not None
    renamed = now.findings.probable_causes[0]
    assert all(word in renamed.template for word in words), renamed.template
    assert renamed.fingerprint in known
    # Known: no webhook hears of it again, and the stored finding takes the new name.
    assert record_sightings(client, DEFAULT_TENANT, "new", *job(now), TTL) == []
    stored = client.hget(redis_keys.findings(DEFAULT_TENANT, "shop"), renamed.fingerprint)
    assert stored is not None
    finding = Finding.model_validate_json(stored)
    assert finding.template == renamed.template
    assert finding.sightings == 2
    # The identity is stable: the next window names it the same way, under the same key.
    again = analyse(lines).findings
    assert again is not None and again.probable_causes[0].fingerprint == renamed.fingerprint


def test_a_single_line_keeps_its_template_and_fingerprint() -> None:
    """Control: naming by cause changes nothing for one-line events."""
    lines = incident(("ERROR checkout {n} failed: card declined",))
    assert analyse(lines).evidence == analyse(lines, heads_only=True).evidence
