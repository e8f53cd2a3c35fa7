"""Every case, and rendering a case's logs into kubelet-layout files."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from eval.incidents import cases_app, cases_db, cases_k8s, cases_large, cases_net
from eval.incidents.builder import Builder
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


def all_cases() -> list[Case]:
    """Every golden case, in a stable order."""
    return [spec.case for spec in SPECS]


def get_case(name: str) -> Case:
    """The case called `name`; KeyError if there is none."""
    return _spec(name).case


def _spec(name: str) -> Spec:
    for spec in SPECS:
        if spec.case.name == name:
            return spec
    raise KeyError(name)


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
