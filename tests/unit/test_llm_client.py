"""The LLM client and the call_llm stage against the llama-server stub over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from shared.errors import ContextOverflowError, LlmError, LlmTimeoutError
from shared.schemas import AnalysisRequest, Entry, Level, NormalizeResult, ProgressData
from tests.stubs.llama_stub import LlamaStub, start_llama_stub, tokenize
from tests.stubs.server import ThreadedServer
from workers.llm.client import Completion, LlamaClient, StreamBrokenError
from workers.llm.progress import first_token_deadline
from workers.stages.call_llm import analyze
from workers.stages.normalize import normalize


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
def client(server: tuple[LlamaStub, ThreadedServer]) -> Iterator[LlamaClient]:
    with httpx.Client() as http:
        yield LlamaClient(
            http,
            server[1].url,
            model="smollm2",
            first_token_timeout_s=1.0,
            idle_timeout_s=0.5,
            loading_wait_s=2.0,
            max_retries=2,
            progress_interval_s=0.2,
        )


MESSAGES = [{"role": "user", "content": "what went wrong?"}]


def stream(
    client: LlamaClient,
    tokens: list[str] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: list[ProgressData] | None = None,
    messages: list[dict[str, str]] = MESSAGES,
    prompt_tokens: int = 0,
) -> Completion:
    sink = tokens if tokens is not None else []
    reports = progress if progress is not None else []

    def on_token(text: str) -> bool:
        sink.append(text)
        return True

    def on_progress(data: ProgressData) -> bool:
        reports.append(data)
        return True

    return client.stream_chat(
        messages,
        max_tokens=400,
        temperature=0.1,
        on_token=on_token,
        should_stop=should_stop,
        prompt_tokens=prompt_tokens,
        on_progress=on_progress,
    )


def test_streams_tokens_and_timings(stub: LlamaStub, client: LlamaClient) -> None:
    tokens: list[str] = []
    completion = stream(client, tokens)
    assert "".join(tokens) == stub.config.reply == completion.text
    assert completion.finish_reason == "stop"
    assert completion.timings is not None and completion.timings["predicted_n"] == len(tokens)
    assert stub.requests[0]["max_tokens"] == 400 and stub.requests[0]["stream"] is True


def test_waits_while_model_loads(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.loading_until = time.time() + 0.6
    assert client.props().n_ctx == stub.config.n_ctx
    stub.config.loading_until = time.time() + 0.6
    assert stream(client).text == stub.config.reply


def test_loading_longer_than_the_bounded_wait_fails(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.loading_until = time.time() + 30
    started = time.monotonic()
    with pytest.raises(LlmError, match="Loading model"):
        client.props()
    assert time.monotonic() - started < 6


def test_5xx_before_first_token_is_retried(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.fail_next = [500, 503]
    assert stream(client).text == stub.config.reply
    assert len(stub.requests) == 3


def test_5xx_beyond_retries_fails(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.fail_next = [500, 500, 500]
    with pytest.raises(LlmError, match="500"):
        stream(client)


def test_slow_first_token_times_out(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.hang_first_token_s = 3
    started = time.monotonic()
    with pytest.raises(LlmTimeoutError, match="first token"):
        stream(client)
    assert time.monotonic() - started < 6


@pytest.mark.parametrize(
    ("prompt_tokens", "expected"),
    [(0, 15.0), (1_000, 35.0), (4_000, 95.0), (6_000, 120.0), (100_000, 120.0)],
)
def test_first_token_deadline_follows_the_prompt_size(prompt_tokens: int, expected: float) -> None:
    deadline = first_token_deadline(prompt_tokens, base_s=15, tokens_per_s=50, cap_s=120)
    assert deadline == expected


LONG_PROMPT = [{"role": "user", "content": " ".join(f"word{i}" for i in range(56))}]  # 60 tokens


def test_llama_prompt_progress_is_passed_on_until_the_first_token(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.prompt_tokens_per_s, stub.config.n_batch = 200, 16
    progress: list[ProgressData] = []
    tokens: list[str] = []
    completion = stream(client, tokens, progress=progress, messages=LONG_PROMPT, prompt_tokens=60)
    assert stub.requests[0]["return_progress"] is True
    # As llama.cpp reports it: as the slot starts, then after each batch of 16 tokens.
    reports = [p.server for p in progress if p.server is not None]
    assert [r.processed for r in reports] == [0, 16, 32, 48, 60]
    assert {(r.total, r.cache) for r in reports} == {(60, 0)}
    assert all(p.prompt_tokens == 60 and p.deadline_s == 1.0 for p in progress)
    assert completion.text == "".join(tokens) == stub.config.reply


def test_a_server_without_progress_gets_a_heartbeat(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.prompt_progress, stub.config.first_token_delay_s = False, 0.75
    progress: list[ProgressData] = []
    assert stream(client, progress=progress).text == stub.config.reply
    elapsed = [p.elapsed_s for p in progress]
    assert len(elapsed) >= 3 and elapsed == sorted(elapsed)
    assert all(p.server is None for p in progress)
    # At least the interval apart (elapsed_s is rounded to hundredths).
    assert all(b - a >= 0.19 for a, b in zip(elapsed, elapsed[1:], strict=False))


def test_progress_does_not_extend_the_first_token_deadline(
    stub: LlamaStub, client: LlamaClient
) -> None:
    # Progress every 0.16 s, the prompt done after 3 s: the first token is still due in 1 s.
    stub.config.prompt_tokens_per_s, stub.config.n_batch = 20, 3
    progress: list[ProgressData] = []
    started = time.monotonic()
    with pytest.raises(LlmTimeoutError, match="first token within 1 s"):
        stream(client, progress=progress, messages=LONG_PROMPT)
    assert time.monotonic() - started < 2
    assert len([p for p in progress if p.server is not None]) >= 4


def test_a_first_token_that_never_comes_is_not_asked_for_again(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.never_answer = True
    started = time.monotonic()
    with pytest.raises(LlmTimeoutError):
        stream(client)
    assert time.monotonic() - started < 2
    assert len(stub.requests) == 1


def test_heartbeats_go_on_while_a_loading_model_is_waited_for(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.loading_until = time.time() + 1.0
    progress: list[ProgressData] = []
    assert stream(client, progress=progress).text == stub.config.reply
    assert len(stub.requests) > 1 and len(progress) >= 3


def test_progress_that_says_stop_stops_the_call(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.never_answer = True
    completion = client.stream_chat(
        MESSAGES,
        max_tokens=10,
        temperature=0.1,
        on_token=lambda _t: True,
        on_progress=lambda _p: False,
    )
    assert completion.stopped and len(stub.requests) == 1


def test_idle_gap_between_tokens_times_out(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.token_interval_s = 2
    with pytest.raises(StreamBrokenError, match="next token"):
        stream(client)


def test_stream_cut_midway_is_reported_with_what_was_sent(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.cut_after_tokens, stub.config.cut_times = 5, 1
    tokens: list[str] = []
    with pytest.raises(StreamBrokenError) as info:
        stream(client, tokens)
    assert info.value.chunks == 5 == len(tokens)


def test_context_overflow_is_not_retried(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.n_ctx = 3
    with pytest.raises(ContextOverflowError) as info:
        stream(client)
    assert info.value.n_ctx == 3 and len(stub.requests) == 1


def test_should_stop_ends_the_wait_for_the_first_token(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.hang_first_token_s = 0.8
    completion = stream(client, should_stop=lambda: True)
    assert completion.stopped


def test_token_count_uses_the_server_tokenizer(stub: LlamaStub, client: LlamaClient) -> None:
    text = "ERROR connection refused redis:6379"
    assert client.count_tokens(text) == len(tokenize(text))


class ListSink:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.restarts = 0

    def token(self, text: str) -> bool:
        self.tokens.append(text)
        return True

    def restart(self, reason: str) -> bool:
        self.restarts += 1
        self.tokens.clear()
        return True

    def stopped(self) -> bool:
        return False


REQUEST = AnalysisRequest.model_validate(
    {
        "time_range": {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T11:00:00Z"},
        "filters": {"namespace": "shop"},
        "limit": 200,
    }
)


def incident(lines: int) -> NormalizeResult:
    base = 1_795_600_000_000_000_000

    def word(k: int) -> str:  # digits would be masked: distinct templates need letters
        return "".join(chr(97 + (k // 26**j) % 26) for j in range(3))

    entries = [
        Entry(
            base + i * 1_000_000,
            "shop",
            f"api-{i % 7}",
            "api",
            "node-1",
            Level.ERROR if i % 3 else Level.WARN,
            f"{word(i % 300)} handler {word(i % 300 + 1000)} failed after {i % 13} ms",
        )
        for i in range(lines)
    ]
    entries[10] = Entry(
        base + 10,
        "shop",
        "postgres-0",
        "postgres",
        "node-1",
        Level.FATAL,
        'PANIC: could not write to file "pg_wal/x": No space left on device',
    )
    return normalize(entries, max_evidence=200)


def test_100k_lines_into_a_512_token_context_gives_a_full_answer(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.n_ctx = 512
    sink = ListSink()
    result = analyze(
        incident(100_000),
        request=REQUEST,
        client=client,
        sink=sink,
        max_tokens=512,
        temperature=0.1,
    )
    assert result.analysis == stub.config.reply == "".join(sink.tokens)
    assert result.evidence and result.evidence_omitted > 0
    assert result.prompt_tokens is not None and result.prompt_tokens < 512
    assert stub.requests[-1]["max_tokens"] <= 128


def test_citations_are_checked_against_the_evidence_in_the_prompt(
    stub: LlamaStub, client: LlamaClient
) -> None:
    """An id of a template left out of the prompt to fit the context was not given to the
    model: citing it is as invalid as citing one that does not exist."""
    normalized = incident(100_000)
    stub.config.n_ctx = 512
    result = analyze(
        normalized, request=REQUEST, client=client, sink=ListSink(), max_tokens=512, temperature=0
    )
    prompt_ids = {item.template_id for item in result.evidence}
    left_out = next(i.template_id for i in normalized.evidence if i.template_id not in prompt_ids)
    kept = result.evidence[0].template_id
    stub.config.reply = f"{kept} failed first, then {left_out}; T9999 too."
    result = analyze(
        normalized, request=REQUEST, client=client, sink=ListSink(), max_tokens=512, temperature=0
    )
    assert {item.template_id for item in result.evidence} == prompt_ids
    assert result.citations.valid == [kept]
    assert result.citations.invalid == sorted([left_out, "T9999"], key=lambda t: int(t[1:]))


def test_prompt_size_counts_the_cached_part(stub: LlamaStub, client: LlamaClient) -> None:
    """A repeated prompt is served mostly from the server's cache: its size stays the same."""
    first = analyze(
        incident(100),
        request=REQUEST,
        client=client,
        sink=ListSink(),
        max_tokens=64,
        temperature=0.1,
    )
    again = analyze(
        incident(100),
        request=REQUEST,
        client=client,
        sink=ListSink(),
        max_tokens=64,
        temperature=0.1,
    )
    assert first.timings is not None and again.timings is not None
    assert first.prompt_tokens is not None
    assert again.timings.prompt_n == 1 and again.timings.cache_n == first.prompt_tokens - 1
    assert again.prompt_tokens == first.prompt_tokens
    assert again.prompt_tokens_cached == first.prompt_tokens - 1
    assert first.prompt_tokens_cached == 0


def test_overflow_despite_the_budget_shrinks_and_retries_once(
    stub: LlamaStub, client: LlamaClient
) -> None:
    # The server's chat template costs far more than our margin: the first try overflows.
    stub.config.n_ctx, stub.config.template_tokens_per_message = 1024, 200
    result = analyze(
        incident(2_000),
        request=REQUEST,
        client=client,
        sink=ListSink(),
        max_tokens=256,
        temperature=0.1,
    )
    assert len(stub.requests) == 2
    assert result.analysis == stub.config.reply


def test_broken_stream_restarts_and_tells_clients(stub: LlamaStub, client: LlamaClient) -> None:
    stub.config.cut_after_tokens, stub.config.cut_times = 4, 1
    sink = ListSink()
    result = analyze(
        incident(100), request=REQUEST, client=client, sink=sink, max_tokens=256, temperature=0.1
    )
    assert sink.restarts == 1
    assert "".join(sink.tokens) == result.analysis == stub.config.reply
