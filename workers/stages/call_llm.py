"""Stage 4: fit the evidence into the model's context and stream its answer.

The model is reached through a `LlamaClient` and the answer leaves through a `TokenSink`;
both are given, so this module holds no Redis or Celery code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from shared.errors import ContextOverflowError, JobCancelledError
from shared.schemas import AnalysisRequest, JobResult, LlmCounts, LlmTimings, NormalizeResult
from workers.llm.client import LlamaClient, StreamBrokenError
from workers.llm.prompt import Prompt, build_prompt


class TokenSink(Protocol):
    """Where the answer goes as it is generated (the job's event log)."""

    def token(self, text: str) -> bool:
        """Publish a fragment; False means stop (job cancelled or this attempt is stale)."""

    def restart(self, reason: str) -> bool:
        """Tell clients to discard the partial answer; False means stop."""

    def stopped(self) -> bool:
        """True once the job no longer wants this answer."""


def plan_tokens(n_ctx: int, max_tokens: int) -> tuple[int, int]:
    """(answer tokens, prompt budget): the answer gets at most a quarter of the context."""
    answer = max(1, min(max_tokens, n_ctx // 4))
    return answer, n_ctx - answer


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
    return (
        f"Logs of {scope} from {request.time_range.start:%Y-%m-%d %H:%M:%S}Z to "
        f"{request.time_range.end:%Y-%m-%d %H:%M:%S}Z: {normalized.entries} log events "
        f"matched, mined into {normalized.templates} templates."
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
    slot: Callable[[int], AbstractContextManager[object]] = lambda _slots: contextlib.nullcontext(),
) -> JobResult:
    """Ask the model about the evidence; raise JobCancelledError if the sink stops it."""
    props = client.props()
    answer_tokens, budget = plan_tokens(props.n_ctx, max_tokens)
    header = describe_window(request, normalized)

    def prompt_for(budget_tokens: int) -> Prompt:
        return build_prompt(
            normalized.evidence,
            header=header,
            question=request.question,
            limit=request.limit,
            budget_tokens=budget_tokens,
            count_tokens=client.count_tokens,
        )

    prompt = prompt_for(budget)
    shrunk = False
    restarts = 0
    with slot(props.total_slots):
        while True:
            try:
                completion = client.stream_chat(
                    prompt.messages,
                    max_tokens=answer_tokens,
                    temperature=temperature,
                    on_token=sink.token,
                    should_stop=sink.stopped,
                )
                break
            except ContextOverflowError as exc:
                # Our count and the server's disagree (chat template, special tokens): shrink
                # by the ratio the server reported, with a margin, and try exactly once more.
                if shrunk:
                    raise
                shrunk = True
                scale = prompt.prompt_tokens / exc.n_prompt_tokens if exc.n_prompt_tokens else 0.5
                prompt = prompt_for(int(budget * min(scale, 1.0) * 0.8))
            except StreamBrokenError as exc:
                restarts += 1
                if restarts > max_restarts:
                    raise
                if not sink.restart(exc.message):
                    raise JobCancelledError("job stopped during restart") from exc
    if completion.stopped:
        raise JobCancelledError("the job was cancelled during the LLM call")
    timings = LlmTimings.model_validate(completion.timings) if completion.timings else None
    # With the prompt cache on, `prompt_n` counts only the tokens processed anew; the prompt's
    # size is what was reused from the cache plus those.
    if timings is not None and timings.prompt_n is not None:
        cached = timings.cache_n or 0
        prompt_tokens = cached + timings.prompt_n
    else:
        cached, prompt_tokens = 0, prompt.prompt_tokens
    return JobResult(
        analysis=completion.text,
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
        finish_reason=completion.finish_reason,
        time_to_first_token_s=completion.ttft_s,
        timings=timings,
    )


@dataclass(frozen=True)
class LlmOptions:
    """How to ask the model (from the settings)."""

    max_tokens: int
    temperature: float
    max_restarts: int = 2


def run(
    normalized: NormalizeResult,
    *,
    request: AnalysisRequest,
    client: LlamaClient,
    sink: TokenSink,
    options: LlmOptions,
    slot: Callable[[int], AbstractContextManager[object]] = lambda _slots: contextlib.nullcontext(),
) -> tuple[JobResult, LlmCounts]:
    """The call_llm stage: the job's result and what the call took."""
    result = analyze(
        normalized,
        request=request,
        client=client,
        sink=sink,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        max_restarts=options.max_restarts,
        slot=slot,
    )
    counts = LlmCounts(
        prompt_tokens=result.prompt_tokens,
        prompt_tokens_cached=result.prompt_tokens_cached,
        tokens_generated=result.tokens_generated,
        evidence=len(result.evidence),
        evidence_omitted=result.evidence_omitted,
    )
    return result, counts
