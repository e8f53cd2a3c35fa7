"""What the CLI prints of log and model text: bidirectional controls as visible escapes."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from cli import operators, render
from cli.client import SseEvent
from shared.schemas import Entry, JobResult, Level
from workers.llm.answer import check_citations
from workers.llm.verify import verify
from workers.stages.normalize import normalize

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
T0_NS = int(datetime(2026, 11, 24, 6, 0, tzinfo=UTC).timestamp()) * 1_000_000_000


def sse(seq: int, type_: str, data: object) -> SseEvent:
    event = {"seq": seq, "type": type_, "job_id": "j1", "ts": 0.0, "data": data}
    return SseEvent(event=type_, data=json.dumps(event), id=str(seq))


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False)
    monkeypatch.setattr(render, "console", console)
    monkeypatch.setattr(operators, "console", console)
    return out


def test_bidi_controls_in_log_and_model_text_print_as_escapes(printed: io.StringIO) -> None:
    line = f"ERROR blocked upload of invoice\u202egnp.exe ({BIDI})"
    entry = Entry(
        ts_ns=T0_NS,
        namespace="shop",
        pod="web-0",
        container="web",
        node="node-1",
        level=Level.ERROR,
        message=line,
    )
    normalized = normalize([entry])
    assert normalized.findings is not None
    result = JobResult(
        analysis="", findings=normalized.findings, evidence=normalized.evidence, model="m"
    )
    render.render(sse(1, "findings", normalized.findings.model_dump(mode="json")))
    render.render(sse(2, "token", {"text": f"T1 is invoice\u202egnp.exe ({BIDI})"}))
    render.render(sse(3, "result", result.model_dump(mode="json")))
    text = printed.getvalue()
    assert not set(BIDI) & set(text), text
    assert text.count("invoice\\u202Egnp.exe") >= 3, text  # findings, answer, evidence
    for char in BIDI:
        assert f"\\u{ord(char):04X}" in text


def test_operator_views_print_bidi_controls_as_escapes(printed: io.StringIO) -> None:
    text = f"invoice\u202egnp.exe ({BIDI})"
    window = {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"}
    operators.show_job(
        {
            "job_id": "j1",
            "status": "succeeded",
            "request": {"filters": {"namespace": "shop"}, "time_range": window},
            "result": {"findings": {"summary": text}, "analysis": text},
        }
    )
    job: dict[str, Any] = {"job_id": "j1", "created_at": "2026-11-24T07:00:00Z"}
    job |= {"status": "succeeded", "namespace": "shop", "time_range": window}
    job |= {"ttft_s": 0.5, "cause": text}
    found: dict[str, Any] = {"namespace": "shop", "level": "error", "sightings": 1}
    found |= {"lines": 1, "first_seen": window["start"], "last_seen": window["end"]}
    found |= {"template": text}
    rollup: dict[str, Any] = {"namespace": "shop", "new_findings": 1, "error_lines": 1}
    rollup |= {"worst_window": None, "causes": [text]}
    render.console.print(operators.jobs_table([job]))
    render.console.print(operators.findings_table([found]))
    render.console.print(operators.rollup_table({"rollup": [rollup]}))
    out = printed.getvalue()
    assert not set(BIDI) & set(out), out
    assert out.count("invoice\\u202Egnp.exe") == 5, out


CITING_ANSWER = "## Cause\nT1 filled the disk; T99 (and T99 again) made it worse. See T1."


def cited_result() -> JobResult:
    """A result whose answer cites T1, which the model was given, and T99, which it was not."""
    entry = Entry(T0_NS, "shop", "web-0", "web", "node-1", Level.ERROR, "ERROR disk full")
    normalized = normalize([entry])
    given = [item.template_id for item in normalized.evidence]
    assert given == ["T1"]
    return JobResult(
        analysis=CITING_ANSWER,
        findings=normalized.findings,
        evidence=normalized.evidence,
        model="m",
        citations=check_citations(CITING_ANSWER, given),
    )


def unmarked(text: str, template_id: str) -> list[int]:
    """Where `template_id` is printed without the `?` that marks it as not in the evidence."""
    return [m.start() for m in re.finditer(rf"\b{template_id}\b(?!\?)", text)]


def test_the_cli_marks_cited_ids_that_are_not_in_the_evidence(printed: io.StringIO) -> None:
    result = cited_result()
    assert result.citations.valid == ["T1"] and result.citations.invalid == ["T99"]
    render.render(sse(1, "token", {"text": CITING_ANSWER}))
    streamed = len(printed.getvalue())
    render.render(sse(2, "result", result.model_dump(mode="json")))
    after = printed.getvalue()[streamed:]
    # Once the result says which ids were made up, the answer is shown with each marked.
    assert after.count("T99?") >= 2 and not unmarked(after, "T99"), after
    assert "T1?" not in after and "T1 filled the disk" in after, after
    # A person reading a past job sees the same marks.
    window = {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"}
    shown_from = len(printed.getvalue())
    operators.show_job(
        {
            "job_id": "j1",
            "status": "succeeded",
            "request": {"filters": {"namespace": "shop"}, "time_range": window},
            "result": result.model_dump(mode="json"),
        }
    )
    job = printed.getvalue()[shown_from:]
    assert job.count("T99?") == 2 and not unmarked(job, "T99"), job
    assert "T1?" not in job and job.count("T1") >= 2, job


CHECKED_ANSWER = "T1 filled the disk. It began at 09:14 on db.prod.example.com. See T1."


def checked_result() -> JobResult:
    """A result whose answer has one sentence the evidence does not back."""
    entry = Entry(T0_NS, "shop", "web-0", "web", "node-1", Level.ERROR, "ERROR disk full")
    normalized = normalize([entry])
    result = JobResult(
        analysis=CHECKED_ANSWER,
        findings=normalized.findings,
        evidence=normalized.evidence,
        model="m",
        citations=check_citations(CHECKED_ANSWER, ["T1"]),
        finish_reason="stop",
    )
    return result.model_copy(
        update={"verification": verify(CHECKED_ANSWER, evidence=normalized.evidence)}
    )


def test_the_cli_prints_the_verdict_and_marks_unsupported_sentences(
    printed: io.StringIO,
) -> None:
    result = checked_result()
    assert result.verification is not None and result.verification.verdict == "unverified"
    render.render(sse(1, "token", {"text": CHECKED_ANSWER}))
    streamed = len(printed.getvalue())
    render.render(sse(2, "result", result.model_dump(mode="json")))
    after = printed.getvalue()[streamed:]
    assert "answer check: unverified (grounding 0.00: 0 of 2 claims found in the evidence)" in (
        after
    ), after
    assert "did not match the evidence" in after, after
    # Marked without colour too: the unsupported sentence, and only it, is bracketed.
    assert "[unsupported: It began at 09:14 on db.prod.example.com.]" in after, after
    assert "[unsupported: T1 filled the disk" not in after, after
    window = {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"}
    shown_from = len(printed.getvalue())
    operators.show_job(
        {
            "job_id": "j1",
            "status": "succeeded",
            "request": {"filters": {"namespace": "shop"}, "time_range": window},
            "result": result.model_dump(mode="json"),
        }
    )
    job = printed.getvalue()[shown_from:]
    assert "answer check: unverified (grounding 0.00" in job, job
    assert "[unsupported: It began at 09:14 on db.prod.example.com.]" in job, job


def test_a_verified_answer_is_not_printed_twice(printed: io.StringIO) -> None:
    result = checked_result()
    answer = "T1 filled the disk."
    assert result.evidence
    verified = result.model_copy(
        update={"analysis": answer, "verification": verify(answer, evidence=result.evidence)}
    )
    render.render(sse(1, "result", verified.model_dump(mode="json")))
    out = printed.getvalue()
    assert "answer check: verified (grounding 1.00: no concrete claims)" in out, out
    assert "answer, checked" not in out and "unsupported" not in out, out


def test_the_cli_prints_a_json_answer_as_the_markdown_that_streamed(
    printed: io.StringIO,
) -> None:
    """In JSON mode the tokens are the answer's Markdown as it forms; a note on the JSON
    (cut, invalid, refused by the server) is printed with the result."""
    from workers.llm.partial_json import JsonMarkdown

    raw = json.dumps(
        {"summary": "Disk full", "cause": "T1", "explanation": "T1 says so", "next_steps": ["x"]}
    )
    renderer = JsonMarkdown()
    pieces = [renderer.feed(raw[i : i + 7]) for i in range(0, len(raw), 7)]
    for seq, piece in enumerate(p for p in pieces if p):
        render.render(sse(seq + 1, "token", {"text": piece}))
    shown = printed.getvalue()
    assert "## Summary\nDisk full\n\n## Probable root cause\nT1" in shown
    assert "## Next steps\n- x" in shown and '"summary"' not in shown
    result = JobResult(
        analysis="".join(pieces),
        evidence=[],
        model="m",
        answer_format="json",
        structured_note="the answer is not complete JSON (Expecting ',' delimiter at character 9)",
    )
    render.render(sse(99, "result", result.model_dump(mode="json")))
    assert "not complete JSON" in printed.getvalue()
