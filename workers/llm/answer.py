"""Checks on the model's text: a guard that stops a stream that repeats itself, and the
template ids it cites, valid or not."""

from __future__ import annotations

import re
from collections.abc import Iterable

from shared.schemas import Citations

MIN_UNIT_CHARS = 6  # shorter repeats ("...", "| | |") are formatting, not a loop
MAX_UNIT_CHARS = 300
REPEATS = 3  # a unit seen this many times in a row at the end is a loop
MIN_LINE_CHARS = 12
LINE_REPEATS = 3  # the same non-trivial line this many times is a loop too
_CITATION = re.compile(r"\bT(\d{1,4})\b")


def _words(text: str) -> int:
    """Letters and digits: a repeated unit of only punctuation is a table rule, not a loop."""
    return sum(char.isalnum() for char in text)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def repetition_start(text: str) -> int | None:
    """Where a degenerate repetition at the end of `text` starts (its second copy), or None.

    Two shapes count: a unit of MIN_UNIT_CHARS..MAX_UNIT_CHARS repeated REPEATS times in a
    row at the very end (whitespace folded), and a line of at least MIN_LINE_CHARS that has
    appeared LINE_REPEATS times. The text before the returned index keeps one copy.
    """
    guard = DegenerationGuard()
    guard.feed(text)
    return guard.cut


def _tail_repeat(text: str) -> int | None:
    """The start of the second copy of a unit repeated REPEATS times at the end, or None."""
    squashed = _squash(text)
    for size in range(MIN_UNIT_CHARS, min(MAX_UNIT_CHARS, len(squashed) // REPEATS) + 1):
        unit = squashed[-size:]
        if squashed[-size * REPEATS :] != unit * REPEATS or _words(unit) < 3:
            continue
        # Map the start of the second copy back into the unsquashed text.
        keep = squashed[: len(squashed) - size * (REPEATS - 1)]
        return _unsquashed_index(text, len(keep))
    return None


def _unsquashed_index(text: str, squashed_length: int) -> int:
    """The index in `text` where its squashed form reaches `squashed_length` characters."""
    count = 0
    previous_space = False
    for index, char in enumerate(text):
        space = char.isspace()
        if not (space and previous_space):
            count += 1
        previous_space = space
        if count > squashed_length:
            return index
    return len(text)


class DegenerationGuard:
    """Fed the answer as it streams; `degenerate` turns True once it loops.

    The work per fragment is bounded whatever the length of the answer so far: complete
    lines are counted once each, and the repeated-unit check reads a tail long enough to
    hold REPEATS units of MAX_UNIT_CHARS, whitespace runs included.
    """

    TAIL_CHARS = 8 * REPEATS * MAX_UNIT_CHARS

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._line_start = 0  # offset of the line still being written
        self._partial: list[str] = []  # the pieces of the line still being written
        self._lines: dict[str, list[int]] = {}
        self.degenerate = False
        self.cut: int | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed(self, fragment: str) -> bool:
        """Add a fragment; False when the stream should stop."""
        self._parts.append(fragment)
        self._length += len(fragment)
        start = self._complete_lines(fragment)
        if start is None and (fragment.strip() or fragment.endswith("\n")):
            tail = self._tail()
            found = _tail_repeat(tail)
            if found is not None:
                start = self._length - len(tail) + found
        if start is not None:
            self.degenerate, self.cut = True, start
            return False
        return True

    def _complete_lines(self, fragment: str) -> int | None:
        if "\n" not in fragment:
            self._partial.append(fragment)
            return None
        first, *rest, last = fragment.split("\n")
        done = ["".join([*self._partial, first]), *rest]
        self._partial = [last]
        for raw in done:
            line = raw.strip()
            offset, self._line_start = self._line_start, self._line_start + len(raw) + 1
            if len(line) >= MIN_LINE_CHARS and _words(line) >= 3:
                offsets = self._lines.setdefault(line, [])
                offsets.append(offset)
                if len(offsets) >= LINE_REPEATS:
                    return offsets[1]
        return None

    def _tail(self) -> str:
        tail: list[str] = []
        size = 0
        for part in reversed(self._parts):
            tail.append(part)
            size += len(part)
            if size >= self.TAIL_CHARS:
                break
        return "".join(reversed(tail))[-self.TAIL_CHARS :]

    def answer(self) -> str:
        """The text without its repeated tail."""
        text = self.text
        return text if self.cut is None else text[: self.cut].rstrip()


def check_citations(text: str, given: Iterable[str]) -> Citations:
    """The template ids cited in `text`, checked against the ids the model was given."""
    known = set(given)
    cited = sorted({f"T{n}" for n in _CITATION.findall(text)}, key=lambda t: int(t[1:]))
    return Citations(
        valid=[t for t in cited if t in known], invalid=[t for t in cited if t not in known]
    )
