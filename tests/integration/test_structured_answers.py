"""A structured (JSON) answer through real processes: the worker asks for the schema, streams
its Markdown over pub/sub and SSE as it forms, and the result holds the parsed answer beside
the text (issue 22). The worker runs with the service's default, LLM_ANSWER_FORMAT=auto, and
the stub's 8,192-token context: JSON mode.
"""

from __future__ import annotations

import pytest

from tests.stubs.llama_stub import request_schema
from tests.support.sse import collect
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def test_a_job_in_structured_mode_gives_a_parsed_answer(fresh_stack: ServiceStack) -> None:
    stack = fresh_stack
    stack.start_worker(LLM_ANSWER_FORMAT="auto")
    stack.start_api()
    stack.wait_ready()
    job_id = stack.submit()
    events = collect(stack.http, f"{stack.api_url}/v1/jobs/{job_id}/events")
    view = stack.wait_terminal(job_id)
    assert view["status"] == "succeeded"
    result = view["result"]
    assert result["model_status"] == "answered"
    assert result["answer_format"] == "json", result.get("structured_note")

    causes = [c["template_id"] for c in result["findings"]["probable_causes"]]
    assert causes, "the incident has a probable cause"
    schema = request_schema(stack.llama.requests[-1])
    assert schema is not None, "the worker did not ask for a JSON schema"
    assert schema["properties"]["cause"]["enum"] == [*causes, "none"]

    structured = result["structured"]
    assert structured is not None, result["structured_note"]
    assert structured["cause"] == causes[0]
    assert structured["summary"] and structured["explanation"] and structured["next_steps"]
    bounds = schema["properties"]
    assert len(structured["summary"]) <= bounds["summary"]["maxLength"]
    assert len(structured["next_steps"]) <= bounds["next_steps"]["maxItems"]

    # The tokens that reached the client are Markdown, formed piece by piece: no raw JSON.
    tokens = [e.json["data"]["text"] for e in events if e.event == "token"]
    assert len(tokens) > 5
    text = "".join(tokens)
    assert text == result["analysis"]
    assert text.startswith("## Summary\n") and "## Next steps\n- " in text
    assert '{"' not in text and structured["summary"] in text
    streamed = next(e for e in events if e.event == "result").json["data"]
    assert streamed["structured"] == structured
