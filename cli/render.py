"""Print job events the way a person wants to watch them (the demo and `analyze`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.client import SseEvent
from shared.schemas import (
    CancelledData,
    DoneData,
    Event,
    Findings,
    JobError,
    JobResult,
    ProgressData,
    RetryData,
    Stage,
    StageEventData,
    TokenData,
    Verification,
    event_data,
)

console = Console(highlight=False)
EVIDENCE_ROWS = 15
# Bidirectional controls (embeddings, overrides, isolates, marks) reorder what a terminal
# shows: `invoice\u202egnp.exe` reads as `invoiceexe.png`.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with each bidirectional control shown as its escape (`\\u202E`), for printing
    log or model text."""
    return _BIDI_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04X}", text)


def marked_citations(text: str, invalid: Iterable[str]) -> Text:
    """Model text to print, each cited id that was not in the evidence shown as `T17?` in red
    (so it never reads as a real template); the text is never parsed as markup."""
    out = Text()
    ids = sorted(set(invalid), key=len, reverse=True)
    if not ids:
        out.append(visible(text))
        return out
    last = 0
    for match in re.finditer(rf"\b(?:{'|'.join(map(re.escape, ids))})\b", text):
        out.append(visible(text[last : match.start()]))
        out.append(f"{match.group()}?", style="bold red")
        last = match.end()
    out.append(visible(text[last:]))
    return out


UNSUPPORTED_OPEN, UNSUPPORTED_CLOSE = "[unsupported: ", "]"


def marked_answer(text: str, invalid: Iterable[str], verification: Verification | None) -> Text:
    """Model text to print with its made-up ids as `T17?` and each sentence holding a claim
    found nowhere in the evidence wrapped as `[unsupported: ...]` in red (readable without
    colour too)."""
    spans = [] if verification is None else verification.unsupported_spans
    out = Text()
    last = 0
    for span in spans:
        out.append_text(marked_citations(text[last : span.start], invalid))
        out.append(UNSUPPORTED_OPEN, style="bold red")
        sentence = marked_citations(text[span.start : span.end], invalid)
        sentence.stylize("red underline")
        out.append_text(sentence)
        out.append(UNSUPPORTED_CLOSE, style="bold red")
        last = span.end
    out.append_text(marked_citations(text[last:], invalid))
    return out


def describe_verification(verification: Verification) -> str:
    """One line on how the answer fared against the evidence."""
    supported = sum(claim.supported for claim in verification.claims)
    claims = (
        f"{supported} of {len(verification.claims)} claims found in the evidence"
        if verification.claims
        else "no concrete claims"
    )
    return f"{verification.verdict} (grounding {verification.grounding:.2f}: {claims})"


def print_verification(result: JobResult) -> None:
    """The check of the finished answer: verdict and score, then the answer again with its
    unsupported sentences and made-up ids marked, when it has any."""
    verification = result.verification
    if verification is None:
        return
    style = {"verified": "green", "partly_supported": "yellow"}.get(verification.verdict, "red")
    console.print(f"\n[{style}]answer check: {describe_verification(verification)}[/]")
    if verification.bad:
        console.print(
            "[red]✖ the model's text did not match the evidence: "
            f"{escape('; '.join(verification.reasons))}. Trust the findings above.[/]"
        )
    if verification.unsupported_spans or result.citations.invalid:
        console.rule("answer, checked ([unsupported: …] and T?? are not in the evidence)")
        console.print(marked_answer(result.analysis, result.citations.invalid, verification))


def render(sse: SseEvent) -> None:
    """Print one job event."""
    data = event_data(Event.model_validate(sse.json))
    if isinstance(data, StageEventData):
        _stage(data)
    elif isinstance(data, TokenData):
        console.print(visible(data.text), end="", markup=False)
    elif isinstance(data, ProgressData):
        console.print(f"[dim]{describe_progress(data)}[/]")
    elif isinstance(data, RetryData):
        console.print(f"\n[yellow]↻ retry ({data.reason}): the answer restarts[/]", markup=True)
    elif isinstance(data, Findings):
        _findings(data)
    elif isinstance(data, JobResult):
        _evidence(data)
    elif isinstance(data, JobError):
        console.print(f"\n[red]✖ {data.code}: {escape(visible(data.message))}[/]")
    elif isinstance(data, CancelledData):
        console.print("\n[yellow]cancelled[/]")
    elif isinstance(data, DoneData):
        console.print(f"[bold]job {data.status.value}[/]")


def describe_progress(data: ProgressData) -> str:
    """One line on a model still on the prompt."""
    server = data.server
    done = (
        f"has read {server.processed:,} of {server.total:,} prompt tokens"
        if server is not None
        else f"is reading a {data.prompt_tokens:,}-token prompt"
    )
    return (
        f"… the model {done}, {data.elapsed_s:.0f} s so far "
        f"(first token due within {data.deadline_s:.0f} s)"
    )


def _stage(data: StageEventData) -> None:
    if data.state == "started":
        console.print(f"[cyan]▶ {data.stage.value}[/]")
        if data.stage is Stage.CALL_LLM:
            console.rule("answer (streamed from the model)")
        return
    if data.stage is Stage.CALL_LLM:
        console.print()
        console.rule()
    summary = data.counts.summary() if data.counts is not None else ""
    console.print(f"[green]✔ {data.stage.value}[/] {data.duration_ms or 0:,.0f} ms: {summary}")


def _findings(findings: Findings) -> None:
    console.rule("findings (computed from the logs, before the model)")
    console.print(visible(findings.summary), markup=False)
    for cause in findings.probable_causes[1:]:
        template = visible(cause.template[:90])
        console.print(
            f"  alternative {cause.template_id} ({cause.confidence}): {template}", markup=False
        )
    if findings.timeline:
        table = Table("first seen", "id", "level", "count", "new", "template", show_lines=False)
        for entry in findings.timeline:
            new = "" if entry.new is None else "yes" if entry.new else "no"
            table.add_row(
                f"{entry.first_seen:%H:%M:%S}",
                entry.template_id,
                entry.level.value,
                f"{entry.count:,}",
                new,
                visible(entry.template[:80]),
            )
        console.print(table)
    if findings.previous_window is not None and not findings.previous_window.available:
        console.print(f"[yellow]{findings.previous_window.note}[/]", markup=True)


def _evidence(result: JobResult) -> None:
    if result.model_status == "failed" and result.model_error is not None:
        console.print(
            f"\n[yellow]the model's answer is missing ({result.model_error.code}: "
            f"{escape(visible(result.model_error.message))}); the findings above still stand[/]"
        )
    elif result.model_status == "skipped":
        console.print("[dim](the model was not asked: nothing to explain)[/]")
    if result.finish_reason == "degenerate":
        console.print("[yellow](the model began repeating itself: its answer was cut)[/]")
    if result.structured_note:
        console.print(f"[yellow]({escape(visible(result.structured_note))})[/]")
    if result.verification is not None:
        print_verification(result)
    elif result.citations.invalid:
        # The answer streamed before it could be checked: show it again with the made-up ids
        # marked, so none of them is left reading like a row of the table below.
        made_up = ", ".join(f"{template_id}?" for template_id in result.citations.invalid)
        console.print(
            f"\n[red]✖ the answer cites {made_up}: not in the evidence the model was given[/]"
        )
        console.rule("answer, checked (ids marked ? are not in the evidence)")
        console.print(marked_citations(result.analysis, result.citations.invalid))
    console.print()
    console.rule("evidence the model was given")
    table = Table("id", "level", "count", "first seen", "template", show_lines=False)
    for item in result.evidence[:EVIDENCE_ROWS]:
        table.add_row(
            item.template_id,
            item.level.value,
            str(item.count),
            f"{item.first_seen:%H:%M:%S}",
            visible(item.template[:100]),
        )
    console.print(table)
    if result.evidence_omitted:
        console.print(
            f"({result.evidence_omitted} lower-ranked templates left out to fit the context)"
        )
