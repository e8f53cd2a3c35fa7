"""`log-analyzer eval`: the golden set through each strategy against a model endpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from cli.harness import MODEL_NAME, harness
from eval.clients import EvalClient
from shared.settings import Settings


@contextlib.contextmanager
def model_endpoint(model: str, *, ctx: int, run_dir: Path) -> Iterator[tuple[str, str, bool]]:
    """(base URL, model name, generic?) for `stub`, `smollm2` or an OpenAI-compatible URL."""
    if model == "stub":
        from tests.stubs.llama_stub import StubConfig, start_llama_stub

        _, server = start_llama_stub(StubConfig(n_ctx=ctx))
        try:
            yield server.url, "stub", False
        finally:
            server.stop()
    elif model == "smollm2":
        with harness(run_dir) as stack:
            yield stack.start_llama(ctx=ctx), MODEL_NAME, False
            stack.check()
    else:
        yield model.rstrip("/"), model, True


@contextlib.contextmanager
def eval_client(
    model: str, *, ctx: int, run_dir: Path, model_name: str | None = None
) -> Iterator[tuple[EvalClient, str]]:
    """A client for the model endpoint, and the name the results carry."""
    with model_endpoint(model, ctx=ctx, run_dir=run_dir) as (url, name, generic):
        with httpx.Client() as http:
            client = EvalClient(http, url, model=model_name or name, generic=generic, ctx=ctx)
            yield client, model_name or name


def eval_settings(max_tokens: int, answer_format: str = "auto") -> Settings:
    """The service's defaults, with the answer cap and form of this run."""
    return Settings.model_validate(
        {
            "llm_max_tokens": max_tokens,
            "llm_answer_format": answer_format,
            "otel_sdk_disabled": True,
        }
    )
