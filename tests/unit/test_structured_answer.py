"""Structured answers: the schema built per job, its token cap, the check of the answer, the
choice of format, and the call_llm stage in JSON mode against the schema-aware stub (issue 22).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.schemas import Findings, Level
from shared.schemas.findings import ProbableCause, Searched
from tests.stubs.llama_stub import LlamaStub, fill_schema, request_schema, start_llama_stub
from tests.stubs.server import ThreadedServer
from tests.unit.test_llm_client import REQUEST, ListSink, incident
from workers.llm.client import LlamaClient
from workers.llm.partial_json import render
from workers.llm.structured import (
    FULL_EXPLANATION_CHARS,
    FULL_STEP_CHARS,
    FULL_SUMMARY_CHARS,
    NONE,
    AnswerSchema,
    cause_ids,
    choose_format,
    system_prompt,
)
from workers.stages.call_llm import analyze


def cause(template_id: str) -> ProbableCause:
    return ProbableCause(
        template_id=template_id,
        fingerprint=template_id.lower(),
        template=f"ERROR {template_id}",
        level=Level.ERROR,
        first_seen=datetime(2026, 1, 1, tzinfo=UTC),
        count=3,
        confidence="high",
        reasons=["first error"],
    )


def findings(*ids: str) -> Findings:
    searched = Searched(
        query="{}",
        start=datetime(2026, 1, 1, tzinfo=UTC),
        end=datetime(2026, 1, 2, tzinfo=UTC),
        lines_scanned=10,
    )
    return Findings(
        empty=False, summary="s", searched=searched, probable_causes=[cause(i) for i in ids]
    )


def valid_answer(schema: AnswerSchema, **changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "summary": "s" * schema.summary_chars,
        "cause": schema.causes[0],
        "explanation": "e" * schema.explanation_chars,
        "next_steps": ["n" * schema.step_chars] * schema.steps,
    }
    return {**answer, **changes}


# Schema building.


def test_the_cause_enum_is_the_findings_candidates_then_none() -> None:
    assert cause_ids(findings("T4", "T1", "T4")) == ["T4", "T1", NONE]
    assert cause_ids(findings()) == [NONE]
    assert cause_ids(None) == [NONE]
    schema = AnswerSchema.build(cause_ids(findings("T4", "T1")), 2000)
    assert schema is not None
    assert schema.json_schema()["properties"]["cause"]["enum"] == ["T4", "T1", NONE]


@pytest.mark.parametrize("causes", [[], ["T2"], ["T2", NONE], [NONE, "T7"]])
def test_none_is_always_allowed_exactly_once(causes: list[str]) -> None:
    schema = AnswerSchema.build(causes, 1000)
    assert schema is not None
    enum = schema.json_schema()["properties"]["cause"]["enum"]
    assert enum.count(NONE) == 1 and enum[-1] == NONE
    assert [c for c in enum if c != NONE] == [c for c in causes if c != NONE]


def test_every_field_is_bounded_and_required() -> None:
    schema = AnswerSchema.build(["T1"], 4000)
    assert schema is not None
    body = schema.json_schema()
    props = body["properties"]
    assert list(props) == ["summary", "cause", "explanation", "next_steps"]
    assert body["required"] == list(props) and body["additionalProperties"] is False
    assert props["summary"]["maxLength"] == FULL_SUMMARY_CHARS
    assert props["explanation"]["maxLength"] == FULL_EXPLANATION_CHARS
    assert props["next_steps"]["items"]["maxLength"] == FULL_STEP_CHARS
    assert props["next_steps"]["maxItems"] == 3
    wrapped = schema.response_format()
    assert wrapped["type"] == "json_schema" and wrapped["json_schema"]["schema"] == body


@pytest.mark.parametrize("answer_tokens", [170, 200, 512, 1000, 1500, 4096])
def test_the_longest_valid_answer_fits_the_token_cap(answer_tokens: int) -> None:
    """At one character per token, the largest document the schema admits is within the cap
    sent as max_tokens, which is within the answer's budget."""
    schema = AnswerSchema.build([f"T{n}" for n in range(1, 9)], answer_tokens)
    assert schema is not None
    longest = json.dumps(valid_answer(schema, cause="T8"), separators=(",", ":"))
    assert len(longest) <= schema.max_chars() <= answer_tokens
    # The whole budget is used when the full bounds do not fit.
    assert schema.max_chars() > answer_tokens * 0.95 or schema.summary_chars == FULL_SUMMARY_CHARS


def test_a_budget_too_small_for_json_gives_no_schema() -> None:
    assert AnswerSchema.build(["T1"], 100) is None


# The check of the answer.


def test_a_valid_answer_is_parsed() -> None:
    schema = AnswerSchema.build(["T3", "T1"], 1000)
    assert schema is not None
    parsed, note = schema.parse(json.dumps(valid_answer(schema, cause="T1")))
    assert note is None and parsed is not None
    assert parsed.cause == "T1" and len(parsed.next_steps) == schema.steps


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cause": "T9"}, "cause"),
        ({"summary": ""}, "summary"),
        ({"explanation": "x" * 10_000}, "explanation"),
        ({"next_steps": []}, "next_steps"),
        ({"next_steps": ["a", "b", "c", "d"]}, "next_steps"),
        ({"extra": 1}, "extra"),
        ({"cause": 1}, "cause"),
    ],
)
def test_an_answer_outside_the_schema_is_refused(change: dict[str, Any], problem: str) -> None:
    schema = AnswerSchema.build(["T3"], 1000)
    assert schema is not None
    parsed, note = schema.parse(json.dumps(valid_answer(schema, **change)))
    assert parsed is None and note is not None and problem in note


def test_a_cut_answer_is_refused_and_says_so() -> None:
    schema = AnswerSchema.build(["T3"], 1000)
    assert schema is not None
    raw = json.dumps(valid_answer(schema))
    parsed, note = schema.parse(raw[: len(raw) // 2])
    assert parsed is None and note is not None and "not complete JSON" in note


def test_the_system_prompt_names_the_allowed_causes() -> None:
    prompt = system_prompt(["T3", NONE])
    assert '"T3", "none"' in prompt and "{causes}" not in prompt and "JSON" in prompt


# The choice of format.


@pytest.mark.parametrize(
    ("setting", "n_ctx", "model", "expected"),
    [
        ("auto", 8192, "llama-3-8b", "json"),
        ("auto", 2048, "any", "json"),
        ("auto", 32768, "llama-3-70b", "text"),
        ("auto", 32768, "SmolLM2-135M-Instruct", "json"),  # the bundled model
        ("text", 1024, "SmolLM2-135M-Instruct", "text"),
        ("json", 131072, "gpt-oss", "json"),
    ],
)
def test_the_format_follows_the_setting_the_context_and_the_model(
    setting: str, n_ctx: int, model: str, expected: str
) -> None:
    assert choose_format(setting, n_ctx=n_ctx, max_context=8192, model=model) == expected


# The stub answers a schema as a grammar-constrained server does.


def test_the_stub_answers_json_of_the_requested_shape() -> None:
    schema = AnswerSchema.build(["T2", "T5"], 400)
    assert schema is not None
    body = {"messages": [], "response_format": schema.response_format()}
    assert request_schema(body) == schema.json_schema()
    assert request_schema({"json_schema": schema.json_schema()}) == schema.json_schema()
    assert request_schema({"response_format": {"type": "json_object"}}) is None
    reply = {"summary": "x" * 5000, "cause": "T5", "next_steps": ["a", "b", "c", "d", "e"]}
    parsed, note = schema.parse(json.dumps(fill_schema(schema.json_schema(), reply)))
    assert note is None and parsed is not None
    assert parsed.cause == "T5" and len(parsed.summary) == schema.summary_chars
    assert len(parsed.next_steps) == schema.steps
    made_up = fill_schema(schema.json_schema(), {**reply, "cause": "T99"})
    assert made_up["cause"] == "T2"  # outside the enum: a grammar would not allow it


# The call_llm stage in JSON mode.


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
            model="SmolLM2-135M-Instruct",
            first_token_timeout_s=2.0,
            idle_timeout_s=1.0,
            loading_wait_s=1.0,
            max_retries=1,
        )


def test_a_json_answer_streams_as_markdown_and_is_parsed(
    stub: LlamaStub, client: LlamaClient
) -> None:
    normalized = incident(300)
    assert normalized.findings is not None and normalized.findings.probable_causes
    first = normalized.findings.probable_causes[0].template_id
    sink = ListSink()
    result = analyze(
        normalized,
        request=REQUEST,
        client=client,
        sink=sink,
        max_tokens=512,
        temperature=0.1,
        answer_format="auto",
    )
    sent = stub.requests[-1]
    schema = request_schema(sent)
    assert schema is not None
    assert schema["properties"]["cause"]["enum"] == [*cause_ids(normalized.findings)]
    assert sent["max_tokens"] <= 512
    assert result.answer_format == "json" and result.structured_note is None
    assert result.structured is not None and result.structured.cause == first
    assert result.structured.summary == stub.config.schema_reply["summary"][:FULL_SUMMARY_CHARS]
    # The reader saw Markdown as it formed: the tokens are the analysis, and it is the
    # rendering of the JSON the server sent.
    assert "".join(sink.tokens) == result.analysis
    raw = json.dumps(fill_schema(schema, stub.config.schema_reply), ensure_ascii=False)
    assert result.analysis == render(raw)
    assert result.analysis.startswith("## Summary\n") and f"\n{first}\n" in result.analysis
    assert result.finish_reason == "stop"
    assert result.citations.valid == ["T1"] and not result.citations.invalid


def test_a_server_that_rejects_the_schema_is_asked_once_more_in_free_text(
    stub: LlamaStub, client: LlamaClient
) -> None:
    stub.config.reject_schema = True
    sink = ListSink()
    result = analyze(
        incident(300),
        request=REQUEST,
        client=client,
        sink=sink,
        max_tokens=256,
        temperature=0.1,
        answer_format="json",
    )
    assert [request_schema(body) is not None for body in stub.requests] == [True, False]
    assert "JSON" not in stub.requests[1]["messages"][0]["content"]
    assert result.model_status == "answered"
    assert result.answer_format == "text" and result.structured is None
    assert (
        result.structured_note is not None and "rejected the JSON schema" in result.structured_note
    )
    assert "not supported" in result.structured_note  # the server's own words
    assert result.analysis == stub.config.reply == "".join(sink.tokens)


def test_a_server_that_ignores_the_schema_is_shown_but_not_parsed(
    stub: LlamaStub, client: LlamaClient
) -> None:
    """A server that takes `response_format` and answers prose anyway: the reader sees the
    prose, the structure is missing and the note says why."""
    stub.config.ignore_schema = True
    sink = ListSink()
    result = analyze(
        incident(300),
        request=REQUEST,
        client=client,
        sink=sink,
        max_tokens=512,
        temperature=0.1,
        answer_format="json",
    )
    assert request_schema(stub.requests[-1]) is not None
    assert result.answer_format == "json" and result.structured is None
    assert result.structured_note is not None and "not complete JSON" in result.structured_note
    assert result.analysis == stub.config.reply == "".join(sink.tokens)


# The evaluation's reading of an answer's cause.


def test_the_eval_reads_the_cause_of_a_json_and_of_a_free_text_answer() -> None:
    from eval.runner import answer_cause, cause_agreement
    from eval.strategies import Outcome

    def outcome(**fields: Any) -> Outcome:
        return Outcome(
            **{"shown": [], "answer": "", "prompt": "", "findings": findings("T4", "T1"), **fields}
        )

    json_right = outcome(answer_format="json", structured_cause="T4", answer="T1 ... T4")
    assert answer_cause(json_right) == "T4" and cause_agreement(json_right) is True
    invalid = outcome(answer_format="json", structured_cause=None, answer="## Summary")
    assert answer_cause(invalid) is None and cause_agreement(invalid) is False
    text_wrong = outcome(answer="Caused by T1, then T4.")
    assert answer_cause(text_wrong) == "T1" and cause_agreement(text_wrong) is False
    assert answer_cause(outcome(answer="no ids at all")) == "none"
    assert cause_agreement(outcome(answer="T4", model_status="skipped")) is None
