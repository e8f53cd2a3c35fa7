"""The findings scorer on small synthetic series: when there is an incident, which templates
are candidates, and what each score component rewards."""

from __future__ import annotations

from workers.evidence.scorer import (
    Series,
    Span,
    Weights,
    find_incident,
    own_onset,
    score_causes,
    weights_in_force,
)

BINS = 60
S = 10**9
SPAN = Span(0, 3600 * S)  # one hour, one bin per minute
FATAL, ERROR, WARN, INFO = 5, 4, 3, 1


def series(
    template: str,
    level: int,
    now: dict[int, float],
    before: dict[int, float] | None = None,
) -> Series:
    """A template with `now[minute] = lines` in the window and `before` in the one before."""
    bins = tuple(now.get(b, 0.0) for b in range(BINS))
    previous = before or {}
    minutes = sorted(m for m, n in now.items() if n)
    return Series(
        level_rank=level,
        template=template,
        count=sum(now.values()),
        first_ns=minutes[0] * 60 * S,
        last_ns=minutes[-1] * 60 * S,
        bins=bins,
        previous=float(sum(previous.values())),
        previous_bins=tuple(previous.get(b, 0.0) for b in range(BINS)),
    )


def every_minute(lines: float, start: int = 0, end: int = BINS) -> dict[int, float]:
    return {b: lines for b in range(start, end)}


def top(found: list[Series]) -> str | None:
    incident = find_incident(found, SPAN)
    if incident is None:
        return None
    scores = score_causes(found, SPAN, incident)
    return found[scores[0].index].template if scores else None


def test_a_healthy_window_has_no_incident_even_with_a_deploy() -> None:
    found = [
        series("GET /healthz 200", INFO, every_minute(30), every_minute(30)),
        series("Starting api version 2.4.1", INFO, {20: 1}),
        series("cache miss ratio high", WARN, every_minute(2), every_minute(2)),
    ]
    assert find_incident(found, SPAN) is None


def test_an_error_as_loud_as_before_is_no_incident() -> None:
    found = [series("duplicate key", ERROR, every_minute(20), every_minute(20))]
    assert find_incident(found, SPAN) is None


def test_errors_that_ended_before_the_window_are_no_incident() -> None:
    found = [series("connection refused", ERROR, {0: 1}, every_minute(40, 10, 60))]
    assert find_incident(found, SPAN) is None


def test_a_new_error_early_in_the_window_is_the_incident_and_its_cause() -> None:
    found = [
        series("GET / 200", INFO, every_minute(30), every_minute(30)),
        series("column legacy_status does not exist", ERROR, every_minute(12, 3)),
    ]
    incident = find_incident(found, SPAN)
    assert incident is not None and incident.onset_ns == 3 * 60 * S
    assert top(found) == "column legacy_status does not exist"


def test_a_cause_seen_a_few_times_before_that_grows_a_hundredfold_has_its_own_onset() -> None:
    grows = series("server reached max_children", WARN, every_minute(40, 30), {5: 1, 40: 2})
    assert own_onset(grows, SPAN) == 30 * 60 * S
    found = [grows, series("upstream 502 bad gateway", ERROR, every_minute(90, 31))]
    assert top(found) == "server reached max_children"


def test_a_template_as_frequent_as_before_is_steady_background() -> None:
    steady = series("retrying flush", WARN, every_minute(3), every_minute(3))
    assert own_onset(steady, SPAN) is None


def test_an_old_one_off_error_is_not_the_cause_of_a_later_burst() -> None:
    found = [
        series("KeyError: 'XK' in handler", ERROR, {5: 1}),
        series("worker exited prematurely: signal 9 (SIGKILL)", ERROR, every_minute(2, 40)),
        series("task failed: worker lost", ERROR, every_minute(20, 40)),
    ]
    assert top(found) == "worker exited prematurely: signal 9 (SIGKILL)"


def test_a_warning_established_before_the_errors_is_named_even_when_louder() -> None:
    found = [
        series("lookup timed out, retrying in 1s", WARN, every_minute(40, 20)),
        series("request failed", ERROR, every_minute(25, 24)),
    ]
    assert top(found) == "lookup timed out, retrying in 1s"


def test_one_early_line_of_a_symptom_stream_does_not_make_it_a_precursor() -> None:
    rejected = {**every_minute(30, 21), 19: 1}
    found = [
        series("token rejected reason=unknown kid", WARN, rejected),
        series("jwks refresh did not contain kid", ERROR, {20: 1, 30: 1, 40: 1}),
    ]
    assert top(found) == "jwks refresh did not contain kid"


def test_a_change_at_info_just_before_the_errors_is_a_candidate() -> None:
    found = [
        series("feature flag new-pricing enabled for 100% of users", INFO, {29: 1}),
        series("price lookup failed", ERROR, every_minute(30, 30)),
    ]
    incident = find_incident(found, SPAN)
    assert incident is not None
    scores = score_causes(found, SPAN, incident)
    change = next(c for c in scores if c.change)
    assert change.change == "feature flag" and change.components["change"] > 0.5
    assert top(found) == "feature flag new-pricing enabled for 100% of users"


ORDER_FAILED = "order checkout request failed while calling the tax service upstream"


def test_switching_a_component_off_changes_the_ranking_it_decided() -> None:
    found = [
        series("lookup timed out, retrying in 1s", WARN, every_minute(40, 20)),
        series(ORDER_FAILED, ERROR, every_minute(25, 24)),
    ]
    assert top(found) == "lookup timed out, retrying in 1s"
    with weights_in_force(Weights().without("lead")):
        assert top(found) == ORDER_FAILED
