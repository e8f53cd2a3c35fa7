"""The model endpoints an evaluation can run against, as LlamaClients that record prompts.

`stub` is the tests' llama-server stub (canned answer, real shapes), `smollm2` the embedded
llama-server with the bundled model, and any other value an OpenAI-compatible base URL. A
server that is not llama-server has no `/props` or `/tokenize`: the context size then comes
from `--ctx` and tokens are estimated (four characters each).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from shared.schemas import ProgressData
from workers.llm.client import Completion, LlamaClient, ServerProps


class EvalClient(LlamaClient):
    """A LlamaClient that keeps every prompt it sends."""

    def __init__(self, http: httpx.Client, base_url: str, *, model: str, generic: bool, ctx: int):
        super().__init__(
            http,
            base_url,
            model=model,
            first_token_timeout_s=300,
            first_token_base_s=300,  # patient whatever the prompt's size, as before
            idle_timeout_s=60,
            loading_wait_s=120,
            cache_prompt=False,
            # The evaluation runs where its user is, against the URL they named.
            allow_remote=True,
        )
        self.generic = generic
        self.ctx = ctx
        self.prompts: list[str] = []

    def props(self, max_age_s: float = 30.0) -> ServerProps:
        if self.generic:
            return ServerProps(n_ctx=self.ctx, total_slots=1)
        return super().props(max_age_s)

    def count_tokens(self, text: str) -> int:
        if self.generic:
            return max(1, len(text) // 4)
        return super().count_tokens(text)

    def stream_chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        on_token: Callable[[str], bool],
        should_stop: Callable[[], bool] = lambda: False,
        sampling: Mapping[str, float] | None = None,
        prompt_tokens: int = 0,
        on_progress: Callable[[ProgressData], bool] = lambda _progress: True,
        response_format: Mapping[str, Any] | None = None,
    ) -> Completion:
        self.prompts.append("\n".join(m["content"] for m in messages))
        return super().stream_chat(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            on_token=on_token,
            should_stop=should_stop,
            sampling=None if self.generic else sampling,
            prompt_tokens=prompt_tokens,
            on_progress=on_progress,
            response_format=response_format,
        )
