"""Normalize stage: redact, mine templates, rank them into evidence and compute findings.

One pass over the entries, holding state per distinct masked message (bounded by the
miner), never per entry: the window's entries and the previous window's are mined by the
same miner, so a template seen in both is recognised as steady and one seen only now as new.

A joined stack trace is mined by its innermost cause (`workers.evidence.traces`), so that is
what it is ranked and named by; its example keeps the whole event. Its head line is mined
too, as before, only to keep the finding's identity: the fingerprint of the head's template,
which is what earlier versions stored, so a known problem renamed by its cause is not
announced again (see `_identities`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.schemas import (
    LEVEL_RANK,
    AnalysisRequest,
    Entry,
    EvidenceItem,
    Level,
    NormalizeCounts,
    NormalizeResult,
    QueryCounts,
)
from shared.schemas.findings import Coverage, PreviousWindow, Searched
from workers.evidence.findings import MAX_CAUSES, Template, compute_findings, utc
from workers.evidence.ranking import TemplateStats, Window, rank, severity
from workers.evidence.redact import Redactor, redact
from workers.evidence.scorer import Series, Span, find_incident, own_onset, score_causes
from workers.evidence.templates import TemplateMiner, fingerprint, mask
from workers.evidence.traces import innermost_cause
from workers.stages.query_loki import to_ns

MAX_NAMES = 10  # pods / containers listed per template
STORED_EXAMPLE_CHARS = 2000  # longer examples (joined stack traces) are cut, marked with "…"
MAX_MINED_CHARS = 1000  # the miner sees the first line of a message, at most this long
CUT_MARK = "…"  # ends a template whose line was longer than MAX_MINED_CHARS
TIME_BINS = 128  # the window (and the one before) is cut into this many bins to count rates
MAX_HEADS = 20  # distinct head lines of the traces of one template kept for its identity


@dataclass(frozen=True)
class WindowInfo:
    """The analysed window and what was searched (for the findings)."""

    start_ns: int
    end_ns: int
    query: str = ""
    lines_scanned: int | None = None  # None: the number of entries
    previous: PreviousWindow | None = None
    coverage: Coverage | None = None


@dataclass(slots=True)
class _Acc:
    """Running state of one masked message (then of one template); every field is bounded."""

    count: float = 0  # lines, each weighted by what it stands for (see RawLine.weight)
    estimated: bool = False  # some lines were from a sample: `count` is an estimate
    first_ns: int = 0
    last_ns: int = 0
    level: Level = Level.DEBUG
    pods: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)
    bins: dict[int, float] = field(default_factory=dict)
    heads: dict[int, float] = field(default_factory=dict)  # head signature -> lines (traces)
    plain: bool = False  # some lines were mined as they are (not by an inner cause)

    def add_head(self, sid: int, weight: float) -> None:
        if sid in self.heads or len(self.heads) < MAX_HEADS:
            self.heads[sid] = self.heads.get(sid, 0) + weight

    def merge(self, other: _Acc, max_examples: int) -> None:
        if self.count == 0:
            self.first_ns, self.last_ns = other.first_ns, other.last_ns
        self.count += other.count
        self.estimated = self.estimated or other.estimated
        self.first_ns = min(self.first_ns, other.first_ns)
        self.last_ns = max(self.last_ns, other.last_ns)
        if LEVEL_RANK[other.level] > LEVEL_RANK[self.level]:
            self.level = other.level
        self.pods |= set(sorted(other.pods)[: MAX_NAMES - len(self.pods)])
        self.containers |= set(sorted(other.containers)[: MAX_NAMES - len(self.containers)])
        for example in other.examples:
            if len(self.examples) < max_examples and example not in self.examples:
                self.examples.append(example)
        for at, weight in other.bins.items():
            self.bins[at] = self.bins.get(at, 0) + weight
        for sid, weight in other.heads.items():
            self.add_head(sid, weight)
        self.plain = self.plain or other.plain


def window_info(request: AnalysisRequest, query: QueryCounts) -> WindowInfo:
    """The window as the findings describe it: bounds, query, coverage, the one before."""
    start, end = to_ns(request.time_range.start), to_ns(request.time_range.end)
    previous = PreviousWindow(
        start=utc(2 * start - end),
        end=utc(start),
        available=query.previous_seen is not None,
        lines=query.previous_seen or 0,
        note=query.previous_note,
    )
    coverage = query.coverage
    in_window = None if coverage is None else coverage.lines_in_window
    scanned = query.seen if in_window is None else in_window
    return WindowInfo(start, end, query.query, scanned, previous, coverage)


def mined_text(entry: Entry, text: str, masker: Callable[[str], str] = mask) -> str:
    """What the miner sees: the masked first line, then the fields kept as they are.

    A first line longer than MAX_MINED_CHARS is cut, and the cut marked with a token of its
    own (` …`): a token of its own stays constant when the miner merges lines whose last
    words differ, so the template keeps saying it was cut.
    """
    first = text.split("\n", 1)[0]
    head = masker(first[:MAX_MINED_CHARS])
    if len(first) > MAX_MINED_CHARS:
        head = f"{head} {CUT_MARK}"
    return f"{head} {entry.keep}" if entry.keep else head


def _mined(miner: TemplateMiner, entry: Entry, text: str) -> tuple[int, int | None]:
    """Mine an entry by its innermost cause (else its first line); the signature, and the
    signature of its head when it was mined by a cause."""
    head = mined_text(entry, text, miner.mask)
    cause = innermost_cause(text)
    if cause is None:
        return miner.add_masked(head), None
    # The head is mined as before, so its template (and fingerprint) is what it was.
    return miner.add_masked(mined_text(entry, cause, miner.mask)), miner.add_masked(head)


def _identities(miner: TemplateMiner, tids: list[int], accs: dict[int, _Acc]) -> list[str]:
    """The fingerprint each template is known by: its own, or for a template of traces only,
    the fingerprint of the template of its most frequent head (what was stored before
    traces were named by their cause), unless a template mined as it is, or a larger one of
    traces, already holds it."""
    mined = miner.templates
    own = [fingerprint(mined[tid].text) for tid in tids]
    taken = {fp for tid, fp in zip(tids, own, strict=True) if accs[tid].plain}
    out = list(own)
    traced = [n for n, tid in enumerate(tids) if not accs[tid].plain and accs[tid].heads]
    traced.sort(key=lambda n: (-accs[tids[n]].count, n))
    for n in traced:
        heads: dict[int, float] = {}
        for sid, weight in accs[tids[n]].heads.items():
            tid = miner.resolve(sid)
            heads[tid] = heads.get(tid, 0) + weight
        best = min(heads, key=lambda tid: (-heads[tid], tid))
        identity = fingerprint(mined[best].text)
        if identity not in taken:
            out[n] = identity
            taken.add(identity)
    return out


def _example(text: str) -> str:
    if len(text) <= STORED_EXAMPLE_CHARS:
        return text
    return text[: STORED_EXAMPLE_CHARS - 1] + "…"


def _dense(bins: dict[int, float]) -> tuple[float, ...]:
    return tuple(bins.get(at, 0.0) for at in range(TIME_BINS))


def _window_of(entries: Iterable[Entry]) -> WindowInfo:
    times = [e.ts_ns for e in entries]
    return WindowInfo(min(times, default=0), max(times, default=0) + 1)


def normalize(
    entries: Iterable[Entry],
    *,
    previous: Iterable[Entry] | None = None,
    window: WindowInfo | None = None,
    max_evidence: int = 200,
    max_examples: int = 3,
    lines_redacted: bool = False,
) -> NormalizeResult:
    """Redact and mine `entries` into templates; the best `max_evidence` become evidence.

    Messages are redacted before mining, so no secret reaches a template or an example.
    `lines_redacted`: each line was redacted as it was read (the query stage does it), so
    only what flatten made of lines (a value decoded from JSON or logfmt, lines joined into
    one event) is redacted again; a plain one-line message is the redacted line itself.
    Evidence is ordered best first and numbered `T1`, `T2`, ... in that order; findings cite
    those ids. `previous` are the entries of the window before (None: it was not read).
    """
    if window is None:
        entries = list(entries)
        window = _window_of(entries)
    span = max(window.end_ns - window.start_ns, 1)
    bin_ns = span // TIME_BINS + 1
    miner = TemplateMiner()
    redact_line = Redactor()  # remembers this job's lines and their shapes
    signatures: dict[int, _Acc] = {}
    pods: Counter[str] = Counter()  # error-or-warning entries per pod (read, not weighted)
    containers: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    redactions = total = 0
    for entry in entries:
        text = entry.message
        if not lines_redacted or entry.raw or "\n" in text:
            text, found = redact_line(text)
            redactions += found
        total += 1
        sid, head = _mined(miner, entry, text)
        acc = signatures.get(sid)
        if acc is None:
            acc = signatures[sid] = _Acc(first_ns=entry.ts_ns, last_ns=entry.ts_ns)
        weight = entry.weight
        if head is None:
            acc.plain = True
        else:
            acc.add_head(head, weight)
        acc.count += weight
        if weight != 1.0:
            acc.estimated = True
        acc.first_ns = min(acc.first_ns, entry.ts_ns)
        acc.last_ns = max(acc.last_ns, entry.ts_ns)
        if LEVEL_RANK[entry.level] > LEVEL_RANK[acc.level]:
            acc.level = entry.level
        if entry.pod and len(acc.pods) < MAX_NAMES:
            acc.pods.add(entry.pod)
        if entry.container and len(acc.containers) < MAX_NAMES:
            acc.containers.add(entry.container)
        if len(acc.examples) < max_examples:
            # The whole line as logged (a JSON object, a logfmt line), redacted.
            example = _example(redact(entry.raw)[0] if entry.raw else text)
            if example not in acc.examples:
                acc.examples.append(example)
        at = min(max((entry.ts_ns - window.start_ns) // bin_ns, 0), TIME_BINS - 1)
        acc.bins[at] = acc.bins.get(at, 0) + weight
        if LEVEL_RANK[entry.level] >= LEVEL_RANK[Level.WARN]:
            pods[entry.pod] += 1
            containers[entry.container] += 1
            nodes[entry.node] += 1
    before: dict[int, dict[int, float]] = {}
    previous_start = window.start_ns - span
    for entry in previous or ():
        text = entry.message
        if not lines_redacted or entry.raw or "\n" in text:
            text = redact_line(text)[0]
        sid = _mined(miner, entry, text)[0]
        at = min(max((entry.ts_ns - previous_start) // bin_ns, 0), TIME_BINS - 1)
        bins = before.setdefault(sid, {})
        bins[at] = bins.get(at, 0) + entry.weight

    templates: dict[int, _Acc] = {}
    earlier: dict[int, dict[int, float]] = {}
    for sid, acc in signatures.items():
        templates.setdefault(miner.resolve(sid), _Acc()).merge(acc, max_examples)
    for sid, bins in before.items():
        merged = earlier.setdefault(miner.resolve(sid), {})
        for at, weight in bins.items():
            merged[at] = merged.get(at, 0) + weight
    mined = miner.templates
    tids = list(templates)
    identities = _identities(miner, tids, templates)
    stats = [
        TemplateStats(
            template=mined[tid].text,
            level=templates[tid].level,
            count=max(round(templates[tid].count), 1),
            first_ns=templates[tid].first_ns,
            last_ns=templates[tid].last_ns,
            peak=max(round(max(templates[tid].bins.values())), 1),
            coverage=len(templates[tid].bins) / TIME_BINS,
            previous=round(sum(earlier.get(tid, {}).values())) if previous is not None else None,
        )
        for tid in tids
    ]
    # A previous window that held no line at all says nothing about how surprising a count
    # is (logs began, or were kept, only from this window on): the rate test is then unknown.
    rate_known = bool(before)
    series = [
        Series(
            level_rank=severity(s.level, s.template),
            template=s.template,
            count=templates[tid].count,
            first_ns=s.first_ns,
            last_ns=s.last_ns,
            bins=_dense(templates[tid].bins),
            previous=None if previous is None else sum(earlier.get(tid, {}).values()),
            previous_bins=None if previous is None else _dense(earlier.get(tid, {})),
            rate_known=rate_known,
        )
        for s, tid in zip(stats, tids, strict=True)
    ]
    span_of = Span(window.start_ns, window.end_ns)
    incident = find_incident(series, span_of)
    scores = [] if incident is None else score_causes(series, span_of, incident)[:MAX_CAUSES]
    steady = [own_onset(s, span_of) is None for s in series]
    ranked = rank(stats, Window(window.start_ns, window.end_ns), steady=steady)
    # The probable causes lead the evidence: the model reads them first, T1 names the cause.
    causes = [c.index for c in scores]
    lead = sorted((r for r in ranked if r.index in causes), key=lambda r: causes.index(r.index))
    ordered = lead + [r for r in ranked if r.index not in causes]
    evidence: dict[int, EvidenceItem] = {}
    for n, r in enumerate(ordered[:max_evidence], start=1):
        acc, s = templates[tids[r.index]], stats[r.index]
        evidence[r.index] = EvidenceItem(
            template_id=f"T{n}",
            template=s.template,
            level=acc.level,
            count=s.count,
            estimated=acc.estimated,
            first_seen=utc(acc.first_ns),
            last_seen=utc(acc.last_ns),
            pods=sorted(acc.pods),
            containers=sorted(acc.containers),
            examples=acc.examples,
            score=round(r.score, 4),
            fingerprint=identities[r.index],
            new=None if s.previous is None else s.previous == 0,
            steady=r.steady,
        )
    searched = Searched(
        query=window.query,
        start=utc(window.start_ns),
        end=utc(window.end_ns),
        lines_scanned=total if window.lines_scanned is None else window.lines_scanned,
        coverage=window.coverage,
    )
    findings = compute_findings(
        [Template(stats[r.index], r, evidence.get(r.index)) for r in ordered],
        causes=scores,
        incident=incident,
        searched=searched,
        previous=window.previous,
        affected_pods=dict(pods),
        affected_containers=dict(containers),
        affected_nodes=dict(nodes),
    )
    return NormalizeResult(
        evidence=list(evidence.values()),
        entries=total,
        templates=len(templates),
        redactions=redactions,
        findings=findings,
    )


def run(
    entries: Iterable[Entry],
    *,
    limit: int,
    previous: Iterable[Entry] | None = None,
    window: WindowInfo | None = None,
) -> tuple[NormalizeResult, NormalizeCounts]:
    """The normalize stage: evidence for a request that shows the model `limit` templates.

    The entries come from lines the query stage redacted (see `lines_redacted`). More
    evidence than `limit` is kept (at least 50): the prompt drops what does not fit.
    """
    result = normalize(
        entries,
        previous=previous,
        window=window,
        max_evidence=max(limit, 50),
        lines_redacted=True,
    )
    counts = NormalizeCounts(
        entries=result.entries,
        templates=result.templates,
        redactions=result.redactions,
        evidence=len(result.evidence),
    )
    return result, counts
