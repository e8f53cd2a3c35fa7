"""Servers other than llama.cpp, through real worker processes: one that answers only `/v1/*`,
one whose error bodies are `{"error": "text"}`, and a model call that goes wrong in a way
nobody planned for. The job succeeds with its findings either way (issue 22).

The first two run on a stack of their own: workers cache what `/props` said.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sse import collect
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def finish(stack: ServiceStack) -> tuple[dict[str, Any], list[str], dict[str, Any] | None]:
    """Run one job: its final view, the kinds of its events and its `error` event's data."""
    job_id = stack.submit()
    events = collect(stack.http, f"{stack.api_url}/v1/jobs/{job_id}/events")
    view = stack.wait_terminal(job_id)
    errors = [e.json["data"] for e in events if e.id and e.event == "error"]
    return view, [e.event for e in events if e.id], errors[0] if errors else None


def assert_findings_kept(result: dict[str, Any]) -> None:
    assert result["evidence"] and result["findings"]["probable_causes"]
    cause = result["findings"]["probable_causes"][0]
    assert "No space left on device" in cause["template"]


def test_a_server_with_only_v1_endpoints_answers(running_stack: ServiceStack) -> None:
    stack = running_stack
    stack.llama.config.generic_only = True
    stack.llama.config.error_text = True
    stack.llama.config.prompt_progress = False
    view, kinds, error = finish(stack)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert error is None, error
    assert result["model_status"] == "answered"
    assert result["analysis"] == stack.llama.config.reply
    assert "token" in kinds
    assert_findings_kept(result)


def test_a_text_error_from_a_generic_server_keeps_the_findings(
    running_stack: ServiceStack,
) -> None:
    stack = running_stack
    stack.llama.config.generic_only = True
    stack.llama.config.error_text = True
    stack.llama.config.fail_next = [500] * 10
    view, kinds, error = finish(stack)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert result["model_status"] == "failed" and result["analysis"] == ""
    assert result["model_error"]["code"] == "llm_unavailable"
    assert "stub failure" in result["model_error"]["message"]
    assert error is not None and error["code"] == "llm_unavailable"
    assert "token" not in kinds
    assert_findings_kept(result)


def test_an_unexpected_error_in_call_llm_keeps_the_findings(stack: ServiceStack) -> None:
    # A chunk that is JSON but not an object: the client's code was never meant for it.
    stack.llama.config.bad_chunk = "[]"
    view, kinds, error = finish(stack)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert result["model_status"] == "failed"
    assert result["model_error"]["code"] == "internal_error"
    assert result["model_error"]["stage"] == "call_llm"
    assert error is not None and error["code"] == "internal_error"
    assert kinds.index("findings") < kinds.index("error") < kinds.index("result")
    assert_findings_kept(result)
