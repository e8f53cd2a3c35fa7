"""While the model is still on the prompt: how long its first token may take, and what the
reader is told meanwhile.

The first token is due within a base plus the prompt's tokens at a conservative
prompt-processing rate, capped: a long prompt on a slow CPU is given its time, a server that
never answers is reported in seconds, not minutes. Until the first token, a `progress` report
goes out whenever llama.cpp reports prompt progress (`return_progress`) and at least every
`interval_s` (an elapsed-time heartbeat, for servers that report none).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from shared.schemas import ProgressData, ServerPromptProgress


def first_token_deadline(
    prompt_tokens: int, *, base_s: float, tokens_per_s: float, cap_s: float
) -> float:
    """Seconds the first token may take for a prompt of `prompt_tokens` tokens."""
    return min(cap_s, base_s + max(prompt_tokens, 0) / tokens_per_s)


def server_progress(chunk: dict[str, Any]) -> ServerPromptProgress | None:
    """llama.cpp's `prompt_progress` report in a streamed chunk, if the chunk holds one."""
    report = chunk.get("prompt_progress")
    if not isinstance(report, dict):
        return None
    try:
        return ServerPromptProgress.model_validate(report)
    except ValidationError:
        return None


class ProgressReporter:
    """Paces the `progress` reports of one model call; `report` returns False to stop it."""

    def __init__(
        self,
        report: Callable[[ProgressData], bool],
        *,
        deadline_s: float,
        prompt_tokens: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._report = report
        self.deadline_s = deadline_s
        self.prompt_tokens = prompt_tokens
        self.interval_s = interval_s
        self._clock = clock
        self.started = clock()
        self._last_sent = self.started
        self._server: ServerPromptProgress | None = None

    def _send(self) -> bool:
        now = self._clock()
        self._last_sent = now
        return self._report(
            ProgressData(
                elapsed_s=round(now - self.started, 2),
                deadline_s=round(self.deadline_s, 2),
                prompt_tokens=self.prompt_tokens,
                server=self._server,
            )
        )

    def server(self, progress: ServerPromptProgress) -> bool:
        """The server reported progress: pass it on now."""
        self._server = progress
        return self._send()

    def tick(self) -> bool:
        """A heartbeat when `interval_s` passed since the last report."""
        if self._clock() - self._last_sent < self.interval_s:
            return True
        return self._send()
