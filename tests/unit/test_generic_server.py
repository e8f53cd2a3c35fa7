"""Servers other than llama.cpp: no `/props` or `/tokenize`, `{"error": "text"}` bodies, and a
call_llm that goes wrong in an unexpected way; the findings are never lost (issue 22)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.errors import ContextOverflowError, LlmError, LlmRejectedError
from tests.stubs.llama_stub import LlamaStub, StubConfig, start_llama_stub
from tests.stubs.server import ThreadedServer
from tests.unit.test_llm_client import REQUEST, ListSink, incident
from workers.llm.client import FALLBACK_CONTEXT_TOKENS, LlamaClient, parse_error_body
from workers.stages.call_llm import LlmOptions, run

OPTIONS = LlmOptions(max_tokens=64, temperature=0.1)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LlamaStub, ThreadedServer]]:
    stub, http = start_llama_stub()
    yield stub, http
    http.stop()


@pytest.fixture
def stub(server: tuple[LlamaStub, ThreadedServer]) -> LlamaStub:
    server[0].reset()
    return server[0]


def make_client(url: str, http: httpx.Client, **settings: Any) -> LlamaClient:
    return LlamaClient(
        http,
        url,
        model="any",
        first_token_timeout_s=2.0,
        idle_timeout_s=1.0,
        loading_wait_s=1.0,
        max_retries=1,
        **settings,
    )


@pytest.fixture
def client(server: tuple[LlamaStub, ThreadedServer]) -> Iterator[LlamaClient]:
    with httpx.Client() as http:
        yield make_client(server[1].url, http)


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (500, '{"error": "model runner has unexpectedly stopped"}', LlmError, "unexpectedly"),
        (404, '{"error": "model \\"x\\" not found, try pulling it first"}', LlmRejectedError, "x"),
        (
            400,
            '{"error": {"message": "bad", "type": "invalid_request_error"}}',
            LlmRejectedError,
            "bad",
        ),
        (502, '["not", "an", "object"]', LlmError, "not"),
        (503, "upstream connect error", LlmError, "upstream connect error"),
        (500, "", LlmError, "HTTP 500"),
        (500, '{"detail": "x"}', LlmError, "detail"),
        (500, '{"error": null}', LlmError, "null"),
    ],
)
def test_error_bodies_of_any_shape_keep_the_servers_message(
    status: int, body: str, kind: type[Exception], message: str
) -> None:
    error = parse_error_body(status, body)
    assert type(error) is kind
    assert message in str(error)


def test_llama_context_overflow_is_still_recognised() -> None:
    body = (
        '{"error": {"code": 400, "message": "too long", "type": "exceed_context_size_error",'
        ' "n_prompt_tokens": 9000, "n_ctx": 8192}}'
    )
    error = parse_error_body(400, body)
    assert isinstance(error, ContextOverflowError)
    assert (error.n_prompt_tokens, error.n_ctx) == (9000, 8192)


def test_without_props_the_context_is_a_conservative_default(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.generic_only = True
    props = client.props()
    assert props.n_ctx == FALLBACK_CONTEXT_TOKENS < stub.config.n_ctx
    assert props.total_slots == 1


def test_the_context_setting_wins_over_the_server(
    stub: LlamaStub, server: tuple[LlamaStub, ThreadedServer]
) -> None:
    with httpx.Client() as http:
        assert make_client(server[1].url, http, context_tokens=2048).props().n_ctx == 2048
        stub.config.generic_only = True
        assert make_client(server[1].url, http, context_tokens=2048).props().n_ctx == 2048


def test_without_tokenize_tokens_are_estimated_with_a_margin(
    stub: LlamaStub, server: tuple[LlamaStub, ThreadedServer]
) -> None:
    stub.config.generic_only = True
    asked: list[str] = []
    hooks = {"request": [lambda request: asked.append(request.url.path)]}
    with httpx.Client(event_hooks=hooks) as http:
        client = make_client(server[1].url, http)
        text = "ERROR connection refused redis:6379 after 3 attempts"
        assert client.count_tokens(text) == math.ceil(len(text) / 3)
        assert client.count_tokens("another text") == math.ceil(len("another text") / 3)
    # The missing endpoint is asked once, not for every text.
    assert asked == ["/tokenize"]


@pytest.mark.parametrize("error_text", [False, True])
def test_a_generic_server_gives_an_answer_with_the_findings(
    server: tuple[LlamaStub, ThreadedServer], error_text: bool
) -> None:
    stub = server[0]
    stub.reset(StubConfig(generic_only=True, error_text=error_text, prompt_progress=False))
    with httpx.Client() as http:
        result, _ = run(
            incident(300),
            request=REQUEST,
            client=make_client(server[1].url, http),
            sink=ListSink(),
            options=OPTIONS,
        )
    assert result.model_status == "answered", result.model_error
    assert result.analysis == stub.config.reply
    assert result.findings is not None and result.evidence
    # The estimate kept the prompt inside the fallback context.
    assert result.prompt_tokens is not None and result.prompt_tokens < FALLBACK_CONTEXT_TOKENS


def test_a_text_error_body_becomes_a_failed_model_with_the_servers_message(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.error_text = True
    stub.config.fail_next = [500] * 10
    result, _ = run(incident(300), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS)
    assert result.model_status == "failed"
    assert result.model_error is not None
    assert result.model_error.code == "llm_unavailable"
    assert "stub failure" in result.model_error.message
    assert result.findings is not None and result.findings.probable_causes
    assert result.evidence


@pytest.mark.parametrize("chunk", ["[]", "{oops"])
def test_an_unexpected_error_in_the_call_keeps_the_findings(
    stub: LlamaStub, client: LlamaClient, chunk: str
) -> None:
    stub.config.bad_chunk = chunk
    result, counts = run(
        incident(300), request=REQUEST, client=client, sink=ListSink(), options=OPTIONS
    )
    assert result.model_status == "failed"
    assert result.model_error is not None
    assert result.model_error.code == "internal_error"
    assert result.model_error.stage == "call_llm"
    assert result.findings is not None and result.findings.probable_causes
    assert result.evidence and counts.evidence == len(result.evidence)


def test_the_fatal_exceptions_still_end_the_stage(stub: LlamaStub, client: LlamaClient) -> None:
    """The task's time limit (passed as `fatal`) is not turned into a failed model."""
    stub.config.bad_chunk = "{oops"
    with pytest.raises(ValueError):
        run(
            incident(300),
            request=REQUEST,
            client=client,
            sink=ListSink(),
            options=OPTIONS,
            fatal=(ValueError,),
        )
