"""Write a benchmark's generated block into docs/benchmarks.md.

Each benchmark owns the text between `<!-- begin generated: NAME -->` and
`<!-- end generated: NAME -->`; everything outside those markers is written by hand and left
as it is. A run with `--docs` replaces its block, so the figures in the docs are always the
output of the last run, never edited.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- begin generated: {name} -->", f"<!-- end generated: {name} -->"


def replace_generated(name: str, body: str, path: Path = BENCHMARKS_DOC) -> None:
    """Put `body` between the markers of `name`; fail if the document lacks them."""
    begin, end = markers(name)
    text = path.read_text()
    start, stop = text.find(begin), text.find(end)
    if start == -1 or stop < start:
        raise SystemExit(f"{path} has no '{begin}' … '{end}' block for this benchmark")
    path.write_text(text[: start + len(begin)] + "\n" + body.strip() + "\n" + text[stop:])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A Markdown table; `align` holds one `l` or `r` per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
