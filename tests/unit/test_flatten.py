"""The flatten stage: level and message extraction, multi-line joining, caps, ordering."""

from __future__ import annotations

import json

import pytest

from shared.schemas import Entry, Level, RawLine
from workers.stages.flatten import (
    JOIN_WINDOW_NS,
    MAX_EVENT_CHARS,
    MAX_EVENT_LINES,
    MAX_FIELD_CHARS,
    flatten,
)

T0 = 1_795_514_400_000_000_000  # 2026-11-24T10:00:00Z
API = {"namespace": "shop", "pod": "api-1", "container": "api", "node": "node-1"}
CART = {"namespace": "shop", "pod": "cart-1", "container": "cart", "node": "node-2"}


def raw(line: str, t: float = 0.0, labels: dict[str, str] | None = None) -> RawLine:
    return RawLine(T0 + int(t * 1e9), API if labels is None else labels, line)


def burst(lines: list[str], t: float = 0.0, labels: dict[str, str] | None = None) -> list[RawLine]:
    """Lines written together: 1 ms apart."""
    return [raw(line, t + i * 0.001, labels) for i, line in enumerate(lines)]


def only(lines: list[RawLine]) -> Entry:
    entries = flatten(lines)
    assert len(entries) == 1, [e.message for e in entries]
    return entries[0]


# --- level and message of single lines ---------------------------------------------------


@pytest.mark.parametrize(
    ("line", "level", "message"),
    [
        (
            '{"level":"error","msg":"query failed","error":"dial tcp: connection refused"}',
            Level.ERROR,
            "query failed error=dial tcp: connection refused",
        ),
        ('{"lvl":"warn","message":"slow upstream"}', Level.WARN, "slow upstream"),
        ('{"severity":"CRITICAL","message":"disk"}', Level.FATAL, "disk"),
        ('{"levelname":"WARNING","message":"deprecated"}', Level.WARN, "deprecated"),
        ('{"log.level":"info","message":"flat ecs"}', Level.INFO, "flat ecs"),
        ('{"log":{"level":"warn"},"message":"nested ecs"}', Level.WARN, "nested ecs"),
        ('{"level":50,"msg":"pino error"}', Level.ERROR, "pino error"),
        ('{"level":30,"msg":"pino info"}', Level.INFO, "pino info"),
        ('{"level":"info","event":"structlog event"}', Level.INFO, "structlog event"),
        # The error is already in the message: not appended twice.
        (
            '{"level":"error","msg":"connect: connection refused","err":"connection refused"}',
            Level.ERROR,
            "connect: connection refused",
        ),
        # A Python traceback in a field is summarised by its last line.
        (
            '{"levelname":"ERROR","message":"job crashed","exc_info":"Traceback (most recent '
            'call last):\\n  File \\"a.py\\", line 1, in <module>\\nValueError: bad input"}',
            Level.ERROR,
            "job crashed error=ValueError: bad input",
        ),
        # No level field: an error field makes it an error.
        (
            '{"msg":"charge declined","error":"card expired"}',
            Level.ERROR,
            "charge declined error=card expired",
        ),
        # No level field and no error field: the plain rules read the message.
        ('{"msg":"WARN cache nearly full"}', Level.WARN, "WARN cache nearly full"),
        # ECS error object: its message is the message of last resort.
        ('{"error":{"type":"IOError","message":"disk full"}}', Level.ERROR, "disk full"),
        # Kubernetes events call every abnormal event `Warning`: their words decide.
        (
            '{"reason":"Unhealthy","message":"Readiness probe failed: HTTP probe failed with '
            'statuscode: 503","type":"Warning"}',
            Level.ERROR,
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
        ),
        (
            '{"reason":"BackOff","message":"Back-off pulling image","type":"Warning"}',
            Level.UNKNOWN,
            "Back-off pulling image",
        ),
        (
            '{"reason":"Pulled","message":"Container image pulled","type":"Normal"}',
            Level.INFO,
            "Container image pulled",
        ),
        # No message key: the whole line.
        ('{"ts":1,"foo":"bar"}', Level.UNKNOWN, "foo=bar"),
        # Looks like JSON but is not: a plain line.
        ("{not json} ERROR here", Level.ERROR, "{not json} ERROR here"),
        ('{"level":"info","msg":"x"} trailing', Level.UNKNOWN, None),
        # logfmt
        (
            'ts=2026-11-24T10:00:00Z level=error msg="db \\"down\\"" err="connection refused"',
            Level.ERROR,
            'db "down" error=connection refused',
        ),
        ("level=warn msg=retrying attempt=3", Level.WARN, "retrying attempt=3"),
        ('time=1 lvl=info msg="two\\nlines \\u00e9 \\\\ \\t."', Level.INFO, "two\nlines é \\ \t."),
        ('level=info msg="all good" errors=0', Level.INFO, "all good errors=0"),
        (
            'logger=context t=2026-11-24T10:00:00Z level=info msg="Request Completed" status=200',
            Level.INFO,
            "Request Completed",
        ),
        ("a=1 b=2 c=3", Level.UNKNOWN, "a=1 b=2 c=3"),
        # One pair among words is not logfmt.
        (
            "key=value but mostly plain words here",
            Level.UNKNOWN,
            "key=value but mostly plain words here",
        ),
        # plain
        ("2026-11-24 10:00:00 ERROR something broke", Level.ERROR, None),
        ("2026-11-24 10:00:00 [WARN] retrying", Level.WARN, None),
        ("WARNING: flag --foo is deprecated", Level.WARN, None),
        ("CRITICAL disk is full", Level.FATAL, None),
        ("SEVERE: servlet threw", Level.ERROR, None),
        ("FATAL: out of memory", Level.FATAL, None),
        ("2026-11-24T10:00:00Z level=warn something happened", Level.WARN, None),
        ("E1124 10:00:00.123456       1 controller.go:12] sync failed", Level.ERROR, None),
        ("W1124 10:00:00.123456       1 reflector.go:5] watch closed", Level.WARN, None),
        ("I1124 10:00:00.123456       1 leader.go:9] error budget ok", Level.INFO, None),
        ("2026/11/24 10:00:00 [error] 29#29: *1 connect() failed (111)", Level.ERROR, None),
        ("2026/11/24 10:00:00 [emerg] 1#1: bind() to 0.0.0.0:80 failed", Level.FATAL, None),
        ("2026/11/24 10:00:00 [crit] 1#1: SSL_do_handshake() failed", Level.FATAL, None),
        ("2026/11/24 10:00:00 [alert] 1#1: worker process exited", Level.FATAL, None),
        ("[2026/11/24 10:00:00] [ warn] [engine] failed to flush chunk", Level.WARN, None),
        ("2026-11-24 10:00:00.000 UTC [1] LOG:  checkpoint starting: time", Level.INFO, None),
        ('2026-11-24 10:00:00.000 UTC [7] ERROR:  relation "x" does not exist', Level.ERROR, None),
        (
            "2026-11-24 10:00:00.000 UTC [9] FATAL:  the database system is in recovery mode",
            Level.FATAL,
            None,
        ),
        (
            '2026-11-24 10:00:00.000 UTC [9] PANIC:  could not write to file "pg_wal/x"',
            Level.FATAL,
            None,
        ),
        ("panic: runtime error: index out of range [5] with length 3", Level.FATAL, None),
        ("fatal error: concurrent map writes", Level.FATAL, None),
        ("Traceback (most recent call last):", Level.ERROR, None),
        ('Exception in thread "main" java.lang.RuntimeException: x', Level.ERROR, None),
        ("java.lang.IllegalStateException: boom", Level.ERROR, None),
        ("ValueError: bad input", Level.ERROR, None),
        ("Error: failed to start container", Level.ERROR, None),
        ("upstream connection failed", Level.ERROR, None),
        ("warning: disk 91% full", Level.WARN, None),
        ('INFO:     10.0.0.1:5000 - "GET /healthz HTTP/1.1" 200 OK', Level.INFO, None),
        # Word boundaries: these are not error lines.
        ("cache stats hits=10 errors=0", Level.UNKNOWN, None),
        ("request done error=nil", Level.UNKNOWN, None),
        ("ERROR_COUNT=0 all good", Level.UNKNOWN, None),
        ("OutOfMemoryErrors handled by the supervisor", Level.UNKNOWN, None),
        # The leftmost strong marker wins over later words.
        ("INFO retried after failure", Level.INFO, None),
        ("served GET / in 3ms", Level.UNKNOWN, None),
    ],
)
def test_level_and_message(line: str, level: Level, message: str | None) -> None:
    entry = only([raw(line)])
    assert entry.level == level
    assert entry.message == (line if message is None else message)


@pytest.mark.parametrize(
    ("line", "detected", "level"),
    [
        ("hello world", "warn", Level.WARN),
        ("hello world", "unknown", Level.UNKNOWN),
        # Strong markers in the line beat the label; the label beats weak words.
        ("ERROR something", "info", Level.ERROR),
        ("upstream failed", "info", Level.INFO),
        ("upstream failed", "", Level.ERROR),
        ('{"msg":"structured, no level"}', "error", Level.ERROR),
    ],
)
def test_detected_level_label_is_the_fallback(line: str, detected: str, level: Level) -> None:
    labels = {**API, "detected_level": detected, "service_name": "api", "stream": "stdout"}
    assert only([raw(line, labels=labels)]).level == level


def test_labels_fill_the_entry_and_missing_ones_are_empty() -> None:
    full = only([raw("x")])
    assert (full.namespace, full.pod, full.container, full.node) == (
        "shop",
        "api-1",
        "api",
        "node-1",
    )
    assert full.ts_ns == T0
    bare = only([raw("x", labels={"pod": "p"})])
    assert (bare.namespace, bare.pod, bare.container, bare.node) == ("", "p", "", "")


def test_error_fields_are_kept_as_truncated_strings() -> None:
    stack = "main.handler\n\t/app/main.go:12\n" * 200
    line = (
        '{"level":"error","msg":"boom","caller":"main.go:12","attempt":3,'
        f'"stacktrace":{json.dumps(stack)},"error":{{"code":7,"reason":"x"}}}}'
    )
    entry = only([raw(line)])
    assert entry.fields["caller"] == "main.go:12"
    assert entry.fields["stacktrace"] == stack[:MAX_FIELD_CHARS]
    assert entry.fields["error.code"] == "7"
    assert entry.fields["error.reason"] == "x"
    assert "attempt" not in entry.fields  # only error fields are kept


def test_logfmt_error_fields_are_kept() -> None:
    entry = only([raw('level=error msg="sync failed" err="timeout" caller=sync.go:9 pod=x')])
    assert entry.fields == {"err": "timeout", "caller": "sync.go:9"}


def test_blank_lines_are_dropped_and_line_endings_stripped() -> None:
    entries = flatten([raw("first\r\n"), raw("", 0.1), raw("   ", 0.2), raw("second\n", 5.0)])
    assert [e.message for e in entries] == ["first", "second"]


# --- multi-line events -------------------------------------------------------------------

JAVA = [
    "2026-11-24T10:00:00.000Z ERROR 1 --- [exec-1] c.e.Cart : request failed",
    "",
    "java.lang.IllegalStateException: cart is locked",
    "\tat com.example.Cart.update(Cart.java:42)",
    "\tat com.example.CartController.put(CartController.java:17)",
    "Caused by: java.sql.SQLException: lock timeout",
    "\tat org.postgresql.Driver.connect(Driver.java:12)",
    "\t... 12 more",
    "Caused by: java.net.ConnectException: Connection refused",
    "... 3 more",
]


def test_java_stack_trace_is_one_entry() -> None:
    entry = only(burst(JAVA))
    assert entry.level == Level.ERROR
    assert entry.message.split("\n") == [line for line in JAVA if line]
    assert entry.fields["exception"] == "java.lang.IllegalStateException: cart is locked"
    assert entry.fields["cause"] == "java.net.ConnectException: Connection refused"


def test_java_uncaught_exception_is_one_entry() -> None:
    lines = [
        'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
        "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)",
        "\tat com.example.Queue.add(Queue.java:58)",
    ]
    entry = only(burst(lines))
    assert entry.level == Level.FATAL  # inferred from the head, raised by `OutOfMemoryError`
    assert entry.message == "\n".join(lines)
    assert entry.fields["exception"] == "java.lang.OutOfMemoryError: Java heap space"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("java.lang.OutOfMemoryError: Java heap space", Level.FATAL),
        ("worker 3 failed: out of memory", Level.FATAL),
        ("INFO [main] JVM flags: -XX:+HeapDumpOnOutOfMemoryError", Level.INFO),
        ("WARN pool at 90%, fatal soon", Level.WARN),
        ("request failed, flags -XX:+HeapDumpOnOutOfMemoryError", Level.ERROR),
    ],
)
def test_words_of_death_raise_only_an_inferred_level(line: str, level: Level) -> None:
    assert only([raw(line)]).level == level


def test_bare_java_exception_line_does_not_join_an_info_line() -> None:
    lines = ["INFO started", "java.lang.IllegalStateException: boom", "\tat a.B.c(B.java:1)"]
    entries = flatten(burst(lines))
    assert [e.message for e in entries] == [lines[0], "\n".join(lines[1:])]
    assert [e.level for e in entries] == [Level.INFO, Level.ERROR]


PYTHON = [
    "Traceback (most recent call last):",
    '  File "/app/main.py", line 10, in <module>',
    "    main()",
    '  File "/app/main.py", line 6, in main',
    '    raise ValueError("bad input")',
    "ValueError: bad input",
]


def test_python_traceback_is_one_entry_headed_by_its_exception() -> None:
    entry = only(burst(PYTHON))
    assert entry.level == Level.ERROR
    # The exception line comes first (stable template), then the traceback, without it.
    assert entry.message.split("\n") == ["ValueError: bad input", *PYTHON[:-1]]
    assert entry.fields["exception"] == "ValueError: bad input"


def test_python_tracebacks_with_other_frames_share_their_first_line() -> None:
    other = [PYTHON[0], '  File "/app/other.py", line 3, in run', "    go()", PYTHON[-1]]
    first, second = flatten(burst(PYTHON) + burst(other, t=10.0))
    assert first.message.split("\n")[0] == second.message.split("\n")[0]
    assert first.message != second.message


def test_chained_python_traceback_is_one_entry_headed_by_the_raised_exception() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "/app/db.py", line 41, in connect',
        "    return connect(DSN)",
        "psycopg.OperationalError: connection refused",
        "\tIs the server running on that host?",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        '  File "/app/orders.py", line 88, in create',
        "    conn = db.connect()",
        "checkout.db.DatabaseUnavailable: postgres is unreachable",
    ]
    entry = only(burst(lines))
    assert entry.message.split("\n") == [lines[-1], *lines[:-1]]
    assert entry.fields["exception"] == lines[-1]


def test_python_traceback_after_an_error_line_keeps_that_line_as_head() -> None:
    head = "2026-11-24 10:00:00,123 ERROR [orders] order creation failed"
    entry = only(burst([head, *PYTHON]))
    assert entry.message.split("\n") == [head, *PYTHON]
    assert entry.level == Level.ERROR
    assert entry.fields["exception"] == "ValueError: bad input"


def test_python_traceback_after_an_info_line_is_its_own_entry() -> None:
    entries = flatten(burst(["INFO: request served", *PYTHON]))
    assert len(entries) == 2
    assert entries[1].message.startswith("ValueError: bad input\nTraceback")


def test_log_line_after_a_traceback_is_a_new_entry() -> None:
    lines = [*PYTHON[:-1], "INFO: shutting down", PYTHON[-1]]
    entries = flatten(burst(lines))
    assert [e.message.split("\n")[0] for e in entries] == [
        "Traceback (most recent call last):",  # no exception line seen: kept as printed
        "INFO: shutting down",
        "ValueError: bad input",
    ]


def test_second_traceback_is_a_second_entry() -> None:
    entries = flatten(burst(PYTHON + PYTHON))
    assert len(entries) == 2


def test_go_panic_is_one_entry() -> None:
    lines = [
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a5b6c]",
        "",
        "goroutine 1 [running]:",
        "main.(*Server).handle(0xc000010000, {0x1, 0x2})",
        "\t/app/server.go:42 +0x1d",
        "main.main()",
        "\t/app/main.go:12 +0x25",
        "exit status 2",
    ]
    entry = only(burst(lines))
    assert entry.level == Level.FATAL
    assert entry.message == "\n".join(lines)


def test_goroutine_dump_after_an_error_line_joins_it() -> None:
    lines = ["ERROR worker stuck", "goroutine 7 [chan receive]:", "main.worker()"]
    entry = only(burst(lines))
    assert entry.message == "\n".join(lines)


def test_postgres_detail_and_hint_join_their_event() -> None:
    lines = [
        '2026-11-24 10:20:03.200 UTC [2231] ERROR:  could not extend file "base/1/2": No space '
        "left on device",
        "2026-11-24 10:20:03.200 UTC [2231] HINT:  Check free disk space.",
        "2026-11-24 10:20:03.200 UTC [2231] STATEMENT:  INSERT INTO t VALUES ($1)",
    ]
    entry = only(burst(lines))
    assert entry.level == Level.ERROR
    assert entry.message == "\n".join(lines)


def test_indented_lines_join_any_event() -> None:
    lines = ["config loaded:", "  port: 8080", "\tworkers: 4"]
    assert only(burst(lines)).message == "\n".join(lines)


def test_structured_lines_never_join() -> None:
    lines = ["ERROR failed", '{"level":"info","msg":"next"}', "level=info msg=after"]
    assert len(flatten(burst(lines))) == 3


def test_interleaved_streams_do_not_mix() -> None:
    java = burst(JAVA, labels=CART)
    noise = [raw('{"level":"info","msg":"served"}', 0.0005 + i * 0.001) for i in range(len(JAVA))]
    noise.append(raw("  indented line from api", 0.0095))
    merged = sorted(java + noise, key=lambda line: line.ts_ns)
    entries = flatten(merged)
    cart = [e for e in entries if e.pod == "cart-1"]
    api = [e for e in entries if e.pod == "api-1"]
    assert len(cart) == 1
    assert cart[0].message.split("\n") == [line for line in JAVA if line]
    # The indented api line joins the api event before it, not the cart trace.
    assert len(api) == len(JAVA)
    assert api[-1].message == "served\n  indented line from api"


def test_same_pod_other_container_is_another_stream() -> None:
    sidecar = {**API, "container": "envoy"}
    entries = flatten([raw("ERROR failed"), raw("\tat x.y(Z.java:1)", 0.001, sidecar)])
    assert len(entries) == 2


@pytest.mark.parametrize(
    ("offsets", "entries"),
    [
        ((0.0, 0.5, 0.9), 1),
        ((0.0, 1.5), 2),
        # The window counts from the event's first line, not from the previous line.
        ((0.0, 0.6, 1.2), 2),
    ],
)
def test_continuations_join_only_within_the_time_window(
    offsets: tuple[float, ...], entries: int
) -> None:
    assert JOIN_WINDOW_NS == 1_000_000_000
    lines = [raw("ERROR failed", offsets[0])] + [
        raw("\tat a.B.c(B.java:1)", t) for t in offsets[1:]
    ]
    assert len(flatten(lines)) == entries


def test_line_cap() -> None:
    frames = [f"\tat a.B.m{i}(B.java:{i})" for i in range(MAX_EVENT_LINES + 50)]
    entry = only(burst(["ERROR failed", *frames]))
    lines = entry.message.split("\n")
    assert len(lines) == MAX_EVENT_LINES + 1
    assert lines[:MAX_EVENT_LINES] == ["ERROR failed", *frames[: MAX_EVENT_LINES - 1]]
    assert lines[-1] == "[... 51 more lines truncated]"


def test_size_cap() -> None:
    frames = ["\t" + "x" * 5000 for _ in range(10)]
    entry = only(burst(["ERROR failed", *frames]))
    assert len(entry.message) <= MAX_EVENT_CHARS + 40
    assert entry.message.endswith("more lines truncated]")
    assert entry.message.count("\n") < 5


def test_long_single_line_is_capped() -> None:
    entry = only([raw("ERROR " + "y" * (MAX_EVENT_CHARS * 2))])
    assert len(entry.message) == MAX_EVENT_CHARS


def test_python_exception_line_past_the_cap_still_heads_the_event() -> None:
    body = [f'  File "/app/r.py", line {i}, in f' for i in range(MAX_EVENT_LINES + 10)]
    entry = only(burst([PYTHON[0], *body, "RecursionError: maximum recursion depth exceeded"]))
    assert entry.message.split("\n")[0] == "RecursionError: maximum recursion depth exceeded"
    assert entry.message.endswith("more lines truncated]")


# --- ordering ------------------------------------------------------------------------------


def test_output_is_ordered_by_timestamp() -> None:
    lines = [
        raw("ERROR a", 0.0, CART),
        raw("b", 0.2),
        raw("\tat x.y(Z.java:1)", 0.3, CART),
        raw("c", 0.1, {**API, "pod": "api-2"}),
        raw("d", 0.2, {**API, "pod": "api-3"}),
    ]
    entries = flatten(lines)
    assert [e.message for e in entries] == ["ERROR a\n\tat x.y(Z.java:1)", "c", "b", "d"]


def test_empty_input() -> None:
    assert flatten([]) == []


# --- Structured lines keep what names the problem --------------------------------------------


def test_a_logfmt_line_keeps_the_config_key_it_is_about() -> None:
    line = (
        'level=fatal msg="missing required config" key=DATABASE_URL hint="set it in the deployment"'
    )
    entry = only([raw(line)])
    assert entry.level is Level.FATAL
    assert (
        entry.message == 'missing required config key=DATABASE_URL hint="set it in the deployment"'
    )
    assert entry.raw == line


def test_ids_and_times_are_left_out_and_status_codes_kept_unmasked() -> None:
    line = (
        '{"ts":"2026-11-24T10:00:00Z","level":"error","msg":"upstream failed",'
        '"trace_id":"4bf92f3577b34da6","upstream":"payments","status":503,"attempt":2}'
    )
    entry = only([raw(line)])
    assert entry.message == "upstream failed upstream=payments attempt=2"
    assert entry.keep == "status=503"
    assert entry.raw == line


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('psycopg2.errors.DiskFull: could not extend file "base/16384/2619"', Level.ERROR),
        ("requests.exceptions.ConnectionError: HTTPSConnectionPool(host='x')", Level.ERROR),
        ("sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) timeout", Level.ERROR),
        ("thread 'main' panicked at src/main.rs:10:5:", Level.FATAL),
        ("thread 'tokio-runtime-worker' panicked at 'called `Result::unwrap()`'", Level.FATAL),
        ("com.example.Config: loaded 12 keys", Level.UNKNOWN),
    ],
)
def test_exception_and_panic_lines_without_a_level_word(line: str, level: Level) -> None:
    assert only([raw(line)]).level is level
