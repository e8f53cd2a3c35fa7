"""What the deterministic check of a model's answer found (see workers/llm/verify.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ClaimKind = Literal[
    "quote",
    "url",
    "timestamp",
    "time",
    "ip",
    "redacted",
    "path",
    "error_code",
    "number",
    "hostname",
    "identifier",
]
Verdict = Literal["verified", "partly_supported", "unverified"]


class Claim(BaseModel):
    """One concrete claim of the answer, at `start:end` of its text."""

    kind: ClaimKind
    text: str
    start: int
    end: int
    supported: bool


class TextSpan(BaseModel):
    """Character offsets `[start, end)` of a sentence of the answer."""

    start: int
    end: int


class Verification(BaseModel):
    """The answer checked against the evidence, the findings and the request.

    `grounding` is supported claims / claims (1.0 when the answer makes no concrete claim:
    nothing in it contradicts the evidence). The verdict is `unverified` when grounding is
    below `threshold`, a citation is invalid, or the answer is empty, cut or degenerate;
    `verified` when every claim is supported; `partly_supported` otherwise.
    """

    verdict: Verdict
    grounding: float
    threshold: float
    claims: list[Claim] = Field(default_factory=list)
    unsupported_spans: list[TextSpan] = Field(default_factory=list)
    cited: list[str] = Field(default_factory=list)
    invalid_citations: list[str] = Field(default_factory=list)
    degenerate: bool = False
    reasons: list[str] = Field(default_factory=list, description="why the verdict is not verified")

    @property
    def bad(self) -> bool:
        """Whether the reader should not trust the text (it is collapsed on the page)."""
        return self.verdict == "unverified"
