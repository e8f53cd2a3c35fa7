"""Pure backfill logic: the items of a backfill, the identity of an analysed request, the
summary of a result a roll-up needs, and how a finding absorbs a new sighting."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from shared.schemas import AnalysisRequest, Filters, JobResult
from shared.schemas.backfills import BackfillItem, BackfillRequest, Finding, RollupRow, Sighting
from shared.schemas.levels import LEVEL_RANK, Level
from shared.schemas.request import TimeRange

RECENT_SIGHTINGS = 10


def windows(time_range: TimeRange, request: BackfillRequest) -> list[TimeRange]:
    """Consecutive windows of `request.window` covering `time_range` (the last one shorter)."""
    step = request.window_length
    out: list[TimeRange] = []
    start = time_range.start
    while start < time_range.end:
        end = min(start + step, time_range.end)
        out.append(TimeRange(start=start, end=end))
        start = end
    return out


def item_count(request: BackfillRequest, namespaces: int) -> int:
    """How many analyses a backfill over `namespaces` namespaces makes (without listing them)."""
    span = request.time_range.end - request.time_range.start
    per_namespace = -(-span // request.window_length)
    return namespaces * per_namespace


def item_request(request: BackfillRequest, namespace: str, window: TimeRange) -> AnalysisRequest:
    """The analysis of one (namespace, window): the backfill's options, that namespace."""
    filters = Filters(namespace=namespace, **request.filters.model_dump())
    return AnalysisRequest(
        time_range=window,
        filters=filters,
        limit=request.limit,
        scan_limit=request.scan_limit,
        log_filter=request.log_filter,
        question=request.question,
    )


def request_hash(owner: str, tenant: str | None, request: AnalysisRequest) -> str:
    """Content hash of the normalized request, per owner and tenant: equal requests are one
    analysis (a result is never served across keys: their scopes may differ)."""
    normalized = request.model_dump_json(exclude_defaults=False)
    return hashlib.sha256(f"{owner}\0{tenant or ''}\0{normalized}".encode()).hexdigest()


def result_summary(result: JobResult) -> dict[str, object]:
    """What a roll-up or a history list needs of a result: lines at error-or-worse and at
    warning, new findings (probable causes absent from the previous window), the first
    cause's template, the model, tokens generated and time to first token."""
    error_rank = LEVEL_RANK[Level.ERROR]
    errors = sum(i.count for i in result.evidence if LEVEL_RANK[i.level] >= error_rank)
    warnings = sum(i.count for i in result.evidence if i.level is Level.WARN)
    findings = result.findings
    causes = findings.probable_causes if findings else []
    new_ids = set(findings.new_templates) if findings else set()
    return {
        "error_lines": errors,
        "warning_lines": warnings,
        "new_findings": sum(1 for c in causes if c.template_id in new_ids),
        "cause": causes[0].template if causes else None,
        "model": result.model,
        "tokens_generated": result.tokens_generated,
        "ttft_s": result.time_to_first_token_s,
    }


def rollup(items: Sequence[BackfillItem]) -> list[RollupRow]:
    """Per namespace: error lines, new findings, the window with most errors, the causes;
    ranked by new findings, then error volume."""
    by_namespace: dict[str, list[BackfillItem]] = {}
    for item in items:
        by_namespace.setdefault(item.namespace, []).append(item)
    rows = []
    for namespace, group in by_namespace.items():
        scored = [i for i in group if i.error_lines is not None]
        worst = max(scored, key=lambda i: i.error_lines or 0, default=None)
        causes = list(dict.fromkeys(i.cause for i in group if i.cause))
        rows.append(
            RollupRow(
                namespace=namespace,
                error_lines=sum(i.error_lines or 0 for i in group),
                new_findings=sum(i.new_findings or 0 for i in group),
                worst_window=worst.start if worst is not None and worst.error_lines else None,
                causes=causes[:5],
            )
        )
    rows.sort(key=lambda r: (-r.new_findings, -r.error_lines, r.namespace))
    return rows


def absorb(
    existing: Finding | None,
    *,
    namespace: str,
    fingerprint: str,
    template: str,
    level: Level,
    first_seen: datetime,
    count: int,
    sighting: Sighting,
) -> Finding | None:
    """`existing` with one more sighting (None when this job was already counted)."""
    if existing is None:
        return Finding(
            namespace=namespace,
            fingerprint=fingerprint,
            template=template,
            level=level,
            first_seen=first_seen,
            last_seen=sighting.end,
            sightings=1,
            lines=count,
            recent=[sighting],
        )
    if any(s.job_id == sighting.job_id for s in existing.recent):
        return None
    return existing.model_copy(
        update={
            "template": template,
            "level": max(existing.level, level, key=LEVEL_RANK.__getitem__),
            "first_seen": min(existing.first_seen, first_seen),
            "last_seen": max(existing.last_seen, sighting.end),
            "sightings": existing.sightings + 1,
            "lines": existing.lines + count,
            "recent": [sighting, *existing.recent][:RECENT_SIGHTINGS],
        }
    )


def merge_findings(a: Finding, b: Finding) -> Finding:
    """One finding from two records of the same (namespace, fingerprint) kept apart (before
    and after findings were stored per tenant); a sighting both hold counts once."""
    in_b = {s.job_id for s in b.recent}
    both = [s for s in a.recent if s.job_id in in_b]
    by_job = {s.job_id: s for s in (*b.recent, *a.recent)}
    recent = sorted(by_job.values(), key=lambda s: (s.end, s.job_id), reverse=True)
    newer = a if a.last_seen >= b.last_seen else b
    return a.model_copy(
        update={
            "template": newer.template,
            "level": max(a.level, b.level, key=LEVEL_RANK.__getitem__),
            "first_seen": min(a.first_seen, b.first_seen),
            "last_seen": max(a.last_seen, b.last_seen),
            "sightings": a.sightings + b.sightings - len(both),
            "lines": a.lines + b.lines - sum(s.count for s in both),
            "recent": recent[:RECENT_SIGHTINGS],
        }
    )
