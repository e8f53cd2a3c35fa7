"""RE2, as Loki compiles regexes: user patterns are checked with the same engine."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

import re2


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
