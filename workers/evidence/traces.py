"""The innermost cause of a joined multi-line event: the line it is ranked and named by.

Only the general shapes of the languages' trace formats, in this order:

- Java and Kotlin: the last unindented `Caused by: X` (the root of the chain); Node: the
  last `[cause]: X` of an error's cause chain;
- Python: the last exception line after the last `Traceback (most recent call last):` (the
  exception actually raised);
- Go: the `panic:` (or `fatal error:`) line with the function of its first frame, runtime
  frames skipped (a nil dereference is named by where it happened);
- an exception line right after a log line (`java.io.IOException: ...`, `TypeError: ...`).

The event's head keeps its level and the whole event stays in the evidence's examples.
"""

from __future__ import annotations

import re
from typing import Final

_TRACEBACK: Final = "Traceback (most recent call last)"
_CAUSES: Final = ("Caused by: ", "[cause]: ")
_PANICS: Final = ("panic: ", "fatal error: ")
_PY_MARKERS: Final = (
    "During handling of the above exception",
    "The above exception was the direct cause",
    "[... ",
)
_RUNTIME_FRAMES: Final = ("panic(", "runtime.", "runtime/")
# An exception line: a (qualified) class named *Error/*Exception/*Throwable, a class of an
# `errors`/`exceptions` module, or Node's `Error:` / `Error [ERR_CODE]:`.
_EXCEPTION_RE: Final = re.compile(
    r"(?:[A-Za-z_$][\w$]*\.)*[A-Z][\w$]*(?:Error|Exception|Throwable)(?: \[\w+\])?(?::|$)"
    r"|(?:[a-z_]\w*\.)*(?:errors|exceptions|exc)\.[A-Z]\w*:"
    r"|Error(?: \[\w+\])?: "
)


def innermost_cause(text: str) -> str | None:
    """The line naming the innermost cause of a joined event; None when the event is one
    line or its head already names it."""
    if "\n" not in text:
        return None
    lines = text.split("\n")
    found = _last_cause(lines) or _python_exception(lines) or _go_panic(lines)
    if found is None and len(lines) > 1 and _EXCEPTION_RE.match(lines[1]):
        found = lines[1]
    found = None if found is None else found.strip()
    return found if found and found != lines[0].strip() else None


def _last_cause(lines: list[str]) -> str | None:
    """Java's last unindented `Caused by:`, else Node's last `[cause]:`."""
    for line in reversed(lines):
        if line.startswith(_CAUSES[0]):
            return line[len(_CAUSES[0]) :]
    for line in reversed(lines):
        stripped = line.lstrip()
        if stripped.startswith(_CAUSES[1]):
            return stripped[len(_CAUSES[1]) :]
    return None


def _python_exception(lines: list[str]) -> str | None:
    """The exception line that ends the last traceback of the event."""
    start = -1
    for n, line in enumerate(lines):
        if line.startswith(_TRACEBACK):
            start = n
    if start < 0:
        return None
    for line in reversed(lines[start + 1 :]):
        if line and not line[0].isspace() and not line.startswith(_PY_MARKERS):
            return line
    return None


def _go_panic(lines: list[str]) -> str | None:
    """`panic: X at pkg.func`: the first panic line and the function of its first frame."""
    panic = next((line for line in lines if line.startswith(_PANICS)), None)
    if panic is None:
        return None
    dump = next((n for n, line in enumerate(lines) if line.startswith("goroutine ")), None)
    if dump is None:
        return panic
    for line in lines[dump + 1 :]:
        if not line or line[0].isspace() or line.startswith(_RUNTIME_FRAMES):
            continue
        name = _function(line)
        if name is None:
            break
        return f"{panic} at {name}"
    return panic


def _function(frame: str) -> str | None:
    """`main.(*Server).handle` of `main.(*Server).handle(0xc000010000, {0x1, 0x2})`."""
    if not frame.endswith(")"):
        return None
    depth = 0
    for at in range(len(frame) - 1, -1, -1):
        if frame[at] == ")":
            depth += 1
        elif frame[at] == "(":
            depth -= 1
            if depth == 0:
                name = frame[:at]
                return name if name and " " not in name else None
    return None
