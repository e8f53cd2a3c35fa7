"""A job result with one probable cause, as the findings store and its readers see it."""

from __future__ import annotations

from datetime import datetime

from shared.schemas import Findings, JobResult, Level
from shared.schemas.findings import ProbableCause, Searched

DISK_FULL = "could not extend file: No space left on device"


def result_with_cause(
    fingerprint: str, first_seen: datetime, template: str = DISK_FULL, count: int = 4
) -> JobResult:
    """A succeeded job's result naming one error template as its probable cause."""
    cause = ProbableCause(
        template_id="T1",
        fingerprint=fingerprint,
        template=template,
        level=Level.ERROR,
        first_seen=first_seen,
        count=count,
        confidence="high",
        reasons=["the earliest error"],
    )
    findings = Findings(
        empty=False,
        summary="Probable root cause: T1",
        searched=Searched(query="{}", start=first_seen, end=first_seen, lines_scanned=count),
        probable_causes=[cause],
        new_templates=["T1"],
    )
    return JobResult(analysis="", findings=findings, evidence=[], model="m")
