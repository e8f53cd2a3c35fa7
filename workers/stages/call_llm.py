"""Stage 4: fit the evidence into the model's context and stream its answer.

The model is reached through a `LlamaClient` and the answer leaves through a `TokenSink`;
both are given, so this module holds no Redis or Celery code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.errors import (
    ConfigurationError,
    ContextOverflowError,
    JobCancelledError,
    LlmRejectedError,
    UpstreamError,
    UpstreamRejectedError,
)
from shared.schemas import (
    AnalysisRequest,
    Findings,
    JobError,
    JobResult,
    LlmCounts,
    LlmTimings,
    NormalizeResult,
    ProgressData,
    Stage,
    StructuredAnswer,
)
from workers.llm import structured
from workers.llm.answer import DegenerationGuard, check_citations
from workers.llm.client import LlamaClient, StreamBrokenError
from workers.llm.partial_json import JsonMarkdown
from workers.llm.prompt import Prompt, build_prompt
from workers.llm.verify import DEFAULT_THRESHOLD, verify

logger = logging.getLogger(__name__)


class TokenSink(Protocol):
    """Where the answer goes as it is generated (the job's event log)."""

    def token(self, text: str) -> bool:
        """Publish a fragment; False means stop (job cancelled or this attempt is stale)."""

    def restart(self, reason: str) -> bool:
        """Tell clients to discard the partial answer; False means stop."""

    def stopped(self) -> bool:
        """True once the job no longer wants this answer."""


DEGENERATE_NOTICE = "the model began repeating itself: its answer is shown once, cut there"


def plan_tokens(n_ctx: int, max_tokens: int) -> tuple[int, int]:
    """(answer tokens, prompt budget): the answer gets at most a quarter of the context."""
    answer = max(1, min(max_tokens, n_ctx // 4))
    return answer, n_ctx - answer


def describe_findings(findings: Findings | None) -> list[str]:
    """The findings as the prompt may state them, longest first: the summary and the onsets
    in order, then the summary alone."""
    if findings is None:
        return []
    title = "Findings computed from the logs (reliable; cite their ids):"
    lines = [title, findings.summary]
    for entry in findings.timeline[:6]:
        new = " new" if entry.new else ""
        lines.append(
            f"- {entry.first_seen:%H:%M:%S} {entry.template_id} {entry.level.value.upper()}"
            f"{new} x{entry.count}"
        )
    return ["\n".join(lines), f"{title}\n{findings.summary}"]


def describe_window(request: AnalysisRequest, normalized: NormalizeResult) -> str:
    f = request.filters
    scope = ", ".join(
        f"{name}={value}"
        for name, value in (
            ("namespace", f.namespace),
            ("pod", f.pod),
            ("container", f.container),
            ("node", f.node),
        )
        if value
    )
    findings = normalized.findings
    coverage = None if findings is None else findings.searched.coverage
    read = f"{normalized.entries:,} log events read"
    if coverage is not None:
        read = coverage.describe().rstrip(".") + f"; {normalized.entries:,} log events"
    return (
        f"Logs of {scope} from {request.time_range.start:%Y-%m-%d %H:%M:%S}Z to "
        f"{request.time_range.end:%Y-%m-%d %H:%M:%S}Z. {read}, mined into "
        f"{normalized.templates} templates."
    )


def analyze(
    normalized: NormalizeResult,
    *,
    request: AnalysisRequest,
    client: LlamaClient,
    sink: TokenSink,
    max_tokens: int,
    temperature: float,
    max_restarts: int = 2,
    sampling: Mapping[str, float] | None = None,
    slot: Callable[[int], AbstractContextManager[object]] = lambda _slots: contextlib.nullcontext(),
    progress: Callable[[ProgressData], bool] = lambda _progress: True,
    answer_format: str = "text",
    structured_max_context: int = 8192,
) -> JobResult:
    """Ask the model about the evidence; raise JobCancelledError if the sink stops it.

    Until the model's first token, `progress` hears how the prompt is getting on (False
    stops the call, as the sink does).

    A guard watches the stream: when the answer starts repeating itself it is stopped, the
    clients are told to discard it (`retry`) and get it once more without the repetition,
    and `finish_reason` is `degenerate`.

    In JSON mode (`answer_format`, see `workers.llm.structured.choose_format`) the answer is
    held to a bounded schema; what streams to the sink (and becomes `analysis`) is its
    Markdown as it forms, and the parsed answer is `structured`. A server that rejects the
    schema gets the question once more in free text, and `structured_note` says so.
    """
    props = client.props()
    answer_tokens, budget = plan_tokens(props.n_ctx, max_tokens)
    header = describe_window(request, normalized)
    findings = describe_findings(normalized.findings)
    fmt = structured.choose_format(
        answer_format, n_ctx=props.n_ctx, max_context=structured_max_context, model=client.model
    )
    schema: structured.AnswerSchema | None = None
    note: str | None = None
    if fmt == "json":
        schema = structured.AnswerSchema.build(
            structured.cause_ids(normalized.findings), answer_tokens
        )
        if schema is None:
            fmt, note = "text", f"{answer_tokens} answer tokens are too few for a JSON answer"

    def prompt_for(budget_tokens: int) -> Prompt:
        return build_prompt(
            normalized.evidence,
            header=header,
            question=request.question,
            limit=request.limit,
            budget_tokens=budget_tokens,
            count_tokens=client.count_tokens,
            findings=findings,
            system=None if schema is None else structured.system_prompt(schema.causes),
        )

    prompt = prompt_for(budget)
    shrunk = False
    restarts = 0
    guard = DegenerationGuard()
    renderer = JsonMarkdown()

    def on_token(text: str) -> bool:
        if schema is not None:
            text = renderer.feed(text)
            if not text:
                return True
        return guard.feed(text) and sink.token(text)

    with slot(props.total_slots):
        while True:
            guard = DegenerationGuard()
            renderer = JsonMarkdown()
            try:
                completion = client.stream_chat(
                    prompt.messages,
                    max_tokens=answer_tokens if schema is None else schema.max_chars(),
                    temperature=temperature,
                    on_token=on_token,
                    should_stop=sink.stopped,
                    sampling=sampling,
                    prompt_tokens=prompt.prompt_tokens,
                    on_progress=progress,
                    response_format=None if schema is None else schema.response_format(),
                )
                break
            except ContextOverflowError as exc:
                # Our count and the server's disagree (chat template, special tokens, an
                # estimate without `/tokenize`, a context smaller than assumed): shrink by the
                # ratio the server reported, with a margin, and try exactly once more. The
                # evidence that no longer fits is dropped from the end.
                if shrunk:
                    raise
                shrunk = True
                if exc.n_ctx is not None and exc.n_ctx < props.n_ctx:
                    client.learn_context(exc.n_ctx)
                    answer_tokens, budget = plan_tokens(exc.n_ctx, max_tokens)
                scale = prompt.prompt_tokens / exc.n_prompt_tokens if exc.n_prompt_tokens else 0.5
                prompt = prompt_for(int(budget * min(scale, 1.0) * 0.8))
            except LlmRejectedError as exc:
                # A server without JSON schemas (or with another dialect of them) refuses the
                # request before any token: ask once more in free text, and say so.
                if schema is None:
                    raise
                schema, fmt = None, "text"
                note = f"the server rejected the JSON schema, so the answer is free text: {exc}"
                prompt = prompt_for(budget)
            except StreamBrokenError as exc:
                restarts += 1
                if restarts > max_restarts:
                    raise
                if not sink.restart(exc.message):
                    raise JobCancelledError("job stopped during restart") from exc
    text, finish_reason = completion.text, completion.finish_reason
    parsed: StructuredAnswer | None = None
    if schema is not None:
        # The reader got the Markdown; the raw JSON is what gets checked.
        text = guard.text
    if completion.stopped and guard.degenerate:
        text, finish_reason = guard.answer(), "degenerate"
        if schema is not None:
            note = "the answer began repeating itself and was cut: no structured answer"
        if not (sink.restart(DEGENERATE_NOTICE) and sink.token(text)):
            raise JobCancelledError("the job was cancelled during the LLM call")
    elif completion.stopped:
        raise JobCancelledError("the job was cancelled during the LLM call")
    elif schema is not None:
        parsed, note = schema.parse(completion.text)
    timings = LlmTimings.model_validate(completion.timings) if completion.timings else None
    # With the prompt cache on, `prompt_n` counts only the tokens processed anew; the prompt's
    # size is what was reused from the cache plus those.
    if timings is not None and timings.prompt_n is not None:
        cached = timings.cache_n or 0
        prompt_tokens = cached + timings.prompt_n
    else:
        cached, prompt_tokens = 0, prompt.prompt_tokens
    return JobResult(
        analysis=text,
        findings=normalized.findings,
        evidence=prompt.evidence,
        evidence_omitted=prompt.omitted,
        model=client.model,
        prompt_tokens=prompt_tokens,
        prompt_tokens_cached=cached,
        tokens_generated=(
            timings.predicted_n
            if timings and timings.predicted_n is not None
            else completion.chunks
        ),
        finish_reason=finish_reason,
        citations=check_citations(text, (item.template_id for item in prompt.evidence)),
        time_to_first_token_s=completion.ttft_s,
        timings=timings,
        answer_format=fmt,
        structured=parsed,
        structured_note=note,
    )


@dataclass(frozen=True)
class LlmOptions:
    """How to ask the model (from the settings)."""

    max_tokens: int
    temperature: float
    max_restarts: int = 2
    sampling: Mapping[str, float] = field(default_factory=dict)
    grounding_threshold: float = DEFAULT_THRESHOLD
    # LLM_ANSWER_FORMAT (the service's default is `auto`) and LLM_STRUCTURED_MAX_CONTEXT
    # (workers.llm.structured.choose_format).
    answer_format: str = "text"
    structured_max_context: int = 8192


def check_answer(
    result: JobResult, normalized: NormalizeResult, request: AnalysisRequest, threshold: float
) -> JobResult:
    """The result with its finished answer checked against what the model was given (the
    evidence, the findings and the window's header, as the prompt stated them)."""
    try:
        verification = verify(
            result.analysis,
            evidence=result.evidence,
            findings=result.findings,
            request=request,
            context=[describe_window(request, normalized)],
            finish_reason=result.finish_reason,
            threshold=threshold,
        )
    except Exception:  # noqa: BLE001 - a bug in the check must not cost the answer
        logger.exception("the answer could not be checked; it is delivered unchecked")
        return result
    return result.model_copy(update={"verification": verification})


def without_model(
    normalized: NormalizeResult,
    *,
    model: str,
    skip: Literal["no_matching_lines", "only_low_severity"] | None = None,
    error: JobError | None = None,
) -> JobResult:
    """A result with the findings and the evidence but no answer from the model: skipped
    (nothing to explain) or failed (`error`)."""
    summary = normalized.findings.summary if normalized.findings is not None else ""
    return JobResult(
        analysis=summary if skip else "",
        findings=normalized.findings,
        evidence=normalized.evidence,
        model=model,
        model_status="skipped" if skip else "failed",
        model_skip_reason=skip,
        model_error=error,
    )


def skip_reason(
    normalized: NormalizeResult,
) -> Literal["no_matching_lines", "only_low_severity"] | None:
    """Why the model need not be asked, if it need not."""
    findings = normalized.findings
    if findings is None:
        return None
    if findings.empty:
        return "no_matching_lines"
    if findings.only_low_severity:
        return "only_low_severity"
    return None


def run(
    normalized: NormalizeResult,
    *,
    request: AnalysisRequest,
    client: LlamaClient,
    sink: TokenSink,
    options: LlmOptions,
    slot: Callable[[int], AbstractContextManager[object]] = lambda _slots: contextlib.nullcontext(),
    progress: Callable[[ProgressData], bool] = lambda _progress: True,
    fatal: tuple[type[BaseException], ...] = (),
) -> tuple[JobResult, LlmCounts]:
    """The call_llm stage: the job's result and what the call took.

    No model call when nothing matched or only info/warning lines did; when the model stays
    unreachable or failing, or the call fails in any unexpected way (`internal_error`), the
    result carries the findings and evidence without an answer. Only a cancelled job and
    the `fatal` exceptions (the task's time limit, Redis errors) end the stage.
    """
    skip = skip_reason(normalized)
    if skip is not None:
        result = without_model(normalized, model=client.model, skip=skip)
    else:
        try:
            result = analyze(
                normalized,
                request=request,
                client=client,
                sink=sink,
                max_tokens=options.max_tokens,
                temperature=options.temperature,
                max_restarts=options.max_restarts,
                sampling=options.sampling,
                slot=slot,
                progress=progress,
                answer_format=options.answer_format,
                structured_max_context=options.structured_max_context,
            )
            result = check_answer(result, normalized, request, options.grounding_threshold)
        except (UpstreamError, UpstreamRejectedError, ConfigurationError) as exc:
            # ConfigurationError: a server outside the cluster without LLM_ALLOW_REMOTE.
            error = JobError(code=exc.code, message=exc.message, stage=Stage.CALL_LLM)
            result = without_model(normalized, model=client.model, error=error)
        except JobCancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in the model's part must not cost the findings
            if isinstance(exc, fatal):
                raise
            logger.exception("unexpected error in the model call; the findings are kept")
            error = JobError(
                code="internal_error",
                message=f"unexpected {type(exc).__name__} in {Stage.CALL_LLM.value}",
                stage=Stage.CALL_LLM,
            )
            result = without_model(normalized, model=client.model, error=error)
    counts = LlmCounts(
        prompt_tokens=result.prompt_tokens,
        prompt_tokens_cached=result.prompt_tokens_cached,
        tokens_generated=result.tokens_generated,
        evidence=len(result.evidence),
        evidence_omitted=result.evidence_omitted,
    )
    return result, counts
