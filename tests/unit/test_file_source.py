"""workers.sources.files on a temporary kubelet tree."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from shared.errors import InvalidQueryError
from shared.logql import LogFilter, parse_log_filter
from shared.schemas import FetchResult, Filters
from shared.settings import DEFAULT_SCAN_LIMIT
from workers.sources import ReadPlan, Window, read_all
from workers.sources.files import FileSource, parse_rfc3339_ns
from workers.stages.flatten import flatten, may_be_multiline

T0 = parse_rfc3339_ns("2026-11-24T10:00:00Z")
SECOND = 10**9
EVERYTHING = LogFilter()


def ts(offset_s: float) -> str:
    """CRI timestamp `offset_s` seconds after T0 (nanosecond precision)."""
    ns = T0 + round(offset_s * SECOND)
    seconds, frac = divmod(ns - T0, SECOND)
    return f"2026-11-24T10:{seconds // 60:02d}:{seconds % 60:02d}.{frac:09d}Z"


def cri(offset_s: float, stream: str, tag: str, message: str) -> str:
    return f"{ts(offset_s)} {stream} {tag} {message}\n"


def write(path: Path, text: str, *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    api = tmp_path / "shop_api-7d9f-abc_0f1e2d3c" / "api"
    write(api / "0.log.20261124-100010.gz", cri(1, "stdout", "F", "boot"), gz=True)
    write(
        api / "0.log.20261124-100020",
        cri(2, "stdout", "F", "rotated one")
        + cri(3, "stderr", "P", "partial ")
        + cri(3.5, "stdout", "F", "interleaved stdout")
        + cri(4, "stderr", "P", "stack ")
        + "garbage line without cri format\n",
    )
    write(
        api / "0.log",
        cri(5, "stderr", "F", "trace ends")
        + cri(6, "stdout", "F", "ERROR connection refused redis:6379")
        + cri(7, "stdout", "F", "")
        + cri(8, "stderr", "P", "never finished"),
    )
    write(api / "1.log", cri(9, "stdout", "F", "after restart"))
    write(api / "notes.txt", "not a log\n")
    sidecar = tmp_path / "shop_api-7d9f-abc_0f1e2d3c" / "istio-proxy"
    write(sidecar / "0.log", cri(6.5, "stdout", "F", "upstream reset"))
    web = tmp_path / "shop_web-1_aa11" / "web"
    write(web / "0.log", cri(2.5, "stdout", "F", "web up") + cri(10, "stdout", "F", "ERROR web"))
    other = tmp_path / "other_api-1_bb22" / "api"
    write(other / "0.log", cri(1, "stdout", "F", "other namespace"))
    write(
        tmp_path / "app.log",
        "2026-11-24T10:00:03.5Z ERROR plain app\n  at frame one\n2026-11-24 10:00:04,250 INFO ok\n",
    )
    write(tmp_path / "shop" / "batch.log", "no timestamps here\nERROR second line\n")
    os.utime(tmp_path / "shop" / "batch.log", ns=(T0 + 7 * SECOND, T0 + 7 * SECOND))
    return tmp_path


def read(
    root: Path,
    filters: Filters,
    log_filter: LogFilter = EVERYTHING,
    *,
    start_ns: int = T0,
    end_ns: int = T0 + 60 * SECOND,
    scan_limit: int = 1000,
    node_name: str | None = None,
) -> FetchResult:
    lines, done = read_all(
        FileSource(root, node_name),
        ReadPlan(Window(filters, log_filter, start_ns, end_ns), scan_limit),
    )
    return FetchResult(
        lines=lines,
        query=done.query,
        seen=done.seen,
        kept=done.kept,
        dropped=done.seen - done.kept,
        pages=done.pages,
        coverage=done.coverage,
    )


def test_joins_partials_keeps_rotation_order_and_labels(root: Path) -> None:
    result = read(root, Filters(namespace="shop", container="api"))
    lines = {r.line: r for r in result.lines}
    assert lines["partial stack trace ends"].ts_ns == T0 + 3 * SECOND
    assert lines["partial stack trace ends"].labels == {
        "namespace": "shop",
        "pod": "api-7d9f-abc",
        "container": "api",
        "stream": "stderr",
    }
    # The stderr fragments straddle a rotation; the final one never got its F line.
    assert [r.line for r in result.lines] == [
        "boot",
        "rotated one",
        "partial stack trace ends",
        "interleaved stdout",
        "ERROR connection refused redis:6379",
        "",
        "never finished",
        "after restart",
    ]
    assert [r.ts_ns for r in result.lines] == sorted(r.ts_ns for r in result.lines)
    assert (result.seen, result.kept, result.dropped) == (8, 8, 0)
    assert result.query.endswith('{namespace="shop", container="api"}')


def test_pod_regex_is_anchored(root: Path) -> None:
    assert read(root, Filters(namespace="shop", pod="api")).lines == []
    pods = {r.labels["pod"] for r in read(root, Filters(namespace="shop", pod="api-.*")).lines}
    assert pods == {"api-7d9f-abc"}
    web = read(root, Filters(namespace="shop", pod="web-1|nope")).lines
    assert [r.line for r in web] == ["web up", "ERROR web"]


def test_namespace_selects_kubelet_and_plain_files(root: Path) -> None:
    shop = read(root, Filters(namespace="shop"))
    containers = {r.labels.get("container") for r in shop.lines}
    assert containers == {"api", "istio-proxy", "web", None}
    plain = [r for r in shop.lines if "filename" in r.labels]
    assert [r.line for r in plain] == ["no timestamps here", "ERROR second line"]
    assert all(r.ts_ns == T0 + 7 * SECOND for r in plain)  # file mtime
    assert plain[0].labels == {"namespace": "shop", "filename": str(root / "shop" / "batch.log")}
    other = read(root, Filters(namespace="other"))
    assert [r.line for r in other.lines] == ["other namespace"]


def test_plain_file_timestamps_and_continuations(root: Path) -> None:
    result = read(root, Filters(namespace="default"))
    assert [(r.ts_ns - T0, r.line) for r in result.lines] == [
        (3_500_000_000, "2026-11-24T10:00:03.5Z ERROR plain app"),
        (3_500_000_000, "  at frame one"),
        (4_250_000_000, "2026-11-24 10:00:04,250 INFO ok"),
    ]
    # Plain files have no container label, so a container filter excludes them (as in Loki).
    assert read(root, Filters(namespace="default", container="app")).lines == []


def test_window_is_start_inclusive_end_exclusive(root: Path) -> None:
    filters = Filters(namespace="shop", container="api")
    result = read(root, filters, start_ns=T0 + 2 * SECOND, end_ns=T0 + 6 * SECOND)
    assert [r.line for r in result.lines] == [
        "rotated one",
        "partial stack trace ends",
        "interleaved stdout",
    ]


def test_log_filter_line_and_label_stages(root: Path) -> None:
    errors = read(root, Filters(namespace="shop"), parse_log_filter('|~ "(?i)error"'))
    assert [r.line for r in errors.lines] == [
        "ERROR connection refused redis:6379",
        "ERROR second line",
        "ERROR web",
    ]
    stderr = read(root, Filters(namespace="shop"), parse_log_filter('| stream="stderr"'))
    assert [r.line for r in stderr.lines] == ["partial stack trace ends", "never finished"]


def test_scan_limit_reads_across_the_whole_window(root: Path) -> None:
    result = read(root, Filters(namespace="shop"), scan_limit=3)
    assert len(result.lines) == 3 and result.seen == 13
    coverage = result.coverage
    assert coverage is not None
    assert (coverage.mode, coverage.lines_in_window, coverage.lines_read) == ("sampled", 13, 3)
    # Not the three oldest: one line from each of three parts of the window.
    assert [r.line for r in result.lines] != ["boot", "rotated one", "web up"]
    assert sum(r.weight for r in result.lines) == pytest.approx(13, abs=3)


def busy_pods(tmp_path: Path, *, lines: int, cause_at: float) -> Path:
    """One container with `lines` INFO lines over 10 minutes and one FATAL at `cause_at`."""
    text = []
    for i in range(lines):
        offset = 600 * i / lines
        text.append(cri(offset, "stdout", "F", f"INFO GET /items/{i} 200"))
        if i == int(lines * cause_at):
            text.append(cri(offset + 0.001, "stderr", "F", "FATAL missing config key PAYMENTS_URL"))
    write(tmp_path / "shop_api-1_aa11" / "api" / "0.log", "".join(text))
    return tmp_path


@pytest.mark.parametrize("cause_at", [0.05, 0.5, 0.95])
def test_severity_first_reads_every_error_line_and_a_spread_sample(
    tmp_path: Path, cause_at: float
) -> None:
    pods = busy_pods(tmp_path, lines=5000, cause_at=cause_at)
    window = Window(Filters(namespace="shop"), EVERYTHING, T0, T0 + 600 * SECOND)
    lines, done = read_all(FileSource(pods), ReadPlan(window, 200, severity_first=True))
    assert any(r.line.startswith("FATAL") and r.weight == 1.0 for r in lines)
    coverage = done.coverage
    assert coverage is not None and coverage.mode == "sampled"
    assert (coverage.lines_in_window, coverage.lines_read) == (5001, 200)
    assert (coverage.severe_in_window, coverage.severe_read) == (1, 1)
    assert sum(1 for r in coverage.ranges if r.read) == len(coverage.ranges)  # every part
    assert sum(r.weight for r in lines) == pytest.approx(5001, rel=0.01)
    assert [r.ts_ns for r in lines] == sorted(r.ts_ns for r in lines)
    assert "every error-or-warning line (1)" in coverage.describe()


ERROR_LINE = "ERROR upstream timeout calling inventory"


def noisy_pods(tmp_path: Path, *, cause_at: float) -> Path:
    """12,500 ERROR, 12,500 WARN and 5,000 INFO lines over 10 minutes (more warnings and
    errors than the default budget), and one FATAL at `cause_at`."""
    kinds = [ERROR_LINE] * 5 + ["WARN slow request"] * 5 + ["INFO GET / 200"] * 2
    text = [cri(600 * i / 30_000, "stdout", "F", kinds[i % 12]) for i in range(30_000)]
    fatal = cri(600 * cause_at + 0.001, "stderr", "F", "FATAL missing config key PAYMENTS_URL")
    write(tmp_path / "shop_api-1_aa11" / "api" / "0.log", "".join(text))
    write(tmp_path / "shop_payments-0_bb22" / "payments" / "0.log", fatal)
    return tmp_path


@pytest.mark.parametrize("cause_at", [0.03, 0.53, 0.998])
def test_a_single_fatal_among_many_errors_is_read_first(tmp_path: Path, cause_at: float) -> None:
    pods = noisy_pods(tmp_path, cause_at=cause_at)
    window = Window(Filters(namespace="shop"), EVERYTHING, T0, T0 + 600 * SECOND)
    plan = ReadPlan(window, DEFAULT_SCAN_LIMIT, severity_first=True)
    lines, done = read_all(FileSource(pods), plan)
    fatal = [r for r in lines if r.line.startswith("FATAL")]
    assert len(fatal) == 1 and fatal[0].weight == 1.0
    errors = [r for r in lines if r.line == ERROR_LINE]
    assert len(errors) == 12_500 and {r.weight for r in errors} == {1.0}  # the next tier, whole
    coverage = done.coverage
    assert coverage is not None and coverage.mode == "sampled"
    assert coverage.lines_read == DEFAULT_SCAN_LIMIT


def test_a_complete_read_says_so(tmp_path: Path) -> None:
    pods = busy_pods(tmp_path, lines=300, cause_at=0.5)
    window = Window(Filters(namespace="shop"), EVERYTHING, T0, T0 + 600 * SECOND)
    lines, done = read_all(FileSource(pods), ReadPlan(window, 20_000, severity_first=True))
    assert done.coverage is not None
    assert (done.coverage.mode, done.coverage.lines_in_window) == ("complete", 301)
    assert len(lines) == 301 and {r.weight for r in lines} == {1.0}
    assert done.coverage.describe() == "Read all 301 matching lines of the window."


def test_a_filtered_line_brings_the_rest_of_its_traceback(tmp_path: Path) -> None:
    traceback = [
        "ERROR could not write segment",
        "Traceback (most recent call last):",
        '  File "/app/store.py", line 88, in write',
        "    cursor.execute(sql)",
        "psycopg2.errors.DiskFull: could not extend file",
    ]
    text = [cri(i, "stdout", "F", f"INFO tick {i}") for i in range(10)]
    text += [cri(20 + i * 0.001, "stderr", "F", line) for i, line in enumerate(traceback)]
    text += [cri(30 + i, "stdout", "F", f"INFO tick {i}") for i in range(10)]
    write(tmp_path / "shop_db-0_bb22" / "app" / "0.log", "".join(text))
    window = Window(
        Filters(namespace="shop"), parse_log_filter('|= "DiskFull"'), T0, T0 + 60 * SECOND
    )
    plain, _ = read_all(FileSource(tmp_path), ReadPlan(window, 1000))
    assert [r.line for r in plain] == [traceback[-1]]
    lines, done = read_all(FileSource(tmp_path), ReadPlan(window, 1000, context=may_be_multiline))
    assert [r.line for r in lines] == traceback
    assert done.coverage is not None and done.coverage.context_lines == 4
    (event,) = flatten(lines)
    assert event.message.splitlines() == traceback  # one event, headed by the log line
    assert event.fields["exception"] == traceback[-1]


def test_node_filter(root: Path) -> None:
    filters = Filters(namespace="shop", container="web")
    assert len(read(root, filters).lines) == 2
    on_node = read(root, filters.model_copy(update={"node": "node-1"}), node_name="node-1")
    assert [r.labels["node"] for r in on_node.lines] == ["node-1", "node-1"]
    elsewhere = read(root, filters.model_copy(update={"node": "node-2"}), node_name="node-1")
    assert elsewhere.lines == [] and elsewhere.seen == 0
    assert read(root, filters.model_copy(update={"node": "node-1"})).lines == []


def test_invalid_filters_are_rejected(root: Path) -> None:
    with pytest.raises(InvalidQueryError) as info:
        read(root, Filters.model_construct(namespace="../etc", pod=None, container=None, node=None))
    assert info.value.field == "filters.namespace"


def test_missing_root_reads_nothing(tmp_path: Path) -> None:
    result = read(tmp_path / "absent", Filters(namespace="shop"))
    assert (result.lines, result.seen) == ([], 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T10:00:00Z", T0),
        ("2026-11-24T10:00:00.123456789Z", T0 + 123_456_789),
        ("2026-11-24T10:00:00.5z", T0 + 500_000_000),
        ("2026-11-24T12:00:00+02:00", T0),
        ("2026-11-24T09:30:00-0030", T0),
    ],
)
def test_parse_rfc3339_ns(text: str, expected: int) -> None:
    assert parse_rfc3339_ns(text) == expected


@pytest.mark.parametrize("text", ["2026-11-24T10:00:00", "2026-02-31T10:00:00Z", "yesterday", ""])
def test_parse_rfc3339_ns_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339_ns(text)
