"""The partial-JSON-to-Markdown renderer: what has formed so far, and only ever more of it."""

from __future__ import annotations

import json

import pytest

from workers.llm.partial_json import JsonMarkdown, render

ANSWER = {
    "summary": 'Disk "full" on db-0 — café 😀',
    "cause": "T3",
    "explanation": "T3 (x12): postgres could not write\nWAL\\segments.",
    "next_steps": ["Free disk.", "Check the WAL archiver: /var/lib/pg"],
}
MARKDOWN = (
    '## Summary\nDisk "full" on db-0 — café 😀\n\n'
    "## Probable root cause\nT3\n\n"
    "## Explanation\nT3 (x12): postgres could not write WAL\\segments.\n\n"
    "## Next steps\n- Free disk.\n- Check the WAL archiver: /var/lib/pg"
)


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(ANSWER),  # \u escapes for every non-ASCII character, surrogate pairs
        json.dumps(ANSWER, ensure_ascii=False),
        json.dumps(ANSWER, indent=2, ensure_ascii=False),  # whitespace as a grammar allows it
    ],
)
def test_a_complete_answer_renders_as_markdown(raw: str) -> None:
    renderer = JsonMarkdown()
    assert renderer.feed(raw) == MARKDOWN
    assert renderer.complete


def test_every_split_renders_the_same_text_and_never_takes_anything_back() -> None:
    raw = json.dumps(ANSWER)  # ASCII with \uXXXX escapes: splits land inside them too
    for cut in range(len(raw) + 1):
        renderer = JsonMarkdown()
        before = renderer.feed(raw[:cut])
        assert before == render(raw[:cut])
        assert MARKDOWN.startswith(before), (cut, before)
        assert before + renderer.feed(raw[cut:]) == MARKDOWN


def test_one_character_at_a_time_gives_the_same_markdown() -> None:
    raw = json.dumps(ANSWER, indent=1)
    renderer = JsonMarkdown()
    assert "".join(renderer.feed(char) for char in raw) == MARKDOWN


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("", ""),
        ("{", ""),
        ('{"summ', ""),
        ('{"summary"', ""),
        ('{"summary": "Disk fu', "## Summary\nDisk fu"),
        ('{"summary": "a \\"quoted', '## Summary\na "quoted'),
        ('{"summary": "caf\\u00', "## Summary\ncaf"),  # the escape waits until it is whole
        ('{"summary": "caf\\u00e9', "## Summary\ncafé"),
        ('{"summary": "x \\ud83d', "## Summary\nx "),  # a high surrogate waits for its pair
        ('{"summary": "x \\ud83d\\ude00', "## Summary\nx 😀"),
        ('{"summary": "line\\nbreak', "## Summary\nline break"),  # a break would end the block
        (
            '{"summary": "a", "next_steps": ["one", "tw',
            "## Summary\na\n\n## Next steps\n- one\n- tw",
        ),
        ('{"summary": "a", "next_steps": [', "## Summary\na\n\n## Next steps\n"),
    ],
)
def test_an_incomplete_answer_shows_what_has_formed(raw: str, shown: str) -> None:
    renderer = JsonMarkdown()
    assert renderer.feed(raw) == shown
    assert not renderer.complete


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    assert render('{"summary": "a\\ud83d b"}') == "## Summary\na\ufffd b"
    assert render('{"summary": "a\\ude00"}') == "## Summary\na\ufffd"


def test_unknown_fields_and_nested_values_are_skipped() -> None:
    raw = json.dumps(
        {
            "confidence": "high",
            "summary": "s",
            "extra": {"summary": "nested, not shown", "list": [1, "x", {"a": None}]},
            "score": 0.5,
            "cause": "none",
            "flags": [True, False],
        }
    )
    assert render(raw) == "## Summary\ns\n\n## Probable root cause\nnone"


def test_text_that_is_not_json_passes_through() -> None:
    """A server that ignored the schema answered prose: the reader still sees it."""
    assert render("## Summary\nThe disk is full.") == "## Summary\nThe disk is full."
    renderer = JsonMarkdown()
    assert renderer.feed('{"summary": "ok"} ') == "## Summary\nok"
    assert renderer.complete
    assert renderer.feed("trailing words") == ""


def test_json_that_breaks_off_into_prose_keeps_the_prose() -> None:
    assert render('{"summary": "ok", oops') == "## Summary\nok\n\noops"
