"""How an incident is turned into what the model sees, and what the model answers.

`ours` is the service's pipeline, stage by stage, in process (the same pure functions the
Celery tasks run): read the window and the one before, flatten, normalize (evidence and
findings), then the call_llm stage. `seed` is what the original single-process service did:
the newest 15 lines matching the default filter, pasted into a prompt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from eval.clients import EvalClient
from shared.logql import parse_log_filter
from shared.schemas import AnalysisRequest, EvidenceItem, Findings, JobResult
from shared.settings import SEVERE_LINE_FILTER, Settings
from workers.inprocess import analyze
from workers.llm.answer import check_citations
from workers.sources import ReadPlan, Window, read_all
from workers.sources.files import FileSource
from workers.stages import call_llm, query_loki

SEED_LINES = 15
SEED_SYSTEM = (
    "You are an SRE assistant. Analyze these Kubernetes log lines and explain what went "
    "wrong, the probable root cause and how to fix it."
)


@dataclass
class Outcome:
    """What one strategy produced for one incident."""

    shown: list[str]  # the evidence the model saw, one string per item (template + examples)
    answer: str
    prompt: str  # every message sent to the model, joined
    findings: Findings | None = None
    lines_read: int = 0
    templates: int = 0
    prompt_tokens: int | None = None
    ttft_s: float | None = None
    total_s: float = 0.0
    finish_reason: str | None = None
    model_status: str = "answered"
    cited_valid: list[str] = field(default_factory=list)
    cited_invalid: list[str] = field(default_factory=list)
    shown_ids: list[str] = field(default_factory=list)
    result_json: str = ""
    error: str | None = None  # the run raised this: it counts as a miss
    answer_format: str = "text"
    structured_cause: str | None = None  # the parsed JSON answer's cause (None: no valid JSON)


class CollectingSink:
    """Takes the streamed answer (the eval has no clients to relay it to)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def token(self, text: str) -> bool:
        self.tokens.append(text)
        return True

    def restart(self, reason: str) -> bool:
        self.tokens.clear()
        return True

    def stopped(self) -> bool:
        return False


def _shown(item: EvidenceItem) -> str:
    return "\n".join([item.template, *item.examples])


def run_ours(
    request: AnalysisRequest, pods: Path, client: EvalClient | None, settings: Settings
) -> Outcome:
    """The service's pipeline on the incident's files; no model call when `client` is None."""
    started = time.monotonic()
    analysis = analyze(
        request, FileSource(pods), previous_budget=settings.previous_window_scan_limit
    )
    normalized, counts = analysis.normalized, analysis.query
    if client is None:
        shown = normalized.evidence[: request.limit]
        return Outcome(
            shown=[_shown(i) for i in shown],
            answer="",
            prompt="",
            findings=normalized.findings,
            lines_read=counts.kept,
            templates=normalized.templates,
            total_s=time.monotonic() - started,
            model_status="not asked",
            shown_ids=[i.template_id for i in shown],
        )
    options = call_llm.LlmOptions(
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        max_restarts=settings.llm_max_retries,
        sampling=settings.llm_sampling(),
        grounding_threshold=settings.llm_grounding_threshold,
        answer_format=settings.llm_answer_format,
        structured_max_context=settings.llm_structured_max_context,
    )
    client.prompts.clear()
    result, _ = call_llm.run(
        normalized, request=request, client=client, sink=CollectingSink(), options=options
    )
    return _outcome(result, client.prompts, counts.kept, normalized.templates, started)


def _outcome(
    result: JobResult, prompts: list[str], lines: int, templates: int, started: float
) -> Outcome:
    return Outcome(
        shown=[_shown(i) for i in result.evidence],
        answer=result.analysis,
        prompt="\n\n".join(prompts),
        findings=result.findings,
        lines_read=lines,
        templates=templates,
        prompt_tokens=result.prompt_tokens,
        ttft_s=result.time_to_first_token_s,
        total_s=time.monotonic() - started,
        finish_reason=result.finish_reason,
        model_status=result.model_status,
        cited_valid=result.citations.valid,
        cited_invalid=result.citations.invalid,
        shown_ids=[i.template_id for i in result.evidence],
        result_json=result.model_dump_json(),
        answer_format=result.answer_format,
        structured_cause=result.structured.cause if result.structured is not None else None,
    )


def newest_lines(request: AnalysisRequest, pods: Path) -> list[str]:
    """The newest SEED_LINES lines of the window that match the default filter."""
    window = Window(
        request.filters,
        parse_log_filter(SEVERE_LINE_FILTER),
        query_loki.to_ns(request.time_range.start),
        query_loki.to_ns(request.time_range.end),
    )
    lines, _ = read_all(FileSource(pods), ReadPlan(window, budget=10**7))
    return [raw.line for raw in lines[-SEED_LINES:]]


def run_seed(
    request: AnalysisRequest, pods: Path, client: EvalClient | None, settings: Settings
) -> Outcome:
    """The original service: the newest lines, pasted into one prompt."""
    started = time.monotonic()
    lines = newest_lines(request, pods)
    user = "\n".join(lines) + f"\n\nQuestion: {request.question or 'what went wrong?'}"
    messages = [{"role": "system", "content": SEED_SYSTEM}, {"role": "user", "content": user}]
    prompt = "\n".join(m["content"] for m in messages)
    if client is None or not lines:
        return Outcome(
            shown=lines,
            answer="",
            prompt=prompt if lines else "",
            lines_read=len(lines),
            total_s=time.monotonic() - started,
            model_status="not asked",
        )
    sink = CollectingSink()
    completion = client.stream_chat(
        messages,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        on_token=sink.token,
    )
    citations = check_citations(completion.text, ())
    timings = completion.timings or {}
    return Outcome(
        shown=lines,
        answer=completion.text,
        prompt=prompt,
        lines_read=len(lines),
        prompt_tokens=(timings.get("cache_n") or 0) + (timings.get("prompt_n") or 0) or None,
        ttft_s=completion.ttft_s,
        total_s=time.monotonic() - started,
        finish_reason=completion.finish_reason,
        cited_valid=citations.valid,
        cited_invalid=citations.invalid,
    )


STRATEGIES = {"ours": run_ours, "seed": run_seed}
