"""Every case, and rendering a case's logs into kubelet-layout files."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from eval.incidents import cases_app, cases_db, cases_k8s, cases_large, cases_net
from eval.incidents.builder import Builder
from eval.incidents.datafile import DEV_DIR, FINAL_DIR, load_cases, spec_of
from eval.incidents.model import Case
from eval.incidents.spec import Spec

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"
"""Where `case.yaml` files (and the pods of small cases) live: `eval/cases/<name>/`."""
SMALL_CASE_LINES = 3_000

SPECS: tuple[Spec, ...] = (
    *cases_db.SPECS,
    *cases_k8s.SPECS,
    *cases_net.SPECS,
    *cases_app.SPECS,
    *cases_large.SPECS,
)


SUITES = ("dev", "heldout", "final")
"""`dev`: the golden cases above, then the data files of `eval/dev/cases/`, looked at while
tuning the rules. `heldout`: the data files of `eval/heldout/cases/`, written from public
stories without looking at what the rules do.
`final`: the data files of `eval/heldout/final/`, written the same way after the scorer was
done, so no tuning ever saw them (reported on their own)."""


@cache
def dev_file_specs() -> tuple[Spec, ...]:
    """The dev cases written as data files (`eval/dev/cases/`), read once per process."""
    return tuple(spec_of(case_file) for case_file in load_cases(DEV_DIR / "cases", "dev"))


@cache
def heldout_specs() -> tuple[Spec, ...]:
    """The held-out cases, read from their data files (once per process)."""
    return tuple(spec_of(case_file) for case_file in load_cases())


@cache
def final_specs() -> tuple[Spec, ...]:
    """The `final` suite's cases, read from their data files (once per process)."""
    return tuple(spec_of(case_file) for case_file in load_cases(FINAL_DIR, suite="final"))


def _suite_specs(suite: str) -> tuple[Spec, ...]:
    if suite == "dev":
        return (*SPECS, *dev_file_specs())
    return heldout_specs() if suite == "heldout" else final_specs()


def all_cases(suite: str = "dev") -> list[Case]:
    """Every case of `suite` (one of SUITES, or `all` for every suite), in a stable order."""
    if suite not in (*SUITES, "all"):
        raise ValueError(f"unknown suite {suite!r}")
    chosen = SUITES if suite == "all" else (suite,)
    return [spec.case for name in chosen for spec in _suite_specs(name)]


def golden_cases() -> list[Case]:
    """The dev cases of the Python tables, the ones committed under `eval/cases/<name>/`."""
    return [spec.case for spec in SPECS]


def get_case(name: str) -> Case:
    """The case called `name` (any suite); KeyError if there is none."""
    return _spec(name).case


def _spec(name: str) -> Spec:
    spec = next((s for s in SPECS if s.case.name == name), None)
    for more in (dev_file_specs, heldout_specs, final_specs):  # data files are read lazily
        if spec is None:
            spec = next((s for s in more() if s.case.name == name), None)
    if spec is None:
        raise KeyError(name)
    return spec


def render_case(case: Case) -> dict[str, bytes]:
    """The case's log files: relative path under the pods dir to content (deterministic)."""
    builder = Builder(case)
    _spec(case.name).generate(builder)
    return builder.files()


def write_case(case: Case, root: Path) -> Path:
    """Write the case's pod logs under `root/<case.name>/pods` (replacing it); return that dir."""
    pods = root / case.name / "pods"
    if pods.exists():
        shutil.rmtree(pods)
    for rel, content in render_case(case).items():
        path = pods / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    pods.mkdir(parents=True, exist_ok=True)
    return pods


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def case_to_dict(case: Case) -> dict[str, Any]:
    """The case as written to `eval/cases/<name>/case.yaml`."""
    return {
        "name": case.name,
        "story": case.story,
        "namespace": case.namespace,
        "window": {"start": _rfc3339(case.start), "end": _rfc3339(case.end)},
        "question": case.question,
        "scan_limit": case.scan_limit,
        "expected": {
            "cause_pattern": case.expected.cause_pattern,
            "cause_keywords": list(case.expected.cause_keywords),
            "empty": case.expected.empty,
            "low_severity_only": case.expected.low_severity_only,
        },
        "forbidden": list(case.forbidden),
        "tags": list(case.tags),
        "approx_lines": case.approx_lines,
    }


def case_yaml(case: Case) -> str:
    """`case_to_dict` as YAML text (stable: same text every run)."""
    return yaml.safe_dump(
        case_to_dict(case), sort_keys=False, allow_unicode=True, width=96, default_flow_style=False
    )


def is_small(case: Case) -> bool:
    """Small cases also keep their generated pods under `eval/cases/<name>/pods`."""
    return case.approx_lines <= SMALL_CASE_LINES
