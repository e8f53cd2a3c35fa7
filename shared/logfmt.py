"""The one logfmt parser: `key=value key="quoted \\"value\\"" bare`.

Used by the flatten stage (is this line logfmt, and what are its fields?) and by the LogQL
evaluator (`| logfmt`, as Loki extracts labels). Quoted values take Go-style escapes
(`\\n`, `\\t`, `\\"`, `\\\\`, `\\uXXXX`, `\\xXX`); an unknown escape is kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# One token per match: a key with an optional `=value` (quoted or plain), a stray quoted
# string, or any other run of non-space characters.
_TOKEN: Final = re.compile(
    r'([^\s="]+)(=(?:"((?:[^"\\]|\\.)*)"?|([^\s"]*)))?|"(?:[^"\\]|\\.)*"?|\S+', re.DOTALL
)
_ESCAPE: Final = re.compile(r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|(.))", re.DOTALL)
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


@dataclass(frozen=True, slots=True)
class Logfmt:
    """A parsed line: its `key=value` pairs in order (first wins on repeats), keys given
    without `=` (Loki reads them as empty values), and tokens that are neither."""

    pairs: dict[str, str]
    bare_keys: tuple[str, ...]
    stray: int

    def labels(self) -> list[tuple[str, str]]:
        """Every key, as Loki's `| logfmt` extracts them (a bare key has an empty value)."""
        return [*self.pairs.items(), *((key, "") for key in self.bare_keys)]

    def is_structured(self) -> bool:
        """Mostly `key=value` pairs: at least two, and at most half as many other tokens."""
        others = len(self.bare_keys) + self.stray
        return len(self.pairs) >= 2 and others * 2 <= len(self.pairs)


def parse(text: str) -> Logfmt:
    """Split `text` into logfmt pairs; never fails (what is not a pair is counted)."""
    pairs: dict[str, str] = {}
    bare: list[str] = []
    stray = 0
    # `findall` (one tuple per token) is about twice as fast as `finditer` with groups.
    for key, assigned, quoted, plain in _TOKEN.findall(text):
        if not key:
            stray += 1
        elif not assigned:
            bare.append(key)
        elif key not in pairs:
            pairs[key] = unescape(quoted) if assigned[1:2] == '"' else plain
    return Logfmt(pairs, tuple(bare), stray)


def unescape(value: str) -> str:
    """Resolve the Go-style escapes of a quoted logfmt value."""
    return _ESCAPE.sub(_unescape_one, value) if "\\" in value else value


def _unescape_one(match: re.Match[str]) -> str:
    code = match.group(1) or match.group(2)
    if code is not None:
        return chr(int(code, 16))
    char = match.group(3)
    return _ESCAPES.get(char, "\\" + char)
