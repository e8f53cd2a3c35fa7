"""Findings computed from the evidence alone: probable causes with reasons anyone can check,
the timeline of onsets, what is new since the previous window, who is affected.

Probable cause, by rule: an error-or-worse template that began in the window (not steady
background) and, best, is followed within seconds by other trouble; among those, the
earliest; and before it, a warning that it followed (the trouble first seen as a warning).
Confidence is high when it is new (absent from the previous window) and others followed it,
medium when one of the two holds, low otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.schemas import EvidenceItem
from shared.schemas.findings import (
    Affected,
    Findings,
    Follower,
    PreviousWindow,
    ProbableCause,
    Searched,
    TimelineEntry,
)
from workers.evidence.ranking import Ranked, TemplateStats, is_alarming, is_error, is_new

MAX_CAUSES = 3
BURST_S = 5.0
MOMENT_S = 0.5
MAX_TIMELINE = 12
MAX_FOLLOWERS = 5
MAX_AFFECTED = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(ts_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


@dataclass(frozen=True)
class Template:
    """One template as findings see it: its stats, its rank, its evidence id (if shown)."""

    stats: TemplateStats
    ranked: Ranked
    item: EvidenceItem | None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _by_onset_then_rarity(stats: Sequence[TemplateStats], pool: Sequence[Ranked]) -> list[Ranked]:
    """Followed templates first; then by onset, where onsets within BURST_S of each other count
    as one moment (an incident starts many things at once) and, within it, the rarest line
    wins (causes are rare, their consequences loud), then the most severe, then the earliest."""
    by_onset = sorted(pool, key=lambda r: stats[r.index].first_ns)
    burst: dict[int, int] = {}
    start = None
    for r in by_onset:
        onset = stats[r.index].first_ns
        if start is None or onset - start > BURST_S * 1e9:
            start = onset
        burst[r.index] = start
    return sorted(
        by_onset,
        key=lambda r: (
            not r.followers,
            burst[r.index],
            stats[r.index].count,
            -r.severity,
            stats[r.index].first_ns,
        ),
    )


def cause_candidates(stats: Sequence[TemplateStats], ranked: Sequence[Ranked]) -> list[int]:
    """Indexes of the probable causes, best first.

    Error-or-worse templates that began in the window (not steady), ordered as
    `_by_onset_then_rarity` says. A warning the first of them followed comes before it (a
    memory alarm before the publish timeouts, a lock wait before the statement timeouts, a
    Sentinel failover before the connection errors): a program that only warned about the
    trouble it saw first is still where the trouble began. Such a warning must begin before
    every error (by more than MOMENT_S: a warning logged with an error is the same event),
    not be steady, and be no louder than the error it explains (a warning that outnumbers
    the errors after it is a symptom: pool saturation, rejected tokens).
    """
    errors = _by_onset_then_rarity(
        stats, [r for r in ranked if is_error(r.severity) and not r.steady]
    )
    if not errors:
        return []
    first = errors[0]
    earliest_error = min(stats[r.index].first_ns for r in errors)
    warnings = [
        r
        for r in ranked
        if is_alarming(r.severity)
        and not is_error(r.severity)
        and not r.steady
        and first.index in r.followers
        and stats[r.index].first_ns < earliest_error - MOMENT_S * 1e9
        and stats[r.index].count <= stats[first.index].count
    ]
    precursors = _closest_first(stats, warnings)[:1]
    return [r.index for r in (precursors + errors)[:MAX_CAUSES]]


def _closest_first(stats: Sequence[TemplateStats], pool: Sequence[Ranked]) -> list[Ranked]:
    """The warnings of the moment closest to the errors (onsets within MOMENT_S of the latest
    one), earliest first, then the rarest: not the banner of a long change (a migration that
    started a second before its lock wait) but what happened just before the errors, and in
    that moment what came first (the broker's alarm, not the client told it is blocked)."""
    if not pool:
        return []
    latest = max(stats[r.index].first_ns for r in pool)
    moment = [r for r in pool if latest - stats[r.index].first_ns <= MOMENT_S * 1e9]
    return sorted(moment, key=lambda r: (stats[r.index].first_ns, stats[r.index].count))


def _cause(
    template: Template, by_index: dict[int, Template], first: Template | None
) -> ProbableCause | None:
    item = template.item
    if item is None:
        return None
    stats = template.stats
    followers = [
        by_index[j] for j in template.ranked.followers if by_index.get(j) and by_index[j].item
    ]
    followers.sort(key=lambda t: t.stats.first_ns)
    new = is_new(stats)
    onset = f"{item.level.value.upper()} at {utc(stats.first_ns):%H:%M:%S}"
    if (first is None or first.item is None) and not is_error(template.ranked.severity):
        reasons = [f"a warning the first errors followed: {onset}"]
    elif first is None or first.item is None:
        reasons = [f"the earliest error-or-worse template that others followed: {onset}"]
        if not followers:
            reasons = [f"the earliest error-or-worse template to begin in the window: {onset}"]
    else:
        after = (stats.first_ns - first.stats.first_ns) / 1e9
        reasons = [f"an alternative: {onset}, {after:+.0f} s from {first.item.template_id}"]
    if new is True:
        reasons.append("absent from the previous window of the same length")
    elif new is None:
        reasons.append("the previous window could not be read: novelty unknown")
    if followers:
        lines = sum(f.stats.count for f in followers)
        spread = (max(f.stats.first_ns for f in followers) - stats.first_ns) / 1e9
        reasons.append(
            f"{len(followers)} other warning-or-worse templates ({lines:,} lines) began within "
            f"{max(spread, 0):.0f} s after it"
        )
    score = (new is True) + bool(followers) - (first is not None)
    confidence = "high" if score >= 2 else "medium" if score == 1 else "low"
    return ProbableCause(
        template_id=item.template_id,
        fingerprint=item.fingerprint,
        template=item.template,
        level=item.level,
        first_seen=item.first_seen,
        count=item.count,
        confidence=confidence,
        reasons=reasons,
        followed_by=[
            Follower(
                template_id=f.item.template_id,
                level=f.item.level,
                count=f.stats.count,
                after_s=round((f.stats.first_ns - stats.first_ns) / 1e9, 3),
            )
            for f in followers[:MAX_FOLLOWERS]
            if f.item is not None
        ],
    )


def probable_causes(templates: Sequence[Template], order: Sequence[int]) -> list[ProbableCause]:
    """The causes `cause_candidates` chose, the first with its followers, then alternatives."""
    by_index = {t.ranked.index: t for t in templates}
    chosen = [by_index[i] for i in order if i in by_index]
    causes = [_cause(t, by_index, chosen[0] if n else None) for n, t in enumerate(chosen)]
    return [c for c in causes if c is not None]


def timeline(templates: Sequence[Template]) -> list[TimelineEntry]:
    alarming = [t for t in templates if is_alarming(t.ranked.severity) and t.item is not None]
    alarming.sort(key=lambda t: t.stats.first_ns)
    return [
        TimelineEntry(
            template_id=t.item.template_id,
            level=t.item.level,
            first_seen=t.item.first_seen,
            last_seen=t.item.last_seen,
            count=t.item.count,
            new=is_new(t.stats),
            template=_short(t.item.template),
        )
        for t in alarming[:MAX_TIMELINE]
        if t.item is not None
    ]


def _lines(count: int) -> str:
    return f"{count:,} line" if count == 1 else f"{count:,} lines"


def _top(counts: dict[str, int]) -> dict[str, int]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ordered[:MAX_AFFECTED])


def summarize(
    causes: Sequence[ProbableCause],
    *,
    searched: Searched,
    only_low: bool,
    steady_errors: int,
    affected: Affected,
) -> str:
    """A few plain sentences, the same every time for the same evidence; how much of the
    window was read when it was not all of it."""
    text = _summary(
        causes, searched=searched, only_low=only_low, steady_errors=steady_errors, affected=affected
    )
    coverage = searched.coverage
    if coverage is not None and coverage.mode != "complete" and searched.lines_scanned:
        text += " " + coverage.describe()
    return text


def _summary(
    causes: Sequence[ProbableCause],
    *,
    searched: Searched,
    only_low: bool,
    steady_errors: int,
    affected: Affected,
) -> str:
    window = f"{searched.start:%Y-%m-%d %H:%M}–{searched.end:%H:%M} UTC"
    if searched.lines_scanned == 0:
        return (
            f"No log line matched in {window} (query: {searched.query}); "
            "there is nothing to analyse."
        )
    if only_low:
        return (
            f"{searched.lines_scanned:,} lines in {window}, none error-or-worse: only "
            "info and warning messages, so there is no root cause to report."
        )
    if not causes:
        note = f" {steady_errors} error templates are steady background" if steady_errors else ""
        return (
            f"No error began in {window}:{note} (present before the window or all through "
            "it), so no new root cause stands out."
        )
    first = causes[0]
    parts = [
        f"Probable root cause ({first.confidence} confidence): {first.template_id} "
        f'"{_short(first.template, 100)}" ({first.level.value.upper()}, first at '
        f"{first.first_seen:%H:%M:%S}, {_lines(first.count)})."
    ]
    if first.followed_by:
        listed = ", ".join(
            f"{f.template_id} {f.level.value.upper()} ({_lines(f.count)}, +{f.after_s:.0f} s)"
            for f in first.followed_by[:3]
        )
        parts.append(f"Followed by {listed}.")
    if affected.pods:
        pods = list(affected.pods)
        more = f" and {len(pods) - 3} more" if len(pods) > 3 else ""
        parts.append(f"Pods with warnings or errors: {', '.join(pods[:3])}{more}.")
    return " ".join(parts)


def compute_findings(
    templates: Sequence[Template],
    *,
    causes_order: Sequence[int],
    searched: Searched,
    previous: PreviousWindow | None,
    affected_pods: dict[str, int],
    affected_containers: dict[str, int],
    affected_nodes: dict[str, int],
) -> Findings:
    """The findings of one window's templates (see the module docstring)."""
    if searched.lines_scanned == 0 or not templates:
        searched = searched.model_copy(update={"lines_scanned": 0})
        return Findings(
            empty=True,
            summary=summarize(
                [], searched=searched, only_low=False, steady_errors=0, affected=Affected()
            ),
            searched=searched,
            previous_window=previous,
        )
    only_low = not any(is_error(t.ranked.severity) for t in templates)
    causes = [] if only_low else probable_causes(templates, causes_order)
    steady_errors = sum(1 for t in templates if is_error(t.ranked.severity) and t.ranked.steady)
    affected = Affected(
        pods=_top(affected_pods),
        containers=_top(affected_containers),
        nodes=_top({k: v for k, v in affected_nodes.items() if k}),
    )
    new_ids = [
        t.item.template_id for t in templates if t.item is not None and is_new(t.stats) is True
    ]
    return Findings(
        empty=False,
        only_low_severity=only_low,
        summary=summarize(
            causes,
            searched=searched,
            only_low=only_low,
            steady_errors=steady_errors,
            affected=affected,
        ),
        searched=searched,
        previous_window=previous,
        probable_causes=causes,
        timeline=timeline(templates),
        new_templates=sorted(new_ids, key=lambda tid: int(tid[1:])),
        affected=affected,
    )
