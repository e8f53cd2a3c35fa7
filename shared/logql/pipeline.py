"""The pipeline a `log_filter` parses into, and its local evaluation (file source, stub).

Evaluation follows Loki: line filters match the raw line (`|~` is an unanchored search),
label regexes are anchored, a missing label has the value `""`, `json` flattens nested
objects with `_` and skips arrays, `logfmt` takes `k=v` and `k="quoted v"` pairs (the one
parser in `shared.logfmt`), an extracted label that clashes with an existing one gets an
`_extracted` suffix, and a failed parse or number conversion sets `__error__` instead of
dropping the line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from shared import logfmt
from shared.logql.lexer import escape_logql_string
from shared.logql.regex import compile_re2

LineOp: TypeAlias = Literal["|=", "!=", "|~", "!~"]
StringOp: TypeAlias = Literal["=", "!=", "=~", "!~"]
NumberOp: TypeAlias = Literal[">", ">=", "<", "<=", "==", "!="]

LINE_OPS: Final = ("|=", "!=", "|~", "!~")
STRING_OPS: Final = ("=", "!=", "=~", "!~")
NUMBER_OPS: Final = (">", ">=", "<", "<=", "==", "!=")


Labels: TypeAlias = dict[str, str]


@dataclass(frozen=True, slots=True)
class LineFilter:
    """``|= "a"`` (or ``|= "a" or "b"``), ``!= "a"``, ``|~ "re"``, ``!~ "re"``."""

    op: LineOp
    patterns: tuple[str, ...]

    def render(self) -> str:
        """Canonical LogQL for this stage."""
        return f"{self.op} " + " or ".join(escape_logql_string(p) for p in self.patterns)

    def matches(self, line: str) -> bool:
        """Whether `line` passes this filter (regexes search, unanchored, as in Loki)."""
        if self.op in ("|=", "!="):
            hit = any(p in line for p in self.patterns)
        else:
            hit = any(compile_re2(p).search(line) is not None for p in self.patterns)
        return hit if self.op[0] == "|" else not hit


@dataclass(frozen=True, slots=True)
class ParserStage:
    """``| json`` or ``| logfmt``."""

    kind: Literal["json", "logfmt"]

    def render(self) -> str:
        """Canonical LogQL for this stage."""
        return f"| {self.kind}"

    def apply(self, line: str, labels: Labels) -> None:
        """Add the labels extracted from `line` to `labels` (best effort, Loki-like)."""
        try:
            extracted = _parse_json(line) if self.kind == "json" else logfmt.parse(line).labels()
        except ValueError:
            labels["__error__"] = "JSONParserErr" if self.kind == "json" else "LogfmtParserErr"
            return
        for key, value in extracted:
            name = _sanitize_label_name(key)
            if not name:
                continue
            if name in labels:
                name = f"{name}_extracted"
            labels[name] = value


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """``| name op "string"`` or ``| name op number``; `value` is the decoded string or the
    number's digits."""

    name: str
    op: str
    value: str
    numeric: bool

    def render(self) -> str:
        """Canonical LogQL for this stage."""
        value = self.value if self.numeric else escape_logql_string(self.value)
        return f"| {self.name}{self.op}{value}"

    def apply(self, labels: Labels) -> bool:
        """Whether the entry passes; a failed number conversion marks ``__error__`` as Loki."""
        actual = labels.get(self.name, "")
        if not self.numeric:
            if self.op == "=":
                return actual == self.value
            if self.op == "!=":
                return actual != self.value
            full = compile_re2(self.value).fullmatch(actual) is not None
            return full if self.op == "=~" else not full
        try:
            number = float(actual)
        except ValueError:
            labels["__error__"] = "LabelFilterErr"
            return True
        wanted = float(self.value)
        return {
            ">": number > wanted,
            ">=": number >= wanted,
            "<": number < wanted,
            "<=": number <= wanted,
            "==": number == wanted,
            "!=": number != wanted,
        }[self.op]


Stage: TypeAlias = LineFilter | ParserStage | LabelFilter


@dataclass(frozen=True, slots=True)
class LogFilter:
    """A validated pipeline; immutable, renders canonically, evaluates locally."""

    stages: tuple[Stage, ...] = ()

    def render(self) -> str:
        """The pipeline as LogQL (``""`` when empty); every literal re-escaped."""
        return " ".join(stage.render() for stage in self.stages)

    def __str__(self) -> str:
        return self.render()

    @property
    def is_empty(self) -> bool:
        """True when the pipeline has no stages (every line passes)."""
        return not self.stages

    @property
    def lines_only(self) -> bool:
        """True when every stage is a line filter: labels pass through unchanged."""
        return all(isinstance(stage, LineFilter) for stage in self.stages)

    def keeps_line(self, line: str) -> bool:
        """Whether `line` passes every line filter (labels untouched: see `lines_only`)."""
        return all(stage.matches(line) for stage in self.stages if isinstance(stage, LineFilter))

    def evaluate(self, line: str, labels: Mapping[str, str] | None = None) -> Labels | None:
        """Run the pipeline on one entry: the resulting labels, or None if the line is dropped.

        `labels` are the stream labels (used by label filters placed before any parser).
        """
        current: Labels = dict(labels) if labels else {}
        for stage in self.stages:
            if isinstance(stage, LineFilter):
                if not stage.matches(line):
                    return None
            elif isinstance(stage, ParserStage):
                stage.apply(line, current)
            elif not stage.apply(current):
                return None
        return current

    def matches_line(self, line: str, labels: Mapping[str, str] | None = None) -> bool:
        """Whether `line` passes every stage (see the module docstring for what is evaluated)."""
        return self.evaluate(line, labels) is not None


_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_]", re.ASCII)


def _sanitize_label_name(key: str) -> str:
    name = _LABEL_CHAR.sub("_", key)
    if name and name[0].isdigit():
        name = "_" + name
    return name


def _parse_json(line: str) -> list[tuple[str, str]]:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    out: list[tuple[str, str]] = []
    _flatten_json(value, "", out)
    return out


def _flatten_json(obj: dict[str, Any], prefix: str, out: list[tuple[str, str]]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten_json(value, f"{name}_", out)
        elif isinstance(value, list):
            continue
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        elif value is None:
            out.append((name, ""))
        elif isinstance(value, float) and not math.isfinite(value):
            out.append((name, str(value)))
        elif isinstance(value, int | float):
            out.append((name, json.dumps(value)))
        else:
            out.append((name, str(value)))
