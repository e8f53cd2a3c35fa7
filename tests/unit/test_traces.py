"""The innermost cause of a joined event, from the general shapes of trace formats."""

from __future__ import annotations

import pytest

from workers.evidence.traces import innermost_cause

CASES = [
    ("one line: java.lang.IllegalStateException: boom", None),
    (  # Java: the last unindented `Caused by:`; a suppressed exception's cause is indented
        "ERROR request failed\njava.lang.RuntimeException: wrap\n\tat a.B.c(B.java:1)\n"
        "Caused by: java.io.IOException: disk full\n\tat a.D.e(D.java:2)\n"
        "\tSuppressed: java.lang.Exception: close\n\t\tCaused by: java.lang.Error: inner\n"
        "\t... 3 more",
        "java.io.IOException: disk full",
    ),
    (  # Java without a cause: the exception the log line carries
        "ERROR request failed\norg.example.StoreException: no space\n\tat a.B.c(B.java:1)",
        "org.example.StoreException: no space",
    ),
    (  # Python, chained: the exception raised last
        'ERROR task failed\nTraceback (most recent call last):\n  File "a.py", line 1\n'
        "KeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n"
        '\nTraceback (most recent call last):\n  File "a.py", line 3\nValueError: bad k',
        "ValueError: bad k",
    ),
    (  # Python already headed by its exception (flatten re-heads a bare traceback)
        'ValueError: bad\nTraceback (most recent call last):\n  File "a.py", line 1\n'
        "[... 3 more lines truncated]",
        None,
    ),
    (  # Go: the panic and its first frame that is not the runtime's
        "panic: boom [recovered]\n\tpanic: boom\n\ngoroutine 7 [running]:\n"
        "panic({0x5a, 0xc0})\n\t/go/src/runtime/panic.go:884 +0x213\n"
        "main.(*Queue).Pop(0xc000010000)\n\t/app/q.go:12 +0x1c",
        "panic: boom [recovered] at main.(*Queue).Pop",
    ),
    ("fatal error: concurrent map writes\n\ngoroutine 1 [running]:", None),
    (  # Node: the last `[cause]:` of the chain
        "Error: fetch failed\n    at f (/app/a.js:1:2) {\n  [cause]: Error: connect "
        "ECONNREFUSED 10.0.0.1:5432\n      at g (node:net:1:2)\n}",
        "Error: connect ECONNREFUSED 10.0.0.1:5432",
    ),
    (  # Node: a log line, then the error
        "error: checkout failed\nTypeError: x is undefined\n    at f (/app/a.js:1:2)",
        "TypeError: x is undefined",
    ),
    ("ERROR: deadlock detected\n DETAIL:  Process 1 waits for ShareLock", None),
]


@pytest.mark.parametrize(("text", "cause"), CASES)
def test_innermost_cause(text: str, cause: str | None) -> None:
    assert innermost_cause(text) == cause
