"""The answer verifier: each kind of claim, redaction markers, citations, empty and
degenerate answers, the score and the verdict; and its place in the call_llm stage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from shared.schemas import (
    AnalysisRequest,
    Event,
    EventType,
    EvidenceItem,
    JobResult,
    Level,
    Verification,
    event_data,
)
from tests.stubs.llama_stub import LlamaStub, StubConfig, start_llama_stub
from tests.stubs.server import ThreadedServer
from tests.unit.test_llm_client import REQUEST, ListSink, incident
from workers.llm.verify import sentence_spans, verify
from workers.stages.call_llm import LlmOptions, run

T0 = datetime(2026, 11, 24, 10, 20, 3, 400_000, tzinfo=UTC)
EVIDENCE = [
    EvidenceItem(
        template_id="T1",
        template='<*> [<*>] PANIC: could not write to file "<*>": No space left on device',
        level=Level.FATAL,
        count=1204,
        first_seen=T0,
        last_seen=datetime(2026, 11, 24, 10, 31, 9, tzinfo=UTC),
        pods=["postgres-0"],
        containers=["postgres"],
        examples=[
            '2026-11-24 10:20:03.400 UTC [4127] PANIC: could not write to file "pg_wal/xlog.4127":'
            " No space left on device",
        ],
    ),
    EvidenceItem(
        template_id="T2",
        template="query failed path=<*> error=dial tcp <*>: connect: connection refused status=503",
        level=Level.ERROR,
        count=371,
        first_seen=datetime(2026, 11, 24, 10, 20, 8, tzinfo=UTC),
        last_seen=datetime(2026, 11, 24, 10, 40, tzinfo=UTC),
        pods=["api-md4j299v8-bzbsh"],
        containers=["api"],
        examples=[
            '{"ts":"2026-11-24T10:20:08.046Z","msg":"query failed","path":"/api/products/4791",'
            '"status":503,"error":"dial tcp 10.244.2.17:5432: connect: connection refused",'
            '"latency_ms":30000,"host":"DB.Shop.svc.cluster.local","trace":"9f86d081884c7d65",'
            '"req":"6b29a3c2-7597-42c5-8a55-635ef2d15e4c","code":"ECONNREFUSED"}',
        ],
    ),
    EvidenceItem(
        template_id="T3",
        template="aws config region=<*> access_key_id=<redacted:aws_key_id>",
        level=Level.INFO,
        count=2,
        first_seen=datetime(2026, 11, 24, 10, 5, tzinfo=UTC),
        last_seen=datetime(2026, 11, 24, 10, 6, tzinfo=UTC),
        pods=["uploader-7f9c-x2kq9"],
        containers=["uploader"],
        examples=[
            "aws config region=eu-central-1 access_key_id=<redacted:aws_key_id> page_size=500"
        ],
    ),
]


def check(answer: str, **options: object) -> Verification:
    return verify(answer, evidence=EVIDENCE, request=REQUEST, **options)  # type: ignore[arg-type]


def claim(answer: str, text: str) -> bool:
    """Whether the verifier found `text` a claim of `answer`, and supported it."""
    found = [c for c in check(answer).claims if c.text == text]
    assert found, (text, check(answer).claims)
    return found[0].supported


@pytest.mark.parametrize(
    ("answer", "text", "supported"),
    [
        # Timestamps: another format of the same instant, at the coarser precision.
        ("It began at 2026-11-24T10:20:03Z.", "2026-11-24T10:20:03Z", True),
        ("It began at 2026-11-24 10:20:03.4 UTC.", "2026-11-24 10:20:03.4 UTC", True),
        ("It began at 2026-11-24T11:20:03+01:00.", "2026-11-24T11:20:03+01:00", True),
        ("It began at 2026-11-24 10:20.", "2026-11-24 10:20", True),
        ("It began at 2026-11-24T10:21:03Z.", "2026-11-24T10:21:03Z", False),
        ("It began at 2026-11-23T10:20:03Z.", "2026-11-23T10:20:03Z", False),
        ("It began on 11/24/2026.", "11/24/2026", True),
        ("It began on 10/17/2023.", "10/17/2023", False),
        ("Seen at 24/Nov/2026:10:20:03 +0000 first.", "24/Nov/2026:10:20:03 +0000", True),
        ("Seen on Nov 24, 2026 first.", "Nov 24, 2026", True),
        ("Seen on 13/Nov/2026 first.", "13/Nov/2026", False),
        ("Errors from 10:20:08 on.", "10:20:08", True),
        ("Errors from 10:20:08.999 on.", "10:20:08.999", False),
        ("Errors from 09:14 on.", "09:14", False),
        # Numbers with units: separators, durations in seconds, sizes, counts.
        ("T1 was seen 1,204 times.", "1,204 times", True),
        ("T1 was seen 1204 times.", "1204 times", True),
        ("T1 was seen 1,205 times.", "1,205 times", False),
        ("Queries waited 30 s.", "30 s", True),
        ("Queries waited 30000ms.", "30000ms", True),
        ("Queries waited 45 seconds.", "45 seconds", False),
        ("The disk held 48 GB.", "48 GB", False),
        ("The api failed 371 requests.", "371 requests", True),
        # IPs, hostnames (any case), paths, identifiers.
        ("It dialled 10.244.2.17:5432.", "10.244.2.17:5432", True),
        ("It dialled 10.244.2.18.", "10.244.2.18", False),
        ("The host db.shop.svc.cluster.local refused.", "db.shop.svc.cluster.local", True),
        ("The host db.prod.example.com refused.", "db.prod.example.com", False),
        ("Reading /api/products/4791 failed.", "/api/products/4791", True),
        ("Reading /var/lib/postgresql/backups failed.", "/var/lib/postgresql/backups", False),
        ("The pod api-md4j299v8-bzbsh failed.", "api-md4j299v8-bzbsh", True),
        ("The pod api-md4j299v8-zzzzz failed.", "api-md4j299v8-zzzzz", False),
        (
            "Request 6b29a3c2-7597-42c5-8a55-635ef2d15e4c.",
            "6b29a3c2-7597-42c5-8a55-635ef2d15e4c",
            True,
        ),
        ("Trace 9f86d081884c7d65 shows it.", "9f86d081884c7d65", True),
        ("Trace 0a1b2c3d4e5f6071 shows it.", "0a1b2c3d4e5f6071", False),
        ("Rotate the secret orders-db-creds.", "orders-db-creds", False),
        ("Redis 3.7.8 crashed.", "3.7.8", False),
        # Quoted strings: verbatim (case and spacing aside) or matching a template.
        ('Postgres said "No space left on device".', "No space left on device", True),
        ('Postgres said `could not write to file "<*>"`.', None, True),
        ('Postgres said `PANIC: could not write to file "pg_wal/xlog.4127"`.', None, True),
        ('Postgres said `PANIC: could not write to file "pg_wal/other"`.', None, False),
        ('Postgres said "disk quota exceeded".', "disk quota exceeded", False),
        ('The payload held "region".', "region", True),
        ('The payload held "conf".', "conf", False),  # only inside longer words (config)
        # Error codes: errno names, HTTP statuses shown as statuses in the evidence.
        ("It failed with ECONNREFUSED.", "ECONNREFUSED", True),
        ("It failed with ENOSPC.", "ENOSPC", False),
        ("The api returned 503.", "503", True),
        ("The api returned HTTP 500.", "500", False),  # 500 is only a page size there
        ("It exited with exit code 137.", "137", False),
        ("The api gave a 503 response.", "503", True),
        ("The api gave a 400 response status.", "400", False),
        ("It failed with error code 3.", "3", False),
    ],
)
def test_each_kind_of_claim_is_looked_up(answer: str, text: str | None, supported: bool) -> None:
    if text is None:
        text = answer.split("`")[1]
    assert claim(answer, text) is supported


def test_the_request_backs_its_namespace_and_window() -> None:
    result = check("In shop between 2026-11-24T10:00:00Z and 11:00 things failed.")
    assert [c.supported for c in result.claims] == [True, True]


def test_a_redacted_value_is_supported_by_the_same_marker_only() -> None:
    assert claim("The key was <redacted:aws_key_id>.", "<redacted:aws_key_id>")
    assert not claim("The token was <redacted:jwt>.", "<redacted:jwt>")
    # A guessed secret where the evidence holds a marker is no claim the evidence backs.
    assert not claim("The key AKIAIOSFODNN7EXAMPLE was rejected.", "AKIAIOSFODNN7EXAMPLE")


def test_an_invalid_citation_makes_the_answer_unverified() -> None:
    result = check("T1 filled the disk; T9 followed.")
    assert result.cited == ["T1", "T9"]
    assert result.invalid_citations == ["T9"]
    assert result.verdict == "unverified"
    assert any("T9" in reason for reason in result.reasons)


def test_an_empty_answer_is_unverified_with_nothing_to_score() -> None:
    result = check("  \n")
    assert result.claims == [] and result.grounding == 1.0
    assert result.verdict == "unverified"
    assert result.reasons == ["the answer is empty"]


def test_an_answer_without_claims_scores_one() -> None:
    result = check("T1: postgres ran out of disk, then the api failed (T2).")
    assert result.claims == []
    assert (result.grounding, result.verdict) == (1.0, "verified")


@pytest.mark.parametrize(
    ("answer", "finish_reason"),
    [
        ("T1 filled the disk.", "degenerate"),
        ("T1 filled the disk. " + "The disk is full again. " * 5, "length"),
    ],
)
def test_a_degenerate_answer_is_unverified(answer: str, finish_reason: str) -> None:
    result = check(answer, finish_reason=finish_reason)
    assert result.degenerate
    assert result.verdict == "unverified"


def test_the_score_and_the_threshold_decide_the_verdict() -> None:
    answer = "T1 was seen 1,204 times at 10:20:03. It cost 48 GB and 9 s."
    assert check(answer).grounding == 0.5
    assert check(answer, threshold=0.6).verdict == "unverified"
    partly = check(answer, threshold=0.4)
    assert partly.verdict == "partly_supported"
    assert check("T1 was seen 1,204 times at 10:20:03.").verdict == "verified"


def test_unsupported_spans_are_the_sentences_holding_an_unsupported_claim() -> None:
    answer = (
        "## Cause\nT1 was seen 1,204 times. It began at 09:14 on db.prod.example.com.\n"
        "- The api returned 503"
    )
    result = check(answer)
    spans = [answer[s.start : s.end] for s in result.unsupported_spans]
    assert spans == ["It began at 09:14 on db.prod.example.com."]
    assert [answer[s.start : s.end] for s in sentence_spans(answer)] == [
        "## Cause",
        "T1 was seen 1,204 times.",
        "It began at 09:14 on db.prod.example.com.",
        "- The api returned 503",
    ]


# --- in the stage ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LlamaStub, ThreadedServer]]:
    stub, http = start_llama_stub()
    yield stub, http
    http.stop()


def answer_with(
    server: tuple[LlamaStub, ThreadedServer], reply: str, **options: float
) -> JobResult:
    server[0].reset(StubConfig(reply=reply))
    with httpx.Client() as http:
        from tests.unit.test_generic_server import make_client

        result, _ = run(
            incident(300),
            request=REQUEST,
            client=make_client(server[1].url, http),
            sink=ListSink(),
            options=LlmOptions(max_tokens=64, temperature=0.1, **options),  # type: ignore[arg-type]
        )
    return result


def test_the_stage_checks_the_answer_and_the_result_event_carries_it(
    server: tuple[LlamaStub, ThreadedServer],
) -> None:
    result = answer_with(server, 'T1: "No space left on device" at 10:14:55 from 10.9.9.9.')
    check_ = result.verification
    assert check_ is not None
    assert [(c.text, c.supported) for c in check_.claims] == [
        ("No space left on device", True),
        ("10:14:55", False),
        ("10.9.9.9", False),
    ]
    assert check_.verdict == "unverified" and check_.threshold == 0.6
    event = Event(seq=1, type=EventType.RESULT, job_id="j", ts=0.0, data=result.model_dump())
    carried = event_data(Event.model_validate_json(event.to_json()))
    assert isinstance(carried, JobResult) and carried.verification == check_
    # A lower threshold, from the settings, lets the same answer through as partly supported.
    lenient = answer_with(
        server, "T1 at 10:14:55, No space left on device.", grounding_threshold=0.0
    )
    assert lenient.verification is not None
    assert lenient.verification.verdict == "partly_supported"


def test_a_result_stored_before_answers_were_checked_still_reads() -> None:
    old = {"analysis": "T1 failed", "evidence": [], "model": "m", "citations": {"valid": ["T1"]}}
    assert JobResult.model_validate(old).verification is None


def test_an_answer_window_outside_the_request_is_not_backed() -> None:
    request = AnalysisRequest.model_validate(
        {
            "time_range": {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T11:00:00Z"},
            "filters": {"namespace": "shop"},
        }
    )
    result = verify("It began at 12:00.", evidence=EVIDENCE, request=request)
    assert [c.supported for c in result.claims] == [False]


def test_a_count_written_as_the_findings_write_it_is_a_templates_count() -> None:
    assert claim("T1 FATAL x1204 first.", "x1204")
    # 500 is in the evidence, but as a page size: no template was seen 500 times.
    assert not claim("T2 ERROR x500 first.", "x500")


def test_a_short_quote_does_not_pair_with_the_next_one() -> None:
    answer = 'The "T1" template and "disk quota exceeded" are in it.'
    assert [c.text for c in check(answer).claims] == ["disk quota exceeded"]
