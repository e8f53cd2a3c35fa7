"""A client for llama.cpp's `llama-server` that holds up: bounded waits, timeouts, retries.

Streaming runs on a reader thread that hands lines to the caller through a queue, so the
caller can enforce the first-token and idle-gap deadlines itself, check for cancellation and
report progress while the server is still processing the prompt.

The first token is due within a deadline that follows from the prompt's size
(`workers.llm.progress`), counted from the request; progress reports do not extend it. A
request that reaches that deadline is not sent again: the server took it and stayed silent,
and a second try would double the wait (and queue the same prompt behind the first).

Only `/v1/chat/completions` is required. The server is probed once per process for its
context and slots (`workers.llm.server_info`: llama.cpp `/props`, vLLM `/v1/models`, Ollama
`/api/show`; LLM_CONTEXT_TOKENS and LLM_CONCURRENCY win when set), and tokens are counted with
its `/tokenize` (llama.cpp's or vLLM's shape) or, without one, estimated with a margin.
llama.cpp's own request fields (prompt cache, progress, DRY sampler) go to llama.cpp only.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from shared.errors import ContextOverflowError, LlmError, LlmRejectedError, LlmTimeoutError
from shared.retry import RetryPolicy
from shared.schemas import ProgressData
from workers.llm.endpoint import check_llm_url
from workers.llm.progress import ProgressReporter, first_token_deadline, server_progress
from workers.llm.server_info import (
    FALLBACK_CONTEXT_TOKENS,
    ServerProps,
    context_from_models,
    context_from_ollama_show,
    context_from_props,
    context_overflow,
)

__all__ = ["FALLBACK_CONTEXT_TOKENS", "Completion", "LlamaClient", "ServerProps"]
# Fields of a chat request that only llama.cpp reads; a strict server may refuse them.
_LLAMA_ONLY = frozenset(
    {"cache_prompt", "return_progress", "dry_multiplier", "dry_base", "dry_allowed_length"}
    | {"repeat_penalty"}
)
# Answers of a server that lacks an endpoint (404 Not Found, 405, 501 Not Implemented).
_MISSING = frozenset({404, 405, 501})
# How long a missing endpoint is not asked for again.
_MISSING_RECHECK_S = 300.0


def estimate_tokens(text: str) -> int:
    """Tokens of `text` without the server's tokenizer: one per 3 characters, rounded up.

    BPE tokenizers of current models average about 4 characters per token on English text
    and a little less on logs (ids, hex, punctuation): 3 leaves a margin, so the prompt
    still fits when the estimate is off.
    """
    return math.ceil(len(text) / 3)


@dataclass
class Completion:
    """What one streamed chat completion produced."""

    text: str
    finish_reason: str | None
    chunks: int
    timings: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    ttft_s: float | None = None
    stopped: bool = False


class StreamBrokenError(LlmError):
    """Raised when a stream fails after some tokens were already delivered."""

    code = "llm_stream_broken"

    def __init__(self, message: str, *, chunks: int):
        super().__init__(message)
        self.chunks = chunks


def parse_error_body(status: int, body: str) -> LlmError | LlmRejectedError:
    """Turn an error answer into the matching exception: llama.cpp's and OpenAI's
    `{"error": {"message", "type", ...}}`, Ollama's `{"error": "text"}`, vLLM's older
    `{"object": "error", "message", ...}`, or any other body (its text is the message)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if error is None and isinstance(data, dict) and data.get("object") == "error":
        error = data
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or "") or body.strip()[:500] or f"HTTP {status}"
    overflow = context_overflow(status, {**error, "message": message})
    if overflow is not None:
        return ContextOverflowError(message, n_prompt_tokens=overflow[0], n_ctx=overflow[1])
    if 400 <= status < 500 and status != 429:
        return LlmRejectedError(f"LLM server rejected the request ({status}): {message}")
    return LlmError(f"LLM server answered {status}: {message}")


def _chunk_content(chunk: dict[str, Any]) -> tuple[str, str | None]:
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta") or {}
    return delta.get("content") or "", choice.get("finish_reason")


def _may_pass(exc: BaseException) -> bool:
    """An LLM failure worth another try: anything but a rejection of the request itself."""
    return type(exc) is LlmError or isinstance(exc, LlmTimeoutError)


_END = object()


class LlamaClient:
    """Synchronous client for one llama-server."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        *,
        model: str,
        connect_timeout_s: float = 5.0,
        first_token_timeout_s: float = 120.0,
        first_token_base_s: float = 15.0,
        prompt_tokens_per_s: float = 25.0,
        progress_interval_s: float = 5.0,
        idle_timeout_s: float = 30.0,
        loading_wait_s: float = 120.0,
        max_retries: int = 2,
        cache_prompt: bool = True,
        context_tokens: int = 0,
        concurrency: int = 0,
        api_key: str = "",
        allow_remote: bool = False,
    ):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.connect_timeout_s = connect_timeout_s
        self.first_token_timeout_s = first_token_timeout_s  # the cap of the first-token deadline
        self.first_token_base_s = first_token_base_s
        self.prompt_tokens_per_s = prompt_tokens_per_s
        self.progress_interval_s = progress_interval_s
        self.idle_timeout_s = idle_timeout_s
        self.retry = RetryPolicy(
            attempts=max_retries, base_s=0.25, cap_s=5.0, keep_trying_s=loading_wait_s
        )
        self.cache_prompt = cache_prompt
        self.context_tokens = context_tokens  # 0: ask the server
        self.concurrency = concurrency  # 0: ask the server (1 if it does not say)
        self.allow_remote = allow_remote
        # Sent with every request; kept out of every message and repr.
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._token_cache: dict[str, int] = {}
        self._no_tokenize_at: float | None = None
        self._props: ServerProps | None = None
        self._props_at = 0.0

    def __repr__(self) -> str:
        return f"LlamaClient({self.base_url!r}, model={self.model!r})"

    def _url(self, path: str) -> str:
        """The URL of `path`, once the server is known to be one the prompt may go to
        (RemoteLlmError otherwise: checked at every request, not only at start)."""
        check_llm_url(self.base_url, allow_remote=self.allow_remote)
        return self.base_url + path

    def _timeout(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect_timeout_s, read=read, write=30.0, pool=10.0)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A plain request that waits while the server loads its model and retries 5xx."""
        response = self._call_optional(method, path, missing_ok=False, **kwargs)
        assert response is not None
        return response

    def _call_optional(
        self, method: str, path: str, *, missing_ok: bool = True, **kwargs: Any
    ) -> httpx.Response | None:
        """As `_call`, but None when the server has no such endpoint (a generic server)."""

        def once() -> httpx.Response | None:
            try:
                response = self.http.request(
                    method,
                    self._url(path),
                    timeout=self._timeout(self.idle_timeout_s),
                    headers=self._headers,
                    **kwargs,
                )
            except httpx.TransportError as exc:
                raise LlmError(f"LLM server unreachable: {exc!r}") from None
            if missing_ok and response.status_code in _MISSING:
                return None
            if response.status_code >= 400:
                raise parse_error_body(response.status_code, response.text)
            return response

        # Anything but a rejection may pass; only a model that is still loading is waited for
        # beyond LLM_MAX_RETRIES (up to LLM_LOADING_WAIT_S): an unreachable server is reported
        # after a few seconds, so the job's findings are not held up for minutes.
        return self.retry.call(
            once,
            retry_if=_may_pass,
            patient=lambda exc: "Loading model" in str(exc),
            what=f"LLM {method} {path}",
        )

    def props(self, max_age_s: float = math.inf) -> ServerProps:
        """Context per request, slot count and kind of server, probed once per process.

        LLM_CONTEXT_TOKENS and LLM_CONCURRENCY win when set. Otherwise llama.cpp's `/props`,
        then `/v1/models` (vLLM's `max_model_len`), then Ollama's `/api/show`, then
        FALLBACK_CONTEXT_TOKENS; a server that does not say how many slots gets one. An
        endpoint the server lacks (404, 405, 501, or any other refusal) means "not this one";
        an unreachable server raises, and is asked again next time.
        """
        if self._props is not None and time.monotonic() - self._props_at < max_age_s:
            return self._props
        n_ctx, slots, kind = self._probe()
        self._props = ServerProps(
            n_ctx=self.context_tokens or n_ctx or FALLBACK_CONTEXT_TOKENS,
            total_slots=self.concurrency or slots or 1,
            kind=kind,
        )
        self._props_at = time.monotonic()
        return self._props

    def learn_context(self, n_ctx: int) -> None:
        """The server said its context is `n_ctx` (in a context-overflow answer): use it from
        now on, unless LLM_CONTEXT_TOKENS is set."""
        if self._props is not None and not self.context_tokens and n_ctx > 0:
            self._props = ServerProps(n_ctx, self._props.total_slots, self._props.kind)

    def _probe_json(self, method: str, path: str, *, answered: bool = False, **kwargs: Any) -> Any:
        """A probe's JSON answer; None when the server lacks or refuses the endpoint, or,
        once it `answered` another probe, fails on this one."""
        try:
            response = self._call_optional(method, path, **kwargs)
        except LlmRejectedError:
            return None
        except LlmError:
            if answered:
                return None
            raise
        if response is None:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def _probe(self) -> tuple[int | None, int | None, str]:
        props = self._probe_json("GET", "/props")
        if isinstance(props, dict):
            n_ctx, slots = context_from_props(props)
            return n_ctx, slots, "llama.cpp"
        models = self._probe_json("GET", "/v1/models", answered=True)
        n_ctx, kind = context_from_models(models, self.model)
        if n_ctx is not None or self.context_tokens:
            return n_ctx, None, kind
        shown = self._probe_json("POST", "/api/show", answered=True, json={"model": self.model})
        ollama = context_from_ollama_show(shown)
        if ollama is not None:
            return ollama, None, "ollama"
        return None, None, kind

    def count_tokens(self, text: str) -> int:
        """Token count with the server's own tokenizer, cached per text; an estimate
        (`estimate_tokens`) from a server without `/tokenize`."""
        cached = self._token_cache.get(text)
        if cached is not None:
            return cached
        missing_at = self._no_tokenize_at
        if missing_at is not None and time.monotonic() - missing_at < _MISSING_RECHECK_S:
            return estimate_tokens(text)
        llama = self._props is None or self._props.kind == "llama.cpp"
        # llama.cpp reads `content`; vLLM reads `model` and `prompt` and also says `count`.
        body = {"content": text} if llama else {"model": self.model, "prompt": text}
        try:
            response = self._call_optional("POST", "/tokenize", json=body)
        except LlmRejectedError:
            response = None  # a `/tokenize` of another shape, or one behind a refusing proxy
        try:
            data = response.json() if response is not None else None
        except ValueError:
            data = None
        count = data.get("count") if isinstance(data, dict) else None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(count, int):
            count = len(tokens) if isinstance(tokens, list) else None
        if count is None:
            self._no_tokenize_at = time.monotonic()
            return estimate_tokens(text)
        self._no_tokenize_at = None
        if len(self._token_cache) > 50_000:  # one process serves many jobs: stay bounded
            self._token_cache.clear()
        self._token_cache[text] = count
        return count

    def first_token_deadline(self, prompt_tokens: int) -> float:
        """Seconds the first token may take for a prompt of `prompt_tokens` tokens."""
        return first_token_deadline(
            prompt_tokens,
            base_s=self.first_token_base_s,
            tokens_per_s=self.prompt_tokens_per_s,
            cap_s=self.first_token_timeout_s,
        )

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
        """Stream one chat completion, retrying failures that happen before the first token
        (but not a first token that did not come in time).

        `on_token` returns False to stop (cancelled job or stale attempt), and so does
        `on_progress`, called until the first token (see `workers.llm.progress`); the
        first-token deadline follows from `prompt_tokens`. A failure after tokens were
        delivered raises StreamBrokenError: the caller decides how to restart.
        `response_format` (OpenAI's, e.g. a JSON schema) constrains the answer.
        """
        reporter = ProgressReporter(
            on_progress,
            deadline_s=self.first_token_deadline(prompt_tokens),
            prompt_tokens=prompt_tokens,
            interval_s=self.progress_interval_s,
        )
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream_options": {"include_usage": True},
            "cache_prompt": self.cache_prompt,
            # llama.cpp reports prompt processing in the stream.
            "return_progress": True,
            **(sampling or {}),
            **({"response_format": dict(response_format)} if response_format else {}),
        }
        if self._props is not None and self._props.kind != "llama.cpp":
            body = {key: value for key, value in body.items() if key not in _LLAMA_ONLY}

        def wait(seconds: float) -> None:
            # Between tries (a model still loading, say) the reader keeps hearing from us.
            until = time.monotonic() + seconds
            while (left := until - time.monotonic()) > 0:
                time.sleep(min(left, 0.5))
                reporter.tick()

        # Only a failure before the first token is retried here (StreamBrokenError is the
        # caller's), and not a first token that did not come in time; past LLM_MAX_RETRIES,
        # only while the model is still loading.
        return self.retry.call(
            lambda: self._stream_once(body, on_token, should_stop, reporter),
            retry_if=lambda exc: (
                _may_pass(exc) and not isinstance(exc, StreamBrokenError | LlmTimeoutError)
            ),
            patient=lambda exc: "Loading model" in str(exc),
            what="LLM chat completion",
            sleep=wait,
        )

    def _stream_once(
        self,
        body: dict[str, Any],
        on_token: Callable[[str], bool],
        should_stop: Callable[[], bool],
        reporter: ProgressReporter,
    ) -> Completion:
        url = self._url("/v1/chat/completions")
        lines: queue.Queue[object] = queue.Queue(maxsize=10_000)
        holder: dict[str, httpx.Response] = {}
        abort = threading.Event()
        first_token_s = reporter.deadline_s
        read_timeout = max(first_token_s, self.idle_timeout_s) + 5

        def reader() -> None:
            try:
                with self.http.stream(
                    "POST",
                    url,
                    json=body,
                    headers=self._headers,
                    timeout=self._timeout(read_timeout),
                ) as response:
                    holder["response"] = response
                    if abort.is_set():
                        return
                    if response.status_code >= 400:
                        response.read()
                        lines.put(parse_error_body(response.status_code, response.text))
                        return
                    for line in response.iter_lines():
                        lines.put(line)
                        if abort.is_set():
                            return
                lines.put(_END)
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread as is
                lines.put(exc)

        thread = threading.Thread(target=reader, name="llm-stream", daemon=True)
        started = time.monotonic()
        thread.start()
        text: list[str] = []
        chunks = 0
        finish_reason: str | None = None
        timings: dict[str, Any] | None = None
        usage: dict[str, Any] | None = None
        ttft: float | None = None
        last = started

        def stop() -> bool:
            # Until the first token, every poll may owe the reader a heartbeat.
            return should_stop() or (ttft is None and not reporter.tick())

        try:
            while True:
                # The first token is due from the request, whatever came before it.
                if ttft is None:
                    limit, deadline = first_token_s, started + first_token_s
                else:
                    limit, deadline = self.idle_timeout_s, last + self.idle_timeout_s
                item = self._next(lines, deadline, stop, min(0.5, self.progress_interval_s))
                if item is None:
                    return Completion(
                        "".join(text), "cancelled", chunks, timings, usage, ttft, stopped=True
                    )
                if isinstance(item, _Timeout):
                    what = "first token" if ttft is None else "next token"
                    raise self._broken(
                        LlmTimeoutError(f"LLM server sent no {what} within {limit:g} s"), chunks
                    )
                if item is _END:
                    raise self._broken(LlmError("LLM stream ended without [DONE]"), chunks)
                if isinstance(item, LlmRejectedError):
                    raise item
                if isinstance(item, LlmError):
                    raise self._broken(item, chunks)
                if isinstance(item, Exception):
                    raise self._broken(LlmError(f"LLM stream failed: {item!r}"), chunks)
                assert isinstance(item, str)
                if not item.startswith("data:"):
                    continue
                payload = item[5:].strip()
                if payload == "[DONE]":
                    return Completion("".join(text), finish_reason, chunks, timings, usage, ttft)
                chunk = json.loads(payload)
                if "error" in chunk:
                    error = chunk["error"]
                    raise self._broken(LlmError(f"LLM server error mid-stream: {error}"), chunks)
                progress = server_progress(chunk) if ttft is None else None
                if progress is not None and not reporter.server(progress):
                    return Completion("", "cancelled", chunks, timings, usage, ttft, stopped=True)
                content, reason = _chunk_content(chunk)
                finish_reason = reason or finish_reason
                timings = chunk.get("timings") or timings
                usage = chunk.get("usage") or usage
                last = time.monotonic()
                if content:
                    if ttft is None:
                        ttft = last - started
                    chunks += 1
                    text.append(content)
                    if not on_token(content):
                        return Completion(
                            "".join(text), "cancelled", chunks, timings, usage, ttft, stopped=True
                        )
        finally:
            abort.set()
            response = holder.get("response")
            if response is not None:
                response.close()

    @staticmethod
    def _broken(error: LlmError, chunks: int) -> LlmError:
        if chunks == 0:
            return error
        return StreamBrokenError(error.message, chunks=chunks)

    @staticmethod
    def _next(
        lines: queue.Queue[object],
        deadline: float,
        should_stop: Callable[[], bool],
        poll_s: float = 0.5,
    ) -> object:
        """The next item, None if the caller wants to stop (asked every `poll_s` while
        nothing comes), or _Timeout past the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _Timeout()
            try:
                return lines.get(timeout=min(remaining, poll_s))
            except queue.Empty:
                if should_stop():
                    return None


class _Timeout:
    pass
