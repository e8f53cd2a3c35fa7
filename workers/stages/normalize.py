"""Normalize stage: redact, mine templates and rank them into evidence for the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.schemas import (
    LEVEL_RANK,
    Entry,
    EvidenceItem,
    Level,
    NormalizeCounts,
    NormalizeResult,
)
from workers.evidence.ranking import TemplateStats, rank
from workers.evidence.redact import redact
from workers.evidence.templates import TemplateMiner

MAX_NAMES = 10  # pods / containers listed per template
STORED_EXAMPLE_CHARS = 2000  # longer examples (joined stack traces) are cut, marked with "…"
MAX_MINED_CHARS = 1000  # the miner sees the first line of a message, at most this long
TIME_BINS = 32  # the window is cut into this many bins to measure burstiness

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Acc:
    """Running per-template state; every field is bounded."""

    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    level: Level = Level.DEBUG
    pods: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)
    bins: dict[int, int] = field(default_factory=dict)


def _utc(ts_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def _mined_text(message: str) -> str:
    head = message.split("\n", 1)[0]
    return head[:MAX_MINED_CHARS]


def _example(message: str) -> str:
    if len(message) <= STORED_EXAMPLE_CHARS:
        return message
    return message[: STORED_EXAMPLE_CHARS - 1] + "…"


def normalize(
    entries: Sequence[Entry], *, max_evidence: int = 200, max_examples: int = 3
) -> NormalizeResult:
    """Redact and mine `entries` into templates; return the best `max_evidence` of them.

    Messages are redacted before mining, so no secret reaches a template or an example.
    Evidence is ordered best first and numbered `T1`, `T2`, ... in that order.
    """
    miner = TemplateMiner()
    redactions = 0
    texts: list[str] = []
    sids: list[int] = []
    for entry in entries:
        text, count = redact(entry.message)
        redactions += count
        texts.append(text)
        sids.append(miner.add(_mined_text(text)))
    if not entries:
        return NormalizeResult(evidence=[], entries=0, templates=0, redactions=0)

    start_ns = min(e.ts_ns for e in entries)
    bin_ns = max((max(e.ts_ns for e in entries) - start_ns) // TIME_BINS + 1, 1)
    accs: dict[int, _Acc] = {}
    for entry, text, sid in zip(entries, texts, sids, strict=True):
        tid = miner.resolve(sid)
        acc = accs.get(tid)
        if acc is None:
            acc = accs[tid] = _Acc(first_ns=entry.ts_ns, last_ns=entry.ts_ns)
        acc.count += 1
        acc.first_ns = min(acc.first_ns, entry.ts_ns)
        acc.last_ns = max(acc.last_ns, entry.ts_ns)
        if LEVEL_RANK[entry.level] > LEVEL_RANK[acc.level]:
            acc.level = entry.level
        if entry.pod and len(acc.pods) < MAX_NAMES:
            acc.pods.add(entry.pod)
        if entry.container and len(acc.containers) < MAX_NAMES:
            acc.containers.add(entry.container)
        example = _example(text)
        if len(acc.examples) < max_examples and example not in acc.examples:
            acc.examples.append(example)
        b = (entry.ts_ns - start_ns) // bin_ns
        acc.bins[b] = acc.bins.get(b, 0) + 1

    templates = miner.templates
    tids = list(accs)
    stats = [
        TemplateStats(
            template=templates[tid].text,
            level=accs[tid].level,
            count=accs[tid].count,
            first_ns=accs[tid].first_ns,
            last_ns=accs[tid].last_ns,
            peak=max(accs[tid].bins.values()),
        )
        for tid in tids
    ]
    evidence = []
    for n, (i, value) in enumerate(rank(stats)[:max_evidence], start=1):
        acc = accs[tids[i]]
        evidence.append(
            EvidenceItem(
                template_id=f"T{n}",
                template=stats[i].template,
                level=acc.level,
                count=acc.count,
                first_seen=_utc(acc.first_ns),
                last_seen=_utc(acc.last_ns),
                pods=sorted(acc.pods),
                containers=sorted(acc.containers),
                examples=acc.examples,
                score=round(value, 4),
            )
        )
    return NormalizeResult(
        evidence=evidence, entries=len(entries), templates=len(accs), redactions=redactions
    )


def run(entries: Sequence[Entry], *, limit: int) -> tuple[NormalizeResult, NormalizeCounts]:
    """The normalize stage: evidence for a request that shows the model `limit` templates.

    More evidence than `limit` is kept (at least 50): the prompt drops what does not fit.
    """
    result = normalize(entries, max_evidence=max(limit, 50))
    counts = NormalizeCounts(
        entries=result.entries,
        templates=result.templates,
        redactions=result.redactions,
        evidence=len(result.evidence),
    )
    return result, counts
