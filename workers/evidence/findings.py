"""Findings computed from the evidence alone: probable causes with reasons anyone can check,
the timeline of onsets and changes, what is new since the previous window, who is affected.

The probable causes are chosen by `scorer.py` from the counts (the error rate's change
point, each template's rate against the previous window, its lead and association with the
burst); this module turns its scores into reasons a reader can check, and the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

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
from workers.evidence.changes import change_kind
from workers.evidence.ranking import Ranked, TemplateStats, is_alarming, is_error, is_new
from workers.evidence.scorer import CauseScore, Incident, confidence

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


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _p_value(surprise: float) -> str:
    return (
        "p < 1e-12"
        if surprise >= 12
        else f"p ≈ 1e-{surprise:.0f}"
        if surprise >= 1
        else (f"p ≈ {10**-surprise:.2f}")
    )


def _reasons(c: CauseScore, t: Template, incident: Incident, runner_up: float | None) -> list[str]:
    """The score's components in words, each a fact a reader can check in the evidence."""
    stats, item = t.stats, t.item
    assert item is not None
    lead_s = (incident.onset_ns - c.onset_ns) / 1e9
    onset = f"{item.level.value.upper()} from {utc(c.onset_ns):%H:%M:%S}"
    when = (
        f"{_ago(lead_s)} before the errors rose at {utc(incident.onset_ns):%H:%M:%S}"
        if lead_s > 0.5
        else "as the errors rose"
        if abs(lead_s) <= 0.5
        else f"{_ago(lead_s)} after the errors rose at {utc(incident.onset_ns):%H:%M:%S}"
    )
    reasons = [f"{onset}, {when}"]
    if c.change:
        reasons.append(f"announces a change ({c.change})")
    if stats.previous is None:
        reasons.append("the previous window could not be read: its rate before is unknown")
    elif c.surprise is None:
        reasons.append("the previous window held no line at all: its rate before is unknown")
    elif stats.previous == 0:
        reasons.append(
            f"absent from the previous window of the same length; {_lines(stats.count)} now "
            f"({_p_value(c.surprise)})"
        )
    else:
        ratio = stats.count / stats.previous
        reasons.append(
            f"{_lines(stats.previous)} in the previous window, {stats.count:,} now "
            f"(×{ratio:,.1f}, {_p_value(c.surprise)})"
        )
    if c.correlation >= 0.5:
        reasons.append(f"its rate moves with the other errors (r = {c.correlation:.2f})")
    elif c.components["association"] >= 0.5:
        reasons.append("active up to the moment the errors rose")
    else:
        reasons.append("not active near the moment the errors rose: weakly associated")
    parts = ", ".join(f"{k} {v:.2f}" for k, v in c.components.items())
    margin = "" if runner_up is None else f"; next candidate {runner_up:.2f}"
    reasons.append(f"score {c.score:.2f} ({parts}{margin})")
    return reasons


def _cause(
    c: CauseScore,
    template: Template,
    by_index: dict[int, Template],
    incident: Incident,
    *,
    confidence: Literal["high", "medium", "low"],
    runner_up: float | None,
) -> ProbableCause | None:
    item = template.item
    if item is None:
        return None
    stats = template.stats
    followers = [
        by_index[j] for j in template.ranked.followers if by_index.get(j) and by_index[j].item
    ]
    followers.sort(key=lambda t: t.stats.first_ns)
    reasons = _reasons(c, template, incident, runner_up)
    if followers:
        lines = sum(f.stats.count for f in followers)
        spread = (max(f.stats.first_ns for f in followers) - stats.first_ns) / 1e9
        reasons.insert(
            -1,
            f"{len(followers)} other warning-or-worse "
            f"{'template' if len(followers) == 1 else 'templates'} ({lines:,} lines) began within "
            f"{max(spread, 0):.0f} s after it",
        )
    return ProbableCause(
        template_id=item.template_id,
        fingerprint=item.fingerprint,
        template=item.template,
        level=item.level,
        first_seen=item.first_seen,
        count=item.count,
        confidence=confidence,
        reasons=reasons,
        score=round(c.score, 3),
        components={k: round(v, 3) for k, v in c.components.items()},
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


def probable_causes(
    templates: Sequence[Template], scores: Sequence[CauseScore], incident: Incident | None
) -> list[ProbableCause]:
    """The scorer's best candidates, the first with its confidence, then alternatives (low)."""
    if incident is None or not scores:
        return []
    by_index = {t.ranked.index: t for t in templates}
    out = []
    for n, c in enumerate(scores[:MAX_CAUSES]):
        template = by_index.get(c.index)
        if template is None:
            continue
        runner_up = scores[n + 1].score if n + 1 < len(scores) else None
        level = confidence(scores) if n == 0 else "low"
        cause = _cause(c, template, by_index, incident, confidence=level, runner_up=runner_up)
        if cause is not None:
            out.append(cause)
    return out


def timeline(templates: Sequence[Template]) -> list[TimelineEntry]:
    """Warning-or-worse templates and changes (at any level), by onset."""
    changes = {t.ranked.index: change_kind(t.stats.template) for t in templates}
    shown = [
        t
        for t in templates
        if t.item is not None and (is_alarming(t.ranked.severity) or changes[t.ranked.index])
    ]
    shown.sort(key=lambda t: t.stats.first_ns)
    return [
        TimelineEntry(
            template_id=t.item.template_id,
            level=t.item.level,
            first_seen=t.item.first_seen,
            last_seen=t.item.last_seen,
            count=t.item.count,
            new=is_new(t.stats),
            template=_short(t.item.template),
            change=changes[t.ranked.index],
        )
        for t in shown[:MAX_TIMELINE]
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
            f"No error began in {window} and the error rate did not rise:{note} (as loud "
            "before the window as in it), so there is no incident to explain."
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
    causes: Sequence[CauseScore],
    incident: Incident | None,
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
    chosen = [] if only_low else probable_causes(templates, causes, incident)
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
            chosen,
            searched=searched,
            only_low=only_low,
            steady_errors=steady_errors,
            affected=affected,
        ),
        searched=searched,
        previous_window=previous,
        probable_causes=chosen,
        onset=None if incident is None else utc(incident.onset_ns),
        timeline=timeline(templates),
        new_templates=sorted(new_ids, key=lambda tid: int(tid[1:])),
        affected=affected,
    )
