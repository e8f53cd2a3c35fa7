"""Safe LogQL: validate request filters, parse the user's pipeline, render canonical queries.

Users never write LogQL that reaches Loki verbatim. `namespace`, `container` and `node` must be
Kubernetes names, `pod` is an RE2 regex, and `log_filter` goes through a small parser that knows
only these pipeline stages:

- line filters ``|= "s"``, ``!= "s"``, ``|~ "re"``, ``!~ "re"``; the positive ones may chain
  alternatives with ``or "s2"`` (negative ones may not: Loki versions disagree on what
  ``!= "a" or "b"`` means, so write ``!= "a" != "b"``);
- parsers ``| json`` and ``| logfmt`` (no parameters);
- label filters ``| name op "string"`` with op in ``= != =~ !~`` and ``| name op number`` with op
  in ``> >= < <= == !=`` (plain decimal numbers; no durations, byte sizes or ``and``/``or``).

Strings are double-quoted Go literals or backtick raw strings; every regex is compiled with RE2.
The parsed `LogFilter` renders itself back to LogQL, re-escaping every literal, so a query's shape
is fixed by this module and never by the user's text.

Local evaluation (`LogFilter.evaluate`, used by the file source and the test stub) follows Loki:
line filters match the raw line (``|~`` is an unanchored search), label regexes are anchored,
a missing label has the value ``""``, ``json`` flattens nested objects with ``_`` and skips
arrays, ``logfmt`` takes ``k=v`` and ``k="quoted v"`` pairs, an extracted label that clashes with
an existing one gets an ``_extracted`` suffix, and a failed parse or number conversion sets
``__error__`` instead of dropping the line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias, cast

import re2

from shared.errors import InvalidQueryError
from shared.schemas import AnalysisRequest, Filters

__all__ = [
    "LabelFilter",
    "LineFilter",
    "LogFilter",
    "LogQLSyntaxError",
    "ParserStage",
    "Token",
    "build_query",
    "compile_re2",
    "escape_logql_string",
    "parse_log_filter",
    "parse_pipeline",
    "re2_error_text",
    "tokenize",
    "validate_filters",
    "validate_request_filters",
]

MAX_STAGES: Final = 50

_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*", re.ASCII
)

# Words Loki's lexer always treats as keywords: a label filter on one of them would not parse
# in Loki, and the stage keywords are exactly the stages we refuse.
_LOKI_KEYWORDS: Final = frozenset(
    """
    by without bool on ignoring group_left group_right and or unless offset
    json logfmt regexp pattern unpack unwrap label_format line_format ip drop keep decolorize
    distinct duration duration_seconds bytes
    sum avg max min count stddev stdvar bottomk topk sort sort_desc approx_topk
    rate rate_counter count_over_time bytes_rate bytes_over_time avg_over_time sum_over_time
    min_over_time max_over_time stddev_over_time stdvar_over_time quantile_over_time
    first_over_time last_over_time absent_over_time vector label_replace
    """.split()
)

LineOp: TypeAlias = Literal["|=", "!=", "|~", "!~"]
StringOp: TypeAlias = Literal["=", "!=", "=~", "!~"]
NumberOp: TypeAlias = Literal[">", ">=", "<", "<=", "==", "!="]

_LINE_OPS: Final = ("|=", "!=", "|~", "!~")
_STRING_OPS: Final = ("=", "!=", "=~", "!~")
_NUMBER_OPS: Final = (">", ">=", "<", "<=", "==", "!=")


# --- Strings ---------------------------------------------------------------------------------

_SHORT_ESCAPES: Final = {
    "\\": "\\\\",
    '"': '\\"',
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
_UNESCAPES: Final = {v[1]: k for k, v in _SHORT_ESCAPES.items()}


def escape_logql_string(value: str) -> str:
    """Render `value` as a double-quoted Go string literal that Loki reads back unchanged.

    Backslashes, quotes and every non-printable character are escaped, so the result is one
    token whatever `value` holds. Raises ValueError on lone surrogates (not valid UTF-8).
    """
    out = ['"']
    for ch in value:
        code = ord(ch)
        escaped = _SHORT_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"lone surrogate U+{code:04X} cannot be encoded")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --- Errors, tokens --------------------------------------------------------------------------


class LogQLSyntaxError(ValueError):
    """Raised by `tokenize`/`parse_pipeline`; `parse_log_filter` turns it into InvalidQueryError.

    `pos` is a 0-based offset into the whole text; `found` and `expected` use Loki's token
    names (``STRING``, ``NUMBER``, ``IDENTIFIER``, ``$end``) so a stub can word errors like
    Loki; `regex_error` is set (with `stage`) when an RE2 pattern does not compile.
    """

    def __init__(
        self,
        message: str,
        pos: int,
        *,
        found: str = "",
        expected: str = "",
        stage: str = "",
        pattern: str = "",
        regex_error: str = "",
    ) -> None:
        super().__init__(f"{message} (at position {pos + 1})")
        self.reason = message
        self.pos = pos
        self.found = found
        self.expected = expected
        self.stage = stage
        self.pattern = pattern
        self.regex_error = regex_error


TokenKind: TypeAlias = Literal["STRING", "NUMBER", "IDENTIFIER", "OP", "PUNCT", "$end"]


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; `value` is the decoded string for STRING, else the source text."""

    kind: TokenKind
    value: str
    pos: int

    def describe(self) -> str:
        """A short human description for error messages."""
        if self.kind == "$end":
            return "end of input"
        if self.kind == "STRING":
            text = escape_logql_string(self.value)
            return f"string {text[:40]}…" if len(text) > 40 else f"string {text}"
        if self.kind == "NUMBER":
            return f"number {self.value}"
        return f"'{self.value[:40]}'"

    @property
    def loki_name(self) -> str:
        """The token as Loki's parser names it in `unexpected …` errors."""
        if self.kind in ("STRING", "NUMBER", "IDENTIFIER", "$end"):
            return self.kind
        return self.value


_OPERATORS: Final = ("|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "|", "=", ">", "<")
_PUNCTUATION: Final = frozenset("{}(),[]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?([A-Za-z_][A-Za-z0-9_]*)?", re.ASCII)
_WHITESPACE: Final = frozenset(" \t\r\n")


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Decode a Go interpreted string literal starting at the quote at `pos`."""
    out: list[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\n":
            raise LogQLSyntaxError("newline in string", i, found="STRING")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            break
        esc = text[i + 1]
        if esc in _UNESCAPES:
            out.append(_UNESCAPES[esc])
            i += 2
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise LogQLSyntaxError(f"invalid \\{esc} escape in string", i)
            code = int(digits, 16)
            out.append(_escaped_char(code, esc == "x", i))
            i += 2 + width
        elif esc in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise LogQLSyntaxError("invalid octal escape in string", i)
            out.append(_escaped_char(int(digits, 8), True, i))
            i += 4
        else:
            hint = " (write \\\\ for a backslash, or use a `backtick` string)"
            raise LogQLSyntaxError(f"invalid escape \\{esc} in string{hint}", i)
    raise LogQLSyntaxError("unterminated string", pos, found="STRING")


def _escaped_char(code: int, is_byte: bool, pos: int) -> str:
    if is_byte and code >= 0x80:
        # Go reads \xNN and octal escapes as raw bytes; only ASCII ones are also characters.
        raise LogQLSyntaxError("byte escapes above \\x7f are not supported; use \\u", pos)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        raise LogQLSyntaxError("escape is not a valid Unicode code point", pos)
    return chr(code)


def tokenize(text: str, start: int = 0) -> Iterator[Token]:
    """Yield the tokens of `text[start:]`, ending with a ``$end`` token.

    Raises LogQLSyntaxError for characters LogQL has no use for here, bad escapes,
    unterminated strings and numbers with unit suffixes (durations, byte sizes).
    """
    i = start
    n = len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            yield Token("$end", "", n)
            return
        ch = text[i]
        if ch == '"':
            value, end = _read_quoted(text, i)
            yield Token("STRING", value, i)
            i = end
            continue
        if ch == "`":
            close = text.find("`", i + 1)
            if close < 0:
                raise LogQLSyntaxError("unterminated raw string", i, found="STRING")
            # Go drops carriage returns from raw strings.
            yield Token("STRING", text[i + 1 : close].replace("\r", ""), i)
            i = close + 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            yield Token("OP", op, i)
            i += len(op)
            continue
        if ch in _PUNCTUATION:
            yield Token("PUNCT", ch, i)
            i += 1
            continue
        match = _NUMBER.match(text, i)
        if match:
            if match.group(1):
                raise LogQLSyntaxError(
                    f"unsupported value {match.group(0)!r}: only plain numbers are allowed "
                    "(no durations or byte sizes)",
                    i,
                    found="NUMBER",
                )
            yield Token("NUMBER", match.group(0), i)
            i = match.end()
            continue
        match = _IDENT.match(text, i)
        if match:
            yield Token("IDENTIFIER", match.group(0), i)
            i = match.end()
            continue
        raise LogQLSyntaxError(f"unexpected character {ch!r}", i, found=repr(ch))


# --- Regexes ---------------------------------------------------------------------------------


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # we report the error; RE2 would also print it to stderr
    return options


_RE2_OPTIONS: Final = _re2_options()
_ANY_BYTE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\C")


@lru_cache(maxsize=512)
def compile_re2(pattern: str) -> Any:
    """Compile `pattern` with RE2 (cached); raises ValueError when Loki's Go RE2 would refuse it."""
    if _ANY_BYTE_ESCAPE.search(pattern):
        # C++ RE2 accepts \C (any byte), Go's regexp does not.
        raise ValueError(f"invalid escape sequence: \\C in {pattern!r}")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        raise ValueError(re2_error_text(exc)) from None


def re2_error_text(exc: BaseException) -> str:
    """The readable message of an RE2 error (the binding carries it as bytes)."""
    arg = exc.args[0] if exc.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text or exc.__class__.__name__


def _check_regex(pattern: str, pos: int, stage: str) -> None:
    try:
        compile_re2(pattern)
    except ValueError as exc:
        detail = str(exc)
        raise LogQLSyntaxError(
            f"invalid regex in {stage}: {detail}",
            pos,
            stage=stage,
            pattern=pattern,
            regex_error=detail,
        ) from None


# --- Pipeline stages -------------------------------------------------------------------------

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
            extracted = _parse_json(line) if self.kind == "json" else _parse_logfmt(line)
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


# --- Parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.tokens = tokenize(text, start)
        self.tok = next(self.tokens)

    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != "$end":
            self.tok = next(self.tokens)
        return tok

    def fail(self, message: str, expected: str, tok: Token | None = None) -> LogQLSyntaxError:
        tok = tok or self.tok
        return LogQLSyntaxError(
            f"{message}, found {tok.describe()}", tok.pos, found=tok.loki_name, expected=expected
        )

    def parse(self) -> LogFilter:
        stages: list[Stage] = []
        while self.tok.kind != "$end":
            if len(stages) >= MAX_STAGES:
                raise LogQLSyntaxError(f"too many stages (at most {MAX_STAGES})", self.tok.pos)
            stages.append(self.stage())
        return LogFilter(tuple(stages))

    def stage(self) -> Stage:
        tok = self.tok
        if tok.kind == "OP" and tok.value in _LINE_OPS:
            return self.line_filter()
        if tok.kind == "OP" and tok.value == "|":
            self.advance()
            return self.pipe_stage()
        if tok.kind == "PUNCT" and tok.value == "{":
            raise LogQLSyntaxError(
                "stream selectors are not allowed in log_filter (use the filters fields)",
                tok.pos,
                found="{",
                expected="|",
            )
        raise self.fail("expected a line filter (|=, !=, |~, !~) or a | stage", "| or |= or |~")

    def string(self, what: str, expected: str = "STRING") -> Token:
        if self.tok.kind != "STRING":
            raise self.fail(f"expected a string after {what}", expected)
        return self.advance()

    def line_filter(self) -> LineFilter:
        op_tok = self.advance()
        op = cast(LineOp, op_tok.value)
        patterns = [self.string(op, "STRING or ip")]
        while self.tok.kind == "IDENTIFIER" and self.tok.value == "or":
            or_tok = self.advance()
            if op[0] == "!":
                raise LogQLSyntaxError(
                    f"'or' cannot follow {op}; chain negative filters instead "
                    f'({op} "a" {op} "b")',
                    or_tok.pos,
                    found="or",
                )
            patterns.append(self.string("'or'", "STRING or ip"))
        result = LineFilter(op, tuple(t.value for t in patterns))
        if op in ("|~", "!~"):
            for tok in patterns:
                _check_regex(tok.value, tok.pos, f"{op} {escape_logql_string(tok.value)}")
        return result

    def pipe_stage(self) -> Stage:
        tok = self.tok
        if tok.kind != "IDENTIFIER":
            raise self.fail("expected json, logfmt or a label filter after |", "IDENTIFIER")
        if tok.value in ("json", "logfmt"):
            self.advance()
            follows = self.tok
            if follows.kind != "$end" and not (
                follows.kind == "OP" and (follows.value in _LINE_OPS or follows.value == "|")
            ):
                raise self.fail(f"{tok.value} takes no parameters", "| or $end")
            return ParserStage(cast(Literal["json", "logfmt"], tok.value))
        if tok.value in _LOKI_KEYWORDS:
            raise LogQLSyntaxError(
                f"stage '{tok.value}' is not allowed; only json, logfmt, line and label "
                "filters are",
                tok.pos,
                found=tok.value,
            )
        return self.label_filter()

    def label_filter(self) -> LabelFilter:
        name = self.advance().value
        op_tok = self.tok
        if op_tok.kind != "OP" or op_tok.value not in (*_STRING_OPS, *_NUMBER_OPS):
            raise self.fail(f"expected a comparison after label '{name}'", "= != =~ !~ > < ==")
        op = self.advance().value
        value_tok = self.tok
        if value_tok.kind == "STRING" and op in _STRING_OPS:
            self.advance()
            if op in ("=~", "!~"):
                stage = f"{name}{op}{escape_logql_string(value_tok.value)}"
                _check_regex(value_tok.value, value_tok.pos, stage)
            result = LabelFilter(name, op, value_tok.value, numeric=False)
        elif value_tok.kind == "NUMBER" and op in _NUMBER_OPS:
            self.advance()
            result = LabelFilter(name, op, value_tok.value, numeric=True)
        else:
            wanted = "a string" if op in ("=", "=~", "!~") else "a number"
            if op == "!=":
                wanted = "a string or a number"
            raise self.fail(f"expected {wanted} after {name}{op}", "STRING or NUMBER")
        after = self.tok
        if (after.kind == "IDENTIFIER" and after.value in ("and", "or")) or (
            after.kind == "PUNCT" and after.value == ","
        ):
            raise self.fail("combine label filters as separate | stages", "|")
        return result


def parse_pipeline(text: str, start: int = 0) -> LogFilter:
    """Parse the pipeline in `text[start:]`; raises LogQLSyntaxError (positions are into `text`).

    Used by `parse_log_filter` and by the Loki test stub (which parses the selector itself).
    """
    for i, ch in enumerate(text[start:], start):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise LogQLSyntaxError("invalid character (lone surrogate)", i)
    return _Parser(text, start).parse()


def parse_log_filter(text: str) -> LogFilter:
    """Parse the user's `log_filter` into a `LogFilter`; ``""`` means no filter.

    Raises InvalidQueryError("log_filter", …) naming what is wrong and where.
    """
    if not text.strip():
        return LogFilter()
    try:
        return parse_pipeline(text)
    except LogQLSyntaxError as exc:
        raise InvalidQueryError("log_filter", str(exc)) from None


# --- Filters and the full query --------------------------------------------------------------


def _check_name(field: str, value: str, pattern: re.Pattern[str], kind: str, size: int) -> None:
    if len(value) > size or pattern.fullmatch(value) is None:
        raise InvalidQueryError(
            f"filters.{field}",
            f"must be an RFC 1123 {kind}: lowercase letters, digits and '-'"
            + (" in dot-separated parts" if kind == "subdomain" else "")
            + f", starting and ending with a letter or digit, at most {size} characters",
        )


def validate_filters(filters: Filters) -> Filters:
    """Check every filter can be placed in a selector; returns `filters` unchanged.

    Raises InvalidQueryError naming ``filters.namespace``, ``filters.container``,
    ``filters.node`` or ``filters.pod``.
    """
    _check_name("namespace", filters.namespace, _DNS_LABEL, "label", 63)
    if filters.container is not None:
        _check_name("container", filters.container, _DNS_LABEL, "label", 63)
    if filters.node is not None:
        _check_name("node", filters.node, _DNS_SUBDOMAIN, "subdomain", 253)
    if filters.pod is not None:
        if filters.pod == "":
            raise InvalidQueryError("filters.pod", "must not be empty; omit it to match all pods")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in filters.pod):
            raise InvalidQueryError("filters.pod", "must be valid Unicode (lone surrogate)")
        try:
            compile_re2(filters.pod)
        except ValueError as exc:
            raise InvalidQueryError("filters.pod", f"is not a valid RE2 regex: {exc}") from None
    return filters


def build_query(filters: Filters, log_filter: LogFilter) -> str:
    """The LogQL query for `filters` and `log_filter`; validates the filters again first."""
    validate_filters(filters)
    matchers = [f"namespace={escape_logql_string(filters.namespace)}"]
    if filters.container is not None:
        matchers.append(f"container={escape_logql_string(filters.container)}")
    if filters.node is not None:
        matchers.append(f"node={escape_logql_string(filters.node)}")
    if filters.pod is not None:
        matchers.append(f"pod=~{escape_logql_string(filters.pod)}")
    selector = "{" + ", ".join(matchers) + "}"
    pipeline = log_filter.render()
    return f"{selector} {pipeline}" if pipeline else selector


def validate_request_filters(request: AnalysisRequest) -> tuple[Filters, LogFilter]:
    """Everything the API checks before queueing: the filters and the parsed `log_filter`."""
    return validate_filters(request.filters), parse_log_filter(request.log_filter)


# --- Local parsers for json / logfmt ----------------------------------------------------------

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


_LOGFMT_PAIR = re.compile(
    r'\s*([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*)))?(?=\s|$)', re.DOTALL
)


def _parse_logfmt(line: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = line.rstrip()
    while pos < len(text):
        match = _LOGFMT_PAIR.match(text, pos)
        if match is None:
            raise ValueError(f"logfmt syntax error at {pos}")
        key, quoted, bare = match.groups()
        if quoted is not None:
            try:
                value = json.loads(f'"{quoted}"')
            except json.JSONDecodeError:
                value = quoted
        else:
            value = bare or ""
        out.append((key, value))
        pos = match.end()
    return out
