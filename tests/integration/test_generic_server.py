"""Servers other than llama.cpp, through real worker processes: one that answers only `/v1/*`,
one whose error bodies are `{"error": "text"}`, the stub answering as vLLM and as Ollama
(with a model name and an API key of their own), a model call that goes wrong in a way
nobody planned for, and a server outside the cluster. The job succeeds with its findings
either way (issue 22).

Most run on a stack of their own: workers probe the server once and keep what it said.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from cli.harness import wait_until
from tests.stubs.llama_stub import StubConfig
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


@pytest.mark.parametrize("flavor", ["vllm", "ollama"])
def test_a_job_against_vllm_or_ollama_answers_with_its_findings(
    fresh_stack: ServiceStack, flavor: str
) -> None:
    stack = fresh_stack
    model, key = "Qwen/Qwen2.5-7B-Instruct", "sk-integration-test-key"
    stack.llama.reset(
        StubConfig(flavor=flavor, served_model=model, require_key=key, n_ctx=8192)  # type: ignore[arg-type]
    )
    stack.start_worker(MODEL_NAME=model, LLM_API_KEY=key)
    stack.start_api()
    stack.wait_ready()
    view, kinds, error = finish(stack)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert error is None, error
    assert result["model_status"] == "answered", result.get("model_error")
    assert result["analysis"] == stack.llama.config.reply
    assert result["model"] == model
    assert "token" in kinds
    assert_findings_kept(result)
    assert stack.llama.truncated == 0
    assert all(auth == f"Bearer {key}" for _, auth in stack.llama.auth)
    assert key not in stack.logs()
    sent = stack.llama.requests[-1]
    assert "cache_prompt" not in sent and "return_progress" not in sent
    # More jobs: each worker process asked the server what it is once, not once per job.
    for _ in range(3):
        assert finish(stack)[0]["result"]["model_status"] == "answered"
    probes = [path for path, _ in stack.llama.auth if path in ("/v1/models", "/api/show")]
    assert 1 <= probes.count("/v1/models") <= 2, probes  # two worker processes


def test_the_worker_refuses_to_start_with_a_server_outside_the_cluster(
    fresh_stack: ServiceStack,
) -> None:
    worker = fresh_stack.start_worker(LLAMA_URL="https://api.openai.com")
    assert worker.proc is not None
    code = wait_until(
        lambda: worker.proc.poll() is not None if worker.proc else None,
        60,
        "the worker kept running with a remote LLAMA_URL",
        interval=0.2,
    )
    assert code and worker.proc.returncode != 0
    worker.expected_exit = True
    assert "LLM_ALLOW_REMOTE=true" in worker.tail()
    assert "api.openai.com" in worker.tail()


def test_the_worker_starts_with_a_remote_server_when_allowed(fresh_stack: ServiceStack) -> None:
    # Allowed on purpose: it starts, and a job whose model is unreachable keeps its findings.
    stack = fresh_stack
    stack.start_worker(LLAMA_URL="http://llm.example.invalid:9", LLM_ALLOW_REMOTE="true")
    stack.start_api()
    stack.wait_ready()
    started = time.monotonic()
    view, _, error = finish(stack)
    assert view["status"] == "succeeded"
    assert view["result"]["model_status"] == "failed"
    assert error is not None and error["code"] == "llm_unavailable"
    assert_findings_kept(view["result"])
    assert time.monotonic() - started < 60
