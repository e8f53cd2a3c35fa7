"""A model that takes the prompt and never answers, at the service's default LLM settings.

The reader must hear from the model call while it waits (llama.cpp's prompt progress, or an
elapsed-time heartbeat from servers that report none) and get a clear `error` event within a
bound that follows from the prompt's size, with no retry multiplying the silent wait.
"""

from __future__ import annotations

from typing import Any

import pytest

from cli.harness import wait_until
from shared.settings import Settings
from tests.support.sse import Follower, SseEvent
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

# The LLM settings as deployed: the stacks of the other tests shorten them.
DEFAULT_LLM = {
    name.upper(): str(field.default)
    for name, field in Settings.model_fields.items()
    if name.startswith("llm_")
}
# The error event may follow the deadline by this much (the worker notices within its poll).
SLACK_S = 5.0


def events_of(follower: Follower, kind: str, **match: Any) -> list[SseEvent]:
    """The job events of type `kind` received so far whose data holds `match`."""
    return [
        event
        for event in list(follower.events)
        if event.id
        and event.event == kind
        and all(event.json["data"].get(key) == value for key, value in match.items())
    ]


@pytest.mark.parametrize("server_progress", [True, False], ids=["llama-progress", "heartbeat"])
def test_a_model_that_never_answers_shows_progress_then_a_bounded_error(
    fresh_stack: ServiceStack, server_progress: bool
) -> None:
    stack = fresh_stack
    stack.llama.config.never_answer = True
    stack.llama.config.prompt_progress = server_progress
    stack.start_worker(2, **DEFAULT_LLM)
    stack.start_api()
    stack.wait_ready()
    job_id = stack.submit(limit=5)
    follower = stack.follow(job_id, deadline_s=200)

    started = wait_until(
        lambda: events_of(follower, "stage", stage="call_llm", state="started"),
        60,
        "call_llm did not start",
    )[0]
    # The reader hears from the model call within seconds, not after minutes of silence.
    first = wait_until(
        lambda: events_of(follower, "progress"), 15, "no progress event while the model is silent"
    )[0].json["data"]
    deadline_s = first["deadline_s"]
    error = wait_until(
        lambda: events_of(follower, "error"),
        deadline_s + 30,
        f"no error event within the {deadline_s} s deadline",
    )[0]
    follower.join(30)
    assert follower.kinds()[-1] == "done"

    # A clear error, with a code, at the deadline and not later.
    assert error.json["data"]["code"] == "llm_timeout"
    assert error.json["data"]["stage"] == "call_llm"
    waited = error.json["ts"] - started.json["ts"]
    assert deadline_s <= waited <= deadline_s + SLACK_S, (waited, deadline_s)

    # The deadline follows from the prompt's size, under the cap (the old fixed wait).
    defaults = Settings.model_fields
    prompt_tokens = first["prompt_tokens"]
    assert prompt_tokens > 0
    expected = min(
        defaults["llm_first_token_timeout_s"].default,
        defaults["llm_first_token_base_s"].default
        + prompt_tokens / defaults["llm_prompt_tokens_per_s"].default,
    )
    assert deadline_s == pytest.approx(expected, abs=0.01)
    assert deadline_s < defaults["llm_first_token_timeout_s"].default

    # Progress all along the wait: elapsed time grows, one event at least per heartbeat.
    progress = [e for e in events_of(follower, "progress") if e.json["seq"] < error.json["seq"]]
    elapsed = [e.json["data"]["elapsed_s"] for e in progress]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= deadline_s - 2 * SLACK_S
    interval = defaults["llm_progress_interval_s"].default
    assert len(progress) >= deadline_s // interval - 1
    assert all(e.json["data"]["stage"] == "call_llm" for e in progress)
    reports = [e.json["data"]["server"] for e in progress if e.json["data"]["server"]]
    if server_progress:
        # llama.cpp's own report as the slot started: nothing processed yet, nothing cached.
        assert reports and reports[0]["processed"] == reports[0]["cache"] == 0
        assert reports[0]["total"] > 0
    else:
        assert not reports

    # One request: no retry multiplied the silent wait, and the server's slot was let go.
    assert len(stack.llama.requests) == 1
    wait_until(lambda: stack.llama.busy_slots == 0, 10, "the stub's slot stayed busy")

    # The job still delivers its findings and evidence, without an answer.
    view = stack.job(job_id)
    assert view["status"] == "succeeded"
    assert view["result"]["model_status"] == "failed"
    assert view["result"]["model_error"]["code"] == "llm_timeout"
    assert view["result"]["evidence"]
