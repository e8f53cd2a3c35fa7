"""Render a JSON answer as Markdown while it is still being generated.

`JsonMarkdown` is fed the model's raw JSON in fragments and returns, for each, the Markdown
that fragment adds. Fields are rendered in the order they arrive, so what is rendered only
ever grows: the concatenation of the returned pieces is the Markdown of the whole answer,
and streaming those pieces as tokens shows the reader the answer as it forms.

A known field holding a string becomes a heading and a paragraph; one holding an array of
strings becomes a heading and a bullet list. Unknown fields and nested values are skipped.
An escape split across fragments (`\\u00`…`e9`, or a surrogate pair) is held back until it is
whole. Text that is not a JSON object (a server that ignored the schema) passes through as
it is, from where it stops being JSON.
"""

from __future__ import annotations

from collections.abc import Mapping

HEADINGS: Mapping[str, str] = {
    "summary": "Summary",
    "cause": "Probable root cause",
    "explanation": "Explanation",
    "next_steps": "Next steps",
}
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "", "f": "", "n": " ", "r": " ", "t": " "}
_WHITESPACE = " \t\r\n"


def _clean(char: str) -> str:
    """A character of a value as the Markdown shows it: line breaks and other controls would
    break the heading or bullet it belongs to."""
    if char in "\n\r\t":
        return " "
    return "" if ord(char) < 0x20 or char == "\x7f" else char


class JsonMarkdown:
    """Incremental JSON-to-Markdown renderer for the structured answer (see the module)."""

    def __init__(self, headings: Mapping[str, str] = HEADINGS):
        self.headings = headings
        self._out: list[str] = []
        self._emitted = False
        self._raw = False
        self._started = False
        self._done = False
        # Open containers: "{" or "["; and what each expects next.
        self._stack: list[str] = []
        self._expect: list[str] = []  # per container: key, colon, value, comma
        self._string: str | None = None  # role of the open string: key, text, item, skip
        self._key: list[str] = []
        self._field: str | None = None  # the known top-level field whose value is open
        self._escape: str | None = None
        self._high: int | None = None  # a high surrogate waiting for its low half
        self._scalar = False
        self._items = 0

    @property
    def complete(self) -> bool:
        """True once the top-level object has closed."""
        return self._done

    def feed(self, fragment: str) -> str:
        """Take the next fragment of raw JSON; the Markdown it adds."""
        self._out = []
        for index, char in enumerate(fragment):
            if self._raw:
                self._emit(fragment[index:])
                break
            self._char(char)
        return "".join(self._out)

    def _emit(self, text: str) -> None:
        if text:
            self._out.append(text)
            self._emitted = True

    def _block(self, text: str) -> None:
        """Start a new block (heading), separated from what came before."""
        self._emit(("\n\n" if self._emitted else "") + text)

    def _to_raw(self, char: str) -> None:
        self._raw = True
        self._emit(("\n\n" if self._emitted else "") + char)

    def _char(self, char: str) -> None:
        if self._string is not None:
            self._in_string(char)
            return
        if self._scalar:
            if char not in ",]}" + _WHITESPACE:
                return
            self._scalar = False
            self._value_done()
        if self._done or char in _WHITESPACE:
            return
        if not self._started:
            if char != "{":
                self._to_raw(char)
                return
            self._started = True
            self._open("{")
            return
        expect = self._expect[-1]
        if expect == "key":
            if char == '"':
                self._string, self._key = "key", []
            elif char == "}" and self._stack[-1] == "{":
                self._close()
            else:
                self._to_raw(char)
        elif expect == "colon":
            if char == ":":
                self._expect[-1] = "value"
            else:
                self._to_raw(char)
        elif expect == "value":
            self._value(char)
        elif char == ",":
            self._expect[-1] = "key" if self._stack[-1] == "{" else "value"
        elif char in "}]" and self._stack[-1] == {"}": "{", "]": "["}[char]:
            self._close()
        else:
            self._to_raw(char)

    def _value(self, char: str) -> None:
        depth = len(self._stack)
        field = self._field
        if char == '"':
            if depth == 1 and field is not None:
                self._block(f"## {self.headings[field]}\n")
                self._string = "text"
            elif depth == 2 and field is not None and self._stack[-1] == "[":
                self._emit(("\n" if self._items else "") + "- ")
                self._items += 1
                self._string = "item"
            else:
                self._string = "skip"
        elif char in "{[":
            if depth == 1 and field is not None and char == "[":
                self._block(f"## {self.headings[field]}")
                self._items = 0
                self._emit("\n")
            elif depth == 1:
                self._field = None
            self._open(char)
        elif char == "]" and self._stack[-1] == "[":  # an empty array
            self._close()
        else:
            self._scalar = True

    def _open(self, char: str) -> None:
        self._stack.append(char)
        self._expect.append("key" if char == "{" else "value")

    def _close(self) -> None:
        self._stack.pop()
        self._expect.pop()
        if not self._stack:
            self._done = True
            return
        self._value_done()

    def _value_done(self) -> None:
        self._expect[-1] = "comma"
        if len(self._stack) == 1:
            self._field = None

    def _in_string(self, char: str) -> None:
        if self._escape is not None:
            self._escape += char
            self._escaped()
            return
        if char == "\\":
            self._escape = "\\"
            return
        if self._high is not None:
            self._put("\ufffd")  # a high surrogate with no low half
            self._high = None
        if char == '"':
            self._end_string()
            return
        self._put(char)

    def _escaped(self) -> None:
        escape = self._escape or ""
        kind = escape[1]
        if kind != "u":
            self._escape = None
            if kind not in _SIMPLE_ESCAPES:
                self._put(escape)  # not an escape JSON knows: show it as written
                return
            self._flush_high()
            self._put(_SIMPLE_ESCAPES[kind] if self._string != "key" else kind)
            return
        if len(escape) < 6:
            return
        self._escape = None
        try:
            code = int(escape[2:], 16)
        except ValueError:
            self._flush_high()
            self._put(escape)
            return
        if 0xD800 <= code < 0xDC00:
            self._flush_high()
            self._high = code
        elif 0xDC00 <= code < 0xE000:
            if self._high is None:
                self._put("\ufffd")
            else:
                self._put(chr(0x10000 + ((self._high - 0xD800) << 10) + (code - 0xDC00)))
                self._high = None
        else:
            self._flush_high()
            self._put(chr(code))

    def _flush_high(self) -> None:
        if self._high is not None:
            self._put("\ufffd")
            self._high = None

    def _put(self, text: str) -> None:
        role = self._string
        if role == "key":
            self._key.append(text)
        elif role in ("text", "item"):
            self._emit("".join(_clean(char) for char in text))

    def _end_string(self) -> None:
        role, self._string = self._string, None
        if role == "key":
            key = "".join(self._key)
            self._field = key if len(self._stack) == 1 and key in self.headings else None
            self._expect[-1] = "colon"
            return
        self._value_done()


def render(text: str) -> str:
    """The Markdown of a JSON answer, complete or cut anywhere."""
    return JsonMarkdown().feed(text)
