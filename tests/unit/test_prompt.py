"""The prompt never exceeds its token budget and keeps the best-ranked evidence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import ContextOverflowError
from shared.schemas import EvidenceItem, Level
from tests.stubs.llama_stub import tokenize
from workers.llm.prompt import TEMPLATE_MARGIN_TOKENS, build_prompt, render_user, system_prompt
from workers.stages.call_llm import plan_tokens


def item(n: int, example_words: int = 20) -> EvidenceItem:
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    return EvidenceItem(
        template_id=f"T{n}",
        template=f"ERROR component {n} failed: <*> retry <*>",
        level=Level.ERROR,
        count=100 - n,
        first_seen=now,
        last_seen=now,
        pods=[f"api-{n}"],
        containers=["api"],
        examples=[" ".join(f"word{n}_{i}" for i in range(example_words))],
    )


def count(text: str) -> int:
    return len(tokenize(text))


@pytest.mark.parametrize("budget", [300, 400, 800, 3000])
def test_prompt_fits_budget_and_keeps_rank_order(budget: int) -> None:
    evidence = [item(n) for n in range(1, 60)]
    prompt = build_prompt(
        evidence,
        header="Logs of namespace=shop",
        question=None,
        limit=50,
        budget_tokens=budget,
        count_tokens=count,
    )
    used = sum(count(m["content"]) for m in prompt.messages)
    assert used <= budget
    ids = [e.template_id for e in prompt.evidence]
    assert ids == sorted(ids, key=lambda i: int(i[1:]))
    assert prompt.omitted == len(evidence) - len(prompt.evidence)
    if prompt.omitted:
        assert (
            f"{prompt.omitted} lower-ranked templates were left out"
            in prompt.messages[1]["content"]
        )


def test_limit_caps_the_evidence() -> None:
    prompt = build_prompt(
        [item(n) for n in range(1, 40)],
        header="h",
        question="why?",
        limit=5,
        budget_tokens=100_000,
        count_tokens=count,
    )
    assert [e.template_id for e in prompt.evidence] == ["T1", "T2", "T3", "T4", "T5"]
    assert prompt.messages[1]["content"].endswith("Question: why?")


def test_instructions_alone_too_big_is_a_clear_error() -> None:
    with pytest.raises(ContextOverflowError, match="instructions alone"):
        build_prompt(
            [item(1)], header="h", question=None, limit=15, budget_tokens=50, count_tokens=count
        )


def test_oversized_item_is_shrunk_not_dropped() -> None:
    big = item(1, example_words=2000)
    fixed = count(system_prompt()) + count(render_user("h", [], 1, None))
    prompt = build_prompt(
        [big],
        header="h",
        question=None,
        limit=15,
        budget_tokens=fixed + TEMPLATE_MARGIN_TOKENS + 65,
        count_tokens=count,
    )
    assert [e.template_id for e in prompt.evidence] == ["T1"]
    assert len(prompt.evidence[0].examples[0]) <= 120


@pytest.mark.parametrize(("n_ctx", "max_tokens"), [(512, 512), (1024, 256), (8192, 512), (64, 512)])
def test_answer_never_takes_the_whole_context(n_ctx: int, max_tokens: int) -> None:
    answer, budget = plan_tokens(n_ctx, max_tokens)
    assert answer <= max_tokens and answer + budget == n_ctx and budget > 0
