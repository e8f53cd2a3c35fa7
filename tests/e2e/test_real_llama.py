"""End to end with the real llama-server and SmolLM2: the embedded default, as the demo runs it.

The server runs with a small context (`-c 1024`), so the prompt budget is tested against the
real tokenizer and chat template, not the stub's approximation. The bundled model answers in
structured mode by default (LLM_ANSWER_FORMAT=auto): the real server's grammar holds it to
the schema, and the answer must parse and validate.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cli.harness import Harness, harness, local_env
from cli.main import SAMPLE_WINDOW
from tests.support.sse import collect

pytestmark = pytest.mark.e2e

CTX = 1024


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    # A process that dies raises ProcessDiedError: its signal, what to try, its last lines.
    with harness(tmp_path_factory.mktemp("e2e")) as stack:
        redis_url = stack.start_redis().url()
        env = local_env(redis_url, stack.start_llama(ctx=CTX), LLM_MAX_TOKENS="200")
        stack.start_worker(env)
        stack.start_api(env)
        yield stack
        stack.check()


def test_sample_incident_through_real_llama_server(real_stack: Harness) -> None:
    api = real_stack.urls["api"]
    body = {
        "time_range": {"start": SAMPLE_WINDOW[0], "end": SAMPLE_WINDOW[1]},
        "filters": {"namespace": "shop"},
        "limit": 40,
        "scan_limit": 20_000,
    }
    with httpx.Client(timeout=30) as client:
        accepted = client.post(f"{api}/v1/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        events = collect(client, accepted.json()["events_url"], timeout=300)
        kinds = [e.event for e in events]
        assert kinds[-1] == "done", kinds
        errors = [e.json["data"] for e in events if e.event == "error"]
        assert not errors, errors
        kinds = [e.event for e in events]
        # The findings reach the client before the model's first token.
        assert kinds.index("findings") < kinds.index("token")
        findings = next(e for e in events if e.event == "findings").json["data"]
        assert "No space left on device" in findings["probable_causes"][0]["template"]
        # Tokens after the last `retry` (the guard re-sends a looping answer once, cut) are
        # the answer.
        last_retry = max((i for i, k in enumerate(kinds) if k == "retry"), default=-1)
        tokens = [e.json["data"]["text"] for e in events[last_retry + 1 :] if e.event == "token"]
        assert len("".join(tokens)) > 20, "the model streamed (almost) nothing"
        result = next(e for e in events if e.event == "result").json["data"]
        assert "".join(tokens) == result["analysis"]
        assert result["model_status"] == "answered"
        # Structured by default for the bundled model: valid against its schema, the cause one
        # of the findings' candidates or "none", and streamed as Markdown, not raw JSON.
        assert result["answer_format"] == "json", result["structured_note"]
        structured = result["structured"]
        assert structured is not None, (result["structured_note"], result["analysis"])
        candidates = [c["template_id"] for c in findings["probable_causes"]]
        assert structured["cause"] in [*candidates, "none"], structured
        assert structured["summary"] and structured["explanation"] and structured["next_steps"]
        assert result["analysis"].startswith("## Summary\n") and '{"' not in result["analysis"]
        assert result["finish_reason"] == "stop", "a bounded schema never reaches the token cap"
        # A 135M model may cite ids it was not given; the service's promise is to tell them
        # apart: every id the answer cites is classified, valid ones were in the evidence.
        shown = {item["template_id"] for item in result["evidence"]}
        cited = result["citations"]
        assert set(cited["valid"]) <= shown and not set(cited["invalid"]) & shown, cited
        for template_id in cited["valid"] + cited["invalid"]:
            assert template_id in result["analysis"], template_id
        timings = result["timings"]
        assert timings["prompt_n"] > 0 and timings["predicted_n"] == result["tokens_generated"]
        assert timings["predicted_per_second"] > 0 and timings["prompt_ms"] > 0
        # The budget held with the real tokenizer: prompt and answer fit the 1024 context.
        assert result["prompt_tokens"] + result["tokens_generated"] <= CTX
        assert result["evidence"] and result["evidence_omitted"] > 0
        assert any("No space left on device" in item["template"] for item in result["evidence"])
        view = client.get(f"{api}/v1/jobs/{accepted.json()['job_id']}").json()
        assert view["status"] == "succeeded"
        assert view["counts"]["call_llm"]["prompt_tokens"] == result["prompt_tokens"]

        # The same job again: the server serves the prompt from its cache (`prompt_n` is
        # only what it processed anew), and the prompt's size is still reported whole.
        again = client.post(f"{api}/v1/jobs", json=body)
        events = collect(client, again.json()["events_url"], timeout=300)
        repeat = next(e for e in events if e.event == "result").json["data"]
        assert repeat["prompt_tokens"] == result["prompt_tokens"]
        assert repeat["prompt_tokens_cached"] > 0
        assert repeat["timings"]["prompt_n"] < repeat["prompt_tokens"]
