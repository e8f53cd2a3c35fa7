"""Build the prompt from a token budget, so the model's context can never overflow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.errors import ContextOverflowError
from shared.schemas import EvidenceItem

SYSTEM_PROMPT_PATH = Path(__file__).parent / "prompts" / "system.md"
PROMPT_EXAMPLE_CHARS = 300
MAX_TEMPLATE_CHARS = 400
TEMPLATE_MARGIN_TOKENS = 16


@cache
def system_prompt() -> str:
    return SYSTEM_PROMPT_PATH.read_text().strip()


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    evidence: list[EvidenceItem]
    omitted: int
    prompt_tokens: int


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_item(
    item: EvidenceItem, *, examples: int = 3, example_chars: int = PROMPT_EXAMPLE_CHARS
) -> str:
    """One evidence block as the model sees it."""
    pods = ", ".join(item.pods[:5]) + (
        f" (+{len(item.pods) - 5} more)" if len(item.pods) > 5 else ""
    )
    lines = [
        f"[{item.template_id}] {item.level.value.upper()} x{'~' if item.estimated else ''}"
        f"{item.count} "
        f"first {item.first_seen:%Y-%m-%d %H:%M:%S}Z last {item.last_seen:%H:%M:%S}Z "
        f"pods: {pods or '-'}",
        f"  template: {_clip(item.template, MAX_TEMPLATE_CHARS)}",
    ]
    for example in item.examples[:examples]:
        if example != item.template:
            lines.append(f"  example: {_clip(example, example_chars)}")
    return "\n".join(lines)


def shrink(item: EvidenceItem) -> EvidenceItem:
    """The same item with fewer, shorter examples: what is tried when the full one won't fit."""
    return item.model_copy(update={"examples": [_clip(e, 120) for e in item.examples[:1]]})


def render_user(
    header: str,
    blocks: Sequence[str],
    omitted: int,
    question: str | None,
    findings: str = "",
) -> str:
    parts = [header, *(["", findings] if findings else []), ""]
    parts += ["Evidence (most important first):", *blocks]
    if omitted:
        parts.append(f"({omitted} lower-ranked templates were left out to fit the context.)")
    parts += ["", f"Question: {question}" if question else "Question: what went wrong?"]
    return "\n".join(parts)


def build_prompt(
    evidence: Sequence[EvidenceItem],
    *,
    header: str,
    question: str | None,
    limit: int,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    findings: Sequence[str] = (),
    system: str | None = None,
) -> Prompt:
    """Fill the prompt with the findings and the best-ranked evidence that fit `budget_tokens`.

    The budget covers the system and user messages; the caller has already subtracted the
    answer's `max_tokens` from the context. `findings` are versions of the findings text,
    longest first: the longest that fits goes in (none if none fits). Evidence items are taken
    in rank order; one that does not fit is tried once in a shorter form, then skipped, so
    smaller later items can still fit. `system` replaces the default system prompt.
    """
    system = system_prompt() if system is None else system
    # Chat-template tokens (role markers) are not in either text: keep a margin for them.
    fixed = count_tokens(system) + count_tokens(render_user(header, [], len(evidence), question))
    remaining = budget_tokens - fixed - TEMPLATE_MARGIN_TOKENS
    if remaining <= 0:
        raise ContextOverflowError(
            f"the model's context leaves {budget_tokens} prompt tokens, fewer than the "
            f"{fixed} the instructions alone need",
            n_prompt_tokens=fixed,
            n_ctx=budget_tokens,
        )
    stated = ""
    for version in findings:
        cost = count_tokens(version) + 1
        if cost <= remaining // 2:  # the evidence keeps at least half of the budget
            stated, remaining = version, remaining - cost
            break
    chosen: list[EvidenceItem] = []
    blocks: list[str] = []
    for item in evidence[:limit]:
        if remaining <= 0:
            break
        for candidate in (item, shrink(item)):
            block = render_item(candidate)
            cost = count_tokens(block) + 1
            if cost <= remaining:
                chosen.append(candidate)
                blocks.append(block)
                remaining -= cost
                break
    omitted = len(evidence) - len(chosen)
    user = render_user(header, blocks, omitted, question, stated)
    used = budget_tokens - remaining
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return Prompt(messages=messages, evidence=chosen, omitted=omitted, prompt_tokens=used)
