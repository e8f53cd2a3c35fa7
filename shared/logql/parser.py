"""Parse a user's `log_filter` into a `LogFilter`, allowing only the stages we can check."""

from __future__ import annotations

from typing import Final, Literal, cast

from shared.errors import InvalidQueryError
from shared.logql.lexer import LogQLSyntaxError, Token, escape_logql_string, tokenize
from shared.logql.pipeline import (
    LINE_OPS,
    NUMBER_OPS,
    STRING_OPS,
    LabelFilter,
    LineFilter,
    LineOp,
    LogFilter,
    ParserStage,
    Stage,
)
from shared.logql.regex import compile_re2

MAX_STAGES: Final = 50

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
        if tok.kind == "OP" and tok.value in LINE_OPS:
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
                follows.kind == "OP" and (follows.value in LINE_OPS or follows.value == "|")
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
        if op_tok.kind != "OP" or op_tok.value not in (*STRING_OPS, *NUMBER_OPS):
            raise self.fail(f"expected a comparison after label '{name}'", "= != =~ !~ > < ==")
        op = self.advance().value
        value_tok = self.tok
        if value_tok.kind == "STRING" and op in STRING_OPS:
            self.advance()
            if op in ("=~", "!~"):
                stage = f"{name}{op}{escape_logql_string(value_tok.value)}"
                _check_regex(value_tok.value, value_tok.pos, stage)
            result = LabelFilter(name, op, value_tok.value, numeric=False)
        elif value_tok.kind == "NUMBER" and op in NUMBER_OPS:
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
