"""What an OpenAI-compatible server says about itself, read from its answers (pure functions).

Context size, per server:
- llama.cpp `GET /props`: `default_generation_settings.n_ctx`, and `total_slots`;
- vLLM `GET /v1/models`: the served model's `max_model_len` (other gateways' `context_length`
  or `context_window` are read the same way);
- Ollama `POST /api/show`: `num_ctx` in `parameters` (the context Ollama actually runs with),
  else `model_info["<architecture>.context_length"]` capped at FALLBACK_CONTEXT_TOKENS: what
  the model was trained for, not what Ollama allocates (its default is smaller, and it cuts a
  longer prompt silently rather than refusing it).

And the context-overflow answers: llama.cpp's 400 `exceed_context_size_error` with the counts,
vLLM's 400 "This model's maximum context length is N tokens. However, ... your prompt contains
P input tokens ...", and OpenAI's `context_length_exceeded` code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The context assumed when neither LLM_CONTEXT_TOKENS nor the server says: small enough for
# any current chat model.
FALLBACK_CONTEXT_TOKENS = 4096


@dataclass(frozen=True)
class ServerProps:
    """The context per request, how many requests the server takes at once, and what it is
    (`llama.cpp`, `vllm`, `ollama`, `openai` for any other)."""

    n_ctx: int
    total_slots: int
    kind: str = "llama.cpp"


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return None


def context_from_props(data: Any) -> tuple[int | None, int | None]:
    """(n_ctx, total_slots) from llama.cpp's `/props` answer; None for what it lacks."""
    if not isinstance(data, dict):
        return None, None
    settings = data.get("default_generation_settings")
    n_ctx = _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
    return n_ctx or _positive(data.get("n_ctx")), _positive(data.get("total_slots"))


def context_from_models(data: Any, model: str) -> tuple[int | None, str]:
    """(context, kind) from a `/v1/models` answer: the entry named `model`, or the only one.

    vLLM's entries carry `max_model_len` and `owned_by: "vllm"`."""
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None, "openai"
    entries = [e for e in entries if isinstance(e, dict)]
    named = [e for e in entries if e.get("id") == model]
    entry = named[0] if named else entries[0] if len(entries) == 1 else None
    kinds = {e.get("owned_by") for e in entries}
    kind = "vllm" if "vllm" in kinds else "openai"
    if entry is None:
        return None, kind
    for key in ("max_model_len", "context_length", "context_window"):
        found = _positive(entry.get(key))
        if found:
            return found, kind
    return None, kind


def context_from_ollama_show(data: Any) -> int | None:
    """The context Ollama runs the model with, from its `/api/show` answer (None: not one)."""
    if not isinstance(data, dict):
        return None
    parameters = data.get("parameters")
    if isinstance(parameters, str):
        for line in parameters.splitlines():
            name, _, value = line.strip().partition(" ")
            if name == "num_ctx" and (found := _positive(value.strip())):
                return found
    info = data.get("model_info")
    if not isinstance(info, dict):
        return None
    arch = info.get("general.architecture")
    trained = _positive(info.get(f"{arch}.context_length")) if isinstance(arch, str) else None
    if trained is None:
        trained = next(
            (v for k, v in info.items() if k.endswith(".context_length") and _positive(v)), None
        )
    return min(int(trained), FALLBACK_CONTEXT_TOKENS) if trained else None


_VLLM_MAX = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)
_VLLM_PROMPT = (
    re.compile(r"prompt contains (?:at least )?(\d+) input tokens", re.IGNORECASE),
    re.compile(r"request has (\d+) input tokens", re.IGNORECASE),
    re.compile(r"\((\d+) in the messages", re.IGNORECASE),
    re.compile(r"request \((\d+) tokens\) exceeds", re.IGNORECASE),
)
_OVERFLOW_WORDS = re.compile(
    r"context[ _]length|maximum context|context size|context window|too many tokens"
    r"|prompt is too long",
    re.IGNORECASE,
)


def context_overflow(status: int, error: dict[str, Any]) -> tuple[int | None, int | None] | None:
    """(prompt tokens, context) if this error answer says the prompt did not fit (each None
    when the server did not say), else None. `error` is the body's `error` object."""
    if status not in (400, 413):
        return None
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    if error.get("type") == "exceed_context_size_error":
        return _positive(error.get("n_prompt_tokens")), _positive(error.get("n_ctx"))
    if code != "context_length_exceeded" and not _OVERFLOW_WORDS.search(message):
        return None
    max_match = _VLLM_MAX.search(message)
    n_ctx = int(max_match.group(1)) if max_match else None
    prompt = next((int(m.group(1)) for p in _VLLM_PROMPT if (m := p.search(message))), None)
    return prompt, n_ctx
