"""The structured answer: a JSON schema built per job, the token cap it implies, and the check
of what the model returned.

The schema asks for a summary, the cause (one of the findings' candidate template ids, or
`none`), an explanation and next steps, each bounded (maxLength, maxItems). A grammar-
constrained server (llama.cpp's `json_schema` / OpenAI's `response_format`) can then only
produce a JSON document of bounded size: the answer's `max_tokens` is that size in characters
(a token is at least one character of ASCII text), so a small model cannot loop until the
token cap, and the cap is never what ends a valid answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from shared.schemas import Findings, StructuredAnswer

SYSTEM_PROMPT_PATH = Path(__file__).parent / "prompts" / "system_json.md"
NONE = "none"
# The bounds when the answer budget allows them all; a smaller budget scales them down.
FULL_SUMMARY_CHARS = 300
FULL_EXPLANATION_CHARS = 600
FULL_STEP_CHARS = 160
MAX_STEPS = 3
# Below this many characters for the text fields a JSON answer says too little: free text.
MIN_TEXT_CHARS = 60
# Whitespace the grammar lets the model put between the JSON's parts, allowed in all.
WHITESPACE_CHARS = 24
FIELDS = ("summary", "cause", "explanation", "next_steps")

AnswerFormat = Literal["text", "json"]


def choose_format(setting: str, *, n_ctx: int, max_context: int, model: str) -> AnswerFormat:
    """`json` or `text` for one call: LLM_ANSWER_FORMAT, or with `auto`, JSON for the bundled
    model (SmolLM2) and for any context of at most LLM_STRUCTURED_MAX_CONTEXT tokens."""
    if setting in ("json", "text"):
        return setting  # type: ignore[return-value]
    bundled = "smollm2" in model.lower()
    return "json" if bundled or n_ctx <= max_context else "text"


def cause_ids(findings: Findings | None) -> list[str]:
    """The values `cause` may take: the probable causes' template ids in rank order, then
    `none`."""
    ids: list[str] = []
    for cause in findings.probable_causes if findings is not None else []:
        if cause.template_id not in ids and cause.template_id != NONE:
            ids.append(cause.template_id)
    return [*ids, NONE]


@dataclass(frozen=True)
class AnswerSchema:
    """The bounds of one job's structured answer and the schema and validator built from them."""

    causes: tuple[str, ...]
    summary_chars: int
    explanation_chars: int
    step_chars: int
    steps: int = MAX_STEPS

    @classmethod
    def build(cls, causes: Sequence[str], answer_tokens: int) -> AnswerSchema | None:
        """The largest bounds (up to the full ones) whose JSON fits `answer_tokens` tokens at
        one character per token; None when the budget leaves too little text for JSON."""
        ids = tuple(dict.fromkeys([*(c for c in causes if c != NONE), NONE]))
        overhead = cls(ids, 0, 0, 0).max_chars()
        full = FULL_SUMMARY_CHARS + FULL_EXPLANATION_CHARS + MAX_STEPS * FULL_STEP_CHARS
        room = answer_tokens - overhead
        if room < MIN_TEXT_CHARS:
            return None
        scale = min(1.0, room / full)
        return cls(
            ids,
            summary_chars=max(1, int(FULL_SUMMARY_CHARS * scale)),
            explanation_chars=max(1, int(FULL_EXPLANATION_CHARS * scale)),
            step_chars=max(1, int(FULL_STEP_CHARS * scale)),
        )

    def max_chars(self) -> int:
        """The longest JSON document the schema admits, in characters, with the whitespace
        allowance: the answer's token cap."""
        skeleton = json.dumps(dict.fromkeys(FIELDS[:3], ""), separators=(",", ":"))
        skeleton = skeleton[:-1] + ',"next_steps":[]}'
        cause = max((len(c) for c in self.causes), default=len(NONE))
        items = self.steps * (self.step_chars + 3)  # the quotes and the comma
        return (
            len(skeleton)
            + cause
            + self.summary_chars
            + self.explanation_chars
            + items
            + WHITESPACE_CHARS
        )

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema sent to the server (properties in the order they are rendered)."""

        def text(limit: int) -> dict[str, Any]:
            return {"type": "string", "minLength": 1, "maxLength": limit}

        return {
            "type": "object",
            "properties": {
                "summary": text(self.summary_chars),
                "cause": {"type": "string", "enum": list(self.causes)},
                "explanation": text(self.explanation_chars),
                "next_steps": {
                    "type": "array",
                    "items": text(self.step_chars),
                    "minItems": 1,
                    "maxItems": self.steps,
                },
            },
            "required": list(FIELDS),
            "additionalProperties": False,
        }

    def response_format(self) -> dict[str, Any]:
        """OpenAI's `response_format`, which llama.cpp's server reads as its `json_schema`."""
        return {
            "type": "json_schema",
            "json_schema": {"name": "log_analysis", "strict": True, "schema": self.json_schema()},
        }

    def model(self) -> type[BaseModel]:
        """A pydantic model enforcing the same bounds as `json_schema`."""

        def text(limit: int) -> Any:
            return Annotated[str, Field(min_length=1, max_length=limit)]

        step = text(self.step_chars)
        steps = Annotated[list[step], Field(min_length=1, max_length=self.steps)]  # type: ignore[valid-type]
        fields: dict[str, Any] = {
            "summary": (text(self.summary_chars), ...),
            "cause": (Literal[self.causes], ...),
            "explanation": (text(self.explanation_chars), ...),
            "next_steps": (steps, ...),
        }
        return create_model(
            "BoundedAnswer", __config__=ConfigDict(extra="forbid", strict=True), **fields
        )

    def parse(self, raw: str) -> tuple[StructuredAnswer | None, str | None]:
        """The answer parsed and checked against the schema, or None and why not."""
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            return None, f"the answer is not complete JSON ({exc.msg} at character {exc.pos})"
        try:
            checked = self.model().model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'answer'}: {error['msg']}"
                for error in exc.errors()[:3]
            )
            return None, f"the answer does not match its schema ({problems})"
        return StructuredAnswer.model_validate(checked.model_dump()), None


def system_prompt(causes: Iterable[str]) -> str:
    """The system prompt of JSON mode: the fields, and the causes `cause` may name."""
    allowed = ", ".join(f'"{c}"' for c in causes)
    return SYSTEM_PROMPT_PATH.read_text().strip().replace("{causes}", allowed)
