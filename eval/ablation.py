"""Ablation of the findings scorer: strict top-1 with each score component switched off.

Each case runs through the service's pipeline (the `ours` strategy, no model: the findings do
not depend on it) once with every component and once per component with that one at weight
0, so a component that carries no weight shows as no change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.report import table
from eval.incidents import Case, write_case
from eval.runner import CACHE, request_for, run_strategy, score, strict_summary
from shared.settings import Settings
from workers.evidence.scorer import DEFAULT_WEIGHTS, Weights, weights_in_force

ALL = "all components"


def variants() -> list[tuple[str, Weights]]:
    """The full weights, then each component switched off."""
    return [(ALL, DEFAULT_WEIGHTS)] + [
        (f"without {name}", DEFAULT_WEIGHTS.without(name)) for name in Weights.components()
    ]


def run(
    cases: Sequence[Case],
    settings: Settings,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Strict figures per variant and suite: `{variant: {suite: strict_summary}}`."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, weights in variants():
        scores = []
        with weights_in_force(weights):
            for case in cases:
                pods = write_case(case, CACHE)
                outcome = run_strategy("ours", request_for(case), pods, None, settings)
                scores.append(score(case, "ours", "stub", outcome))
        out[name] = {
            suite: strict_summary([s for s in scores if s.suite == suite])
            for suite in sorted({s.suite for s in scores})
        }
        progress(
            f"{name}: " + ", ".join(f"{k} {v['strict_top1']:.3f}" for k, v in out[name].items())
        )
    return out


def markdown(result: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The ablation as a table: strict top-1 (cases right) per suite, and the change."""
    suites = sorted({suite for by_suite in result.values() for suite in by_suite})
    full = result[ALL]
    rows = []
    for name, by_suite in result.items():
        cells = [name]
        for suite in suites:
            figures = by_suite[suite]
            top1 = figures["strict_top1"] or 0.0
            right = round(top1 * figures["cases"])
            delta = right - round((full[suite]["strict_top1"] or 0.0) * full[suite]["cases"])
            change = "" if name == ALL else f" ({delta:+d})"
            cells.append(f"{top1:.3f} ({right}/{figures['cases']}){change}")
        rows.append(cells)
    return table(["weights", *(f"{suite} strict top-1" for suite in suites)], rows)
