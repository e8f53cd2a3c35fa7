"""LogQL lexing: Go string literals both ways, and the tokens of a pipeline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

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
