"""vLLM, Ollama and other OpenAI-compatible servers through the client and the call_llm stage:
what each says about its context, its tokenizer, its overflow errors, the API key, and the
fields only llama.cpp reads (issue 22). The stub answers in each server's shapes."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.errors import ContextOverflowError
from tests.stubs.llama_stub import LlamaStub, StubConfig, start_llama_stub, tokenize
from tests.stubs.server import ThreadedServer
from tests.unit.test_llm_client import REQUEST, ListSink, incident
from workers.llm.client import FALLBACK_CONTEXT_TOKENS, LlamaClient, parse_error_body
from workers.llm.server_info import (
    context_from_models,
    context_from_ollama_show,
    context_from_props,
    context_overflow,
)
from workers.stages.call_llm import LlmOptions, run

OPTIONS = LlmOptions(max_tokens=256, temperature=0.1, sampling={"dry_multiplier": 0.8})
LLAMA_ONLY = ("cache_prompt", "return_progress", "dry_multiplier")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LlamaStub, ThreadedServer]]:
    stub, http = start_llama_stub()
    yield stub, http
    http.stop()


@pytest.fixture
def stub(server: tuple[LlamaStub, ThreadedServer]) -> LlamaStub:
    server[0].reset()
    return server[0]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def make_client(
    server: tuple[LlamaStub, ThreadedServer], http: httpx.Client, **kw: Any
) -> LlamaClient:
    return LlamaClient(
        http,
        server[1].url,
        model=kw.pop("model", "smollm2:135m"),
        first_token_timeout_s=2.0,
        idle_timeout_s=1.0,
        loading_wait_s=1.0,
        max_retries=1,
        **kw,
    )


def paths(stub: LlamaStub) -> list[str]:
    return [path for path, _ in stub.auth]


# --- Reading what the server says (pure) ----------------------------------------------------


def test_props_of_llama_cpp() -> None:
    data = {"default_generation_settings": {"n_ctx": 8192}, "total_slots": 4}
    assert context_from_props(data) == (8192, 4)
    assert context_from_props({"n_ctx": 2048}) == (2048, None)
    assert context_from_props([]) == (None, None)
    assert context_from_props({"default_generation_settings": {"n_ctx": "x"}}) == (None, None)


@pytest.mark.parametrize(
    ("data", "model", "expected"),
    [
        ({"data": [{"id": "m", "owned_by": "vllm", "max_model_len": 32768}]}, "m", (32768, "vllm")),
        # The named entry wins over the others.
        (
            {"data": [{"id": "a", "max_model_len": 1}, {"id": "m", "max_model_len": 2048}]},
            "m",
            (2048, "openai"),
        ),
        # Several entries, none named: nobody's context.
        (
            {"data": [{"id": "a", "max_model_len": 1}, {"id": "b", "max_model_len": 2}]},
            "m",
            (None, "openai"),
        ),
        # One entry under another name (llama.cpp's file name): its context if it has one.
        (
            {"data": [{"id": "file.gguf", "owned_by": "llamacpp", "meta": {"n_ctx_train": 8192}}]},
            "m",
            (None, "openai"),
        ),
        ({"data": [{"id": "m", "context_length": 128000}]}, "m", (128000, "openai")),
        ({"data": [{"id": "m", "owned_by": "library"}]}, "m", (None, "openai")),
        ({"data": [{"id": "m", "max_model_len": True}]}, "m", (None, "openai")),
        ({"object": "list"}, "m", (None, "openai")),
        ("not json object", "m", (None, "openai")),
    ],
)
def test_models_list(data: Any, model: str, expected: tuple[int | None, str]) -> None:
    assert context_from_models(data, model) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # num_ctx in the parameters is what Ollama runs with.
        ({"parameters": 'stop "<|im_end|>"\nnum_ctx 16384', "model_info": {}}, 16384),
        ({"parameters": "num_ctx                        1024"}, 1024),
        # Otherwise the trained context, at most the fallback (Ollama allocates less).
        (
            {"model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}},
            FALLBACK_CONTEXT_TOKENS,
        ),
        ({"model_info": {"general.architecture": "llama", "llama.context_length": 2048}}, 2048),
        ({"model_info": {"gemma3.context_length": 1024}}, 1024),
        ({"model_info": {"general.architecture": "llama"}}, None),
        ({"error": "model 'x' not found"}, None),
        (None, None),
    ],
)
def test_ollama_show(data: Any, expected: int | None) -> None:
    assert context_from_ollama_show(data) == expected


VLLM_OVERFLOW = (
    "This model's maximum context length is 2048 tokens. However, you requested 512 output "
    "tokens and your prompt contains 1800 input tokens, for a total of 2312 tokens. Please "
    "reduce the length of the input prompt or the number of requested output tokens."
)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (
            400,
            {"type": "exceed_context_size_error", "n_prompt_tokens": 931, "n_ctx": 512},
            (931, 512),
        ),
        (400, {"message": VLLM_OVERFLOW, "type": "BadRequestError", "code": 400}, (1800, 2048)),
        (
            400,
            {
                "message": "This model's maximum context length is 4096 tokens. However, you "
                "requested 5000 tokens (4000 in the messages, 1000 in the completion)."
            },
            (4000, 4096),
        ),
        (
            400,
            {
                "message": "'max_tokens' or 'max_completion_tokens' is too large: 1024. This "
                "model's maximum context length is 2048 tokens and your request has 1500 input "
                "tokens (1024 > 2048 - 1500)."
            },
            (1500, 2048),
        ),
        (400, {"message": "too long", "code": "context_length_exceeded"}, (None, None)),
        (400, {"message": "the input exceeds the context window of this model"}, (None, None)),
        (413, {"message": "prompt is too long"}, (None, None)),
        (400, {"message": "invalid temperature"}, None),
        (429, {"message": "too many tokens per minute"}, None),
        (500, {"message": VLLM_OVERFLOW}, None),
    ],
)
def test_context_overflow_answers(
    status: int, error: dict[str, Any], expected: tuple[int | None, int | None] | None
) -> None:
    assert context_overflow(status, error) == expected


def test_vllm_overflow_body_becomes_a_context_overflow_error() -> None:
    body = json.dumps({"error": {"message": VLLM_OVERFLOW, "type": "BadRequestError", "code": 400}})
    error = parse_error_body(400, body)
    assert isinstance(error, ContextOverflowError)
    assert (error.n_prompt_tokens, error.n_ctx) == (1800, 2048)
    # vLLM before 0.8 answered without the `error` wrapper.
    old = json.dumps({"object": "error", "message": VLLM_OVERFLOW, "type": "BadRequestError"})
    assert isinstance(parse_error_body(400, old), ContextOverflowError)


# --- Probing a server once ---------------------------------------------------------------------


def test_vllm_context_and_tokenizer(
    stub: LlamaStub, server: tuple[LlamaStub, ThreadedServer], http: httpx.Client
) -> None:
    stub.reset(StubConfig(flavor="vllm", n_ctx=2048, served_model="Qwen/Qwen2.5-7B-Instruct"))
    client = make_client(server, http, model="Qwen/Qwen2.5-7B-Instruct")
    props = client.props()
    assert (props.n_ctx, props.total_slots, props.kind) == (2048, 1, "vllm")
    text = "ERROR connection refused redis:6379 after 3 attempts"
    assert client.count_tokens(text) == len(tokenize(text))  # the server's count, not 52/3
    client.props()
    client.props()
    assert paths(stub) == ["/props", "/v1/models", "/tokenize"]


@pytest.mark.parametrize(
    ("num_ctx_parameter", "runtime", "expected"),
    [(False, 4096, FALLBACK_CONTEXT_TOKENS), (True, 1024, 1024), (True, 16384, 16384)],
)
def test_ollama_context_from_show(
    stub: LlamaStub,
    server: tuple[LlamaStub, ThreadedServer],
    http: httpx.Client,
    num_ctx_parameter: bool,
    runtime: int,
    expected: int,
) -> None:
    stub.reset(
        StubConfig(
            flavor="ollama",
            n_ctx=32768,
            served_model="smollm2:135m",
            ollama_runtime_ctx=runtime,
            ollama_num_ctx_parameter=num_ctx_parameter,
        )
    )
    client = make_client(server, http)
    props = client.props()
    assert (props.n_ctx, props.total_slots, props.kind) == (expected, 1, "ollama")
    text = "ERROR connection refused"
    assert client.count_tokens(text) == math.ceil(len(text) / 3)  # no tokenizer: the estimate
    assert paths(stub) == ["/props", "/v1/models", "/api/show", "/tokenize"]


def test_settings_win_over_the_server(
    stub: LlamaStub, server: tuple[LlamaStub, ThreadedServer], http: httpx.Client
) -> None:
    client = make_client(server, http, context_tokens=1024, concurrency=2)
    props = client.props()
    assert (props.n_ctx, props.total_slots) == (1024, 2)
    stub.reset(StubConfig(flavor="ollama"))
    props = make_client(server, http, context_tokens=1024, concurrency=3).props()
    assert (props.n_ctx, props.total_slots) == (1024, 3)
    # A server that does not say how many requests it takes gets LLM_CONCURRENCY, else one.
    assert make_client(server, http).props().total_slots == 1


def test_an_unreachable_server_is_asked_again(http: httpx.Client) -> None:
    stub, server = start_llama_stub()
    url = server.url
    server.stop()
    client = LlamaClient(http, url, model="m", loading_wait_s=0.5, max_retries=0)
    with pytest.raises(Exception, match="unreachable"):
        client.props()
    assert client._props is None


# --- The API key and llama.cpp's own fields ---------------------------------------------------


def test_the_api_key_goes_with_every_request_and_nowhere_else(
    stub: LlamaStub,
    server: tuple[LlamaStub, ThreadedServer],
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "sk-test-0123456789abcdef"
    stub.reset(StubConfig(flavor="vllm", require_key=key))
    client = make_client(server, http, api_key=key)
    caplog.set_level(logging.DEBUG)
    result, _ = run(incident(300), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS)
    assert result.model_status == "answered", result.model_error
    assert stub.auth and all(auth == f"Bearer {key}" for _, auth in stub.auth)
    assert key not in repr(client) and key not in caplog.text
    assert key not in result.model_dump_json()
    # A wrong key: the server's refusal, with the findings kept, and the key in no message.
    stub.reset(StubConfig(flavor="vllm", require_key="another"))
    result, _ = run(
        incident(300),
        request=REQUEST,
        client=make_client(server, http, api_key=key),
        sink=ListSink(),
        options=OPTIONS,
    )
    assert result.model_status == "failed" and result.model_error is not None
    assert "Invalid API key" in result.model_error.message
    assert key not in result.model_dump_json() and key not in caplog.text
    assert result.findings is not None and result.evidence


def test_no_key_no_header(
    stub: LlamaStub, server: tuple[LlamaStub, ThreadedServer], http: httpx.Client
) -> None:
    run(
        incident(300),
        request=REQUEST,
        client=make_client(server, http),
        sink=ListSink(),
        options=OPTIONS,
    )
    assert stub.auth and all(auth is None for _, auth in stub.auth)


@pytest.mark.parametrize("flavor", ["vllm", "ollama"])
def test_llama_cpp_fields_go_to_llama_cpp_only(
    server: tuple[LlamaStub, ThreadedServer], http: httpx.Client, flavor: str
) -> None:
    stub = server[0]
    stub.reset()
    run(
        incident(300),
        request=REQUEST,
        client=make_client(server, http),
        sink=ListSink(),
        options=OPTIONS,
    )
    assert all(field in stub.requests[-1] for field in LLAMA_ONLY)
    stub.reset(StubConfig(flavor=flavor))  # type: ignore[arg-type]
    run(
        incident(300),
        request=REQUEST,
        client=make_client(server, http),
        sink=ListSink(),
        options=OPTIONS,
    )
    sent = stub.requests[-1]
    assert not any(field in sent for field in LLAMA_ONLY)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


# --- A job's answer from each server ----------------------------------------------------------


@pytest.mark.parametrize("flavor", ["vllm", "ollama"])
def test_a_job_gets_an_answer_with_its_findings(
    server: tuple[LlamaStub, ThreadedServer], http: httpx.Client, flavor: str
) -> None:
    stub = server[0]
    stub.reset(StubConfig(flavor=flavor, served_model="smollm2:135m", n_ctx=8192))  # type: ignore[arg-type]
    sink = ListSink()
    result, counts = run(
        incident(300), request=REQUEST, client=make_client(server, http), sink=sink, options=OPTIONS
    )
    assert result.model_status == "answered", result.model_error
    assert result.analysis == stub.config.reply == "".join(sink.tokens)
    assert result.finish_reason == "stop"
    assert result.findings is not None and result.findings.probable_causes and result.evidence
    assert result.model == "smollm2:135m"
    assert stub.truncated == 0  # Ollama never had to cut the prompt
    assert counts.prompt_tokens is not None and counts.prompt_tokens > 0


def test_ollama_prompt_fits_the_context_it_runs_with(
    server: tuple[LlamaStub, ThreadedServer], http: httpx.Client
) -> None:
    """Ollama trained for 32k but running with 1024 (num_ctx): the prompt is cut to 1024 by
    the client, never by Ollama, which would do it silently."""
    stub = server[0]
    config = StubConfig(
        flavor="ollama", n_ctx=32768, ollama_runtime_ctx=1024, ollama_num_ctx_parameter=True
    )
    stub.reset(config)
    result, _ = run(
        incident(3000),
        request=REQUEST,
        client=make_client(server, http),
        sink=ListSink(),
        options=OPTIONS,
    )
    assert result.model_status == "answered", result.model_error
    assert stub.truncated == 0
    assert result.evidence_omitted > 0  # there was more evidence than fits


def test_vllm_overflow_shrinks_the_prompt_and_retries_once(
    server: tuple[LlamaStub, ThreadedServer], http: httpx.Client
) -> None:
    """LLM_CONTEXT_TOKENS says 8192 but vLLM serves 1024: its 400 tells the real context and
    the prompt's size, the prompt is rebuilt for it (evidence dropped from the end), once."""
    stub = server[0]
    stub.reset(StubConfig(flavor="vllm", n_ctx=1024))
    client = make_client(server, http, context_tokens=8192)
    result, _ = run(
        incident(3000), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS
    )
    assert result.model_status == "answered", result.model_error
    assert len(stub.requests) == 2
    first, second = stub.requests
    assert len(json.dumps(second["messages"])) < len(json.dumps(first["messages"]))
    assert second["max_tokens"] <= 1024 // 4
    assert result.evidence_omitted > 0


def test_a_context_too_small_for_any_prompt_keeps_the_findings(
    server: tuple[LlamaStub, ThreadedServer], http: httpx.Client
) -> None:
    """The server's overflow answer says 40 tokens: no prompt fits, no second request."""
    stub = server[0]
    stub.reset(StubConfig(flavor="vllm", n_ctx=40))
    client = make_client(server, http, context_tokens=8192)
    result, _ = run(incident(300), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS)
    assert result.model_status == "failed" and result.model_error is not None
    assert result.model_error.code == "context_overflow"
    assert result.findings is not None and result.evidence
    assert len(stub.requests) == 1


# --- A server outside the cluster --------------------------------------------------------------


def test_a_remote_server_is_refused_at_job_time_with_the_findings_kept(http: httpx.Client) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        client = LlamaClient(mocked, "https://api.openai.com", model="gpt-4o-mini")
        result, _ = run(
            incident(300), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS
        )
    assert result.model_status == "failed" and result.model_error is not None
    assert result.model_error.code == "llm_remote_refused"
    assert "LLM_ALLOW_REMOTE" in result.model_error.message
    assert result.findings is not None and result.evidence
    assert requests == []  # not one byte left


def test_a_remote_server_is_used_when_allowed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path != "/v1/chat/completions":
            return httpx.Response(404, json={"error": {"message": "not found"}})
        chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        client = LlamaClient(
            mocked, "https://api.openai.com", model="gpt-4o-mini", allow_remote=True, api_key="k"
        )
        result, _ = run(
            incident(300), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS
        )
    assert result.model_status == "answered", result.model_error
    assert result.analysis == "ok"
    assert "/v1/chat/completions" in seen


def test_openai_context_length_exceeded_shrinks_once() -> None:
    """OpenAI's refusal names no counts: the prompt is rebuilt at half its budget, once."""
    chats: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/chat/completions":
            return httpx.Response(404, json={"error": {"message": "not found"}})
        chats.append(json.loads(request.content))
        if len(chats) == 1:
            error = {
                "message": "Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
            return httpx.Response(400, json={"error": error})
        chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        client = LlamaClient(mocked, "http://gateway.ai.svc:4000", model="gpt-4o-mini")
        result, _ = run(
            incident(3000), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS
        )
    assert result.model_status == "answered", result.model_error
    assert len(chats) == 2
    first, second = (len(json.dumps(c["messages"])) for c in chats)
    assert second < first * 0.6
