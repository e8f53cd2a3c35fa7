"""Read a time window from Loki: count it, then fetch its ranges in parallel.

`LokiSource.read` follows a `ReadPlan` (see `workers.sources.plan`): a metric query
(``sum(count_over_time(<query> [<bucket>]))`` over `query_range` with one point per bucket)
counts the window's lines per bucket (and, for a severity-first plan, those of each
severity tier, with the tier's line filter: `workers.sources.severity`), the plan turns the
counts into ranges, and up to `parallelism` ranges are fetched at once, each by
`fetch_range` with its own retries, as Loki's query frontend splits a query by interval. A
range that still fails is reported in the coverage (the job goes on, saying which part of
the window is missing) unless more than half of the planned lines are lost, which fails
the read. When the counts cannot be had (Loki refuses the metric query), the window is
read forward up to the budget and the coverage says it was cut.

Lines a filter kept that may belong to a multi-line event (`ReadPlan.context`) get the rest
of it: one bounded, unfiltered query of the same pod and container around the line
(within the range; see `workers.sources.context`).

`fetch_range` pages **forward** (oldest first): when `scan_limit` cuts the window short we keep the
beginning of the incident, where the cause usually is, and the moving edge is `start`, which Loki
treats as inclusive (`end` is exclusive). Each page asks for the earliest `limit` entries in
``[cursor, end)``; the next page starts *at* the last timestamp of the page, not after it, because
further entries may share that nanosecond. Entries at that boundary timestamp that were already
taken are recognised by their identity ``(ts, stream labels, line)`` and skipped. Loki itself
drops exact duplicates (same stream, timestamp and line), so the identity is unique.

Counts in the `FetchResult`:
- ``seen``: entries Loki returned over all pages, re-reads at page boundaries included;
- ``kept``: entries in the result;
- ``dropped = seen - kept``: boundary re-reads, plus any entry past `scan_limit` (or outside
  the window, which a correct Loki never sends).

Known limit: more than `page_size` entries at one nanosecond cannot be paged with `limit`
alone; the reader then moves one nanosecond on and logs a warning.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any, Final, TypeVar

import httpx
import orjson

from shared.errors import LokiError, LokiRejectedError
from shared.logql import LogFilter, build_query
from shared.retry import RetryPolicy, parse_retry_after
from shared.schemas import FetchResult, Filters, RawLine
from workers.sources import Chunk, ReadPlan, SourceRead, Window, chunked
from workers.sources.context import CONTEXT_LIMIT, CONTEXT_NS, ContextBudget, Stream, stream_of
from workers.sources.plan import (
    BUCKET_UNIT_NS,
    Buckets,
    ReadTask,
    Tally,
    bucket_edges,
    cut_coverage,
    plan_tasks,
    weigh,
)
from workers.sources.severity import TIERS

__all__ = ["MAX_PAGE_SIZE", "LokiSource", "count_buckets", "fetch_range"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 5000  # Loki's default max_entries_limit_per_query
QUERY_RANGE_PATH: Final = "/loki/api/v1/query_range"
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_RETRY_EXCEPTIONS: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
DEFAULT_RETRY: Final = RetryPolicy(attempts=4, base_s=0.5, cap_s=30.0)

UNLIMITED: Final = 10**12
NO_FILTER: Final = LogFilter(())

LabelKey = tuple[tuple[str, str], ...]
EntryKey = tuple[int, LabelKey, str]


def fetch_range(
    client: httpx.Client,
    base_url: str,
    query: str,
    start_ns: int,
    end_ns: int,
    *,
    scan_limit: int,
    page_size: int = MAX_PAGE_SIZE,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout_s: float = 30,
    on_page: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    headers: Mapping[str, str] | None = None,
) -> FetchResult:
    """Read up to `scan_limit` entries of `query` in ``[start_ns, end_ns)``, oldest first.

    `on_page(pages, kept)` is called after every page. Retries 429, 5xx, connection errors
    and timeouts as `retry` says (a `Retry-After` wins over the backoff), then raises
    LokiError; a 400 raises LokiRejectedError with Loki's own text.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be in 1..{MAX_PAGE_SIZE}, got {page_size}")
    if scan_limit < 1:
        raise ValueError(f"scan_limit must be positive, got {scan_limit}")
    result = FetchResult(lines=[], query=query)
    if end_ns <= start_ns:
        return result

    url = base_url.rstrip("/") + QUERY_RANGE_PATH
    lines: list[RawLine] = []
    cursor = start_ns
    boundary: set[EntryKey] = set()  # kept entries at ts == cursor, which the next page re-reads
    while len(lines) < scan_limit and cursor < end_ns:
        limit = min(page_size, scan_limit - len(lines) + len(boundary))
        params = {
            "query": query,
            "start": str(cursor),
            "end": str(end_ns),
            "limit": str(limit),
            "direction": "forward",
        }
        payload = _get_with_retries(
            client, url, params, timeout_s, headers, retry, sleep, "Loki query_range"
        )
        page = _parse_streams(payload)
        result.pages += 1
        result.seen += len(page)
        added = 0
        for raw, key in page:
            ts = raw.ts_ns
            if (
                not cursor <= ts < end_ns
                or len(lines) >= scan_limit
                or (ts == cursor and (ts, key, raw.line) in boundary)
            ):
                result.dropped += 1
                continue
            lines.append(raw)
            added += 1
        if on_page is not None:
            on_page(result.pages, len(lines))
        if len(page) < limit:
            break  # Loki had nothing more in the window
        last_ts = max(page[-1][0].ts_ns, cursor)
        if added == 0 and last_ts == cursor:
            logger.warning(
                "more than %d Loki entries share timestamp %d; skipping the rest of them",
                limit,
                last_ts,
            )
            cursor, boundary = last_ts + 1, set()
            continue
        if last_ts != cursor:
            boundary = set()
        boundary.update((last_ts, key, raw.line) for raw, key in page if raw.ts_ns == last_ts)
        cursor = last_ts

    result.lines = lines
    result.kept = len(lines)
    return result


def _parse_streams(payload: Any) -> list[tuple[RawLine, LabelKey]]:
    """A `streams` answer as lines (with their stream's key), oldest first."""
    try:
        if payload["status"] != "success":
            raise LokiError(f"Loki answered status {payload['status']!r}")
        data = payload["data"]
        if data["resultType"] != "streams":
            raise LokiError(f"Loki answered resultType {data['resultType']!r}, not streams")
        page: list[tuple[RawLine, LabelKey]] = []
        for stream in data["result"]:
            labels = {str(k): str(v) for k, v in stream["stream"].items()}
            key = tuple(sorted(labels.items()))
            # A third element (structured metadata) appears with categorized labels.
            page += [
                (RawLine(int(value[0]), labels, str(value[1])), key) for value in stream["values"]
            ]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise LokiError(f"Loki returned an unexpected response: {exc!r}") from None
    # Each stream comes in order; streams interleave. Same-nanosecond order is Loki's.
    page.sort(key=_by_ts)
    return page


def _by_ts(entry: tuple[RawLine, LabelKey]) -> int:
    return entry[0].ts_ns


class _LokiRetryable(LokiError):
    """A failure worth another try (429, 5xx, timeouts); `retry_after` as Loki asked."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _LokiRetryable)


def _get_json(
    client: httpx.Client,
    url: str,
    params: dict[str, str],
    timeout_s: float,
    max_wait_s: float,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """GET `url`: the decoded JSON of a 200; _LokiRetryable for what may pass."""
    try:
        response = client.get(url, params=params, timeout=timeout_s, headers=headers)
    except _RETRY_EXCEPTIONS as exc:
        raise _LokiRetryable(f"Loki unreachable: {exc.__class__.__name__}: {exc}") from None
    status = response.status_code
    if status == 200:
        try:
            return orjson.loads(response.content)
        except ValueError as exc:
            raise LokiError(f"Loki returned invalid JSON: {exc}") from None
    text = response.text.strip()
    if status not in _RETRY_STATUSES:
        if status == 400:
            raise LokiRejectedError(text or "Loki rejected the query (400)")
        raise LokiRejectedError(f"Loki answered {status}: {text[:500]}")
    problem = f"HTTP {status}: {text[:200]}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is not None and retry_after > max_wait_s:
        # Don't hold a worker that long: fail now and say why.
        raise LokiError(f"Loki asked to retry after {retry_after:.0f}s; last error: {problem}")
    raise _LokiRetryable(problem, retry_after)


def _get_with_retries(
    client: httpx.Client,
    url: str,
    params: dict[str, str],
    timeout_s: float,
    headers: Mapping[str, str] | None,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    what: str,
) -> Any:
    """`_get_json` under the retry policy; LokiError once the retries are spent."""
    try:
        return retry.call(
            partial(_get_json, client, url, params, timeout_s, retry.cap_s, headers),
            retry_if=_retryable,
            what=what,
            sleep=sleep,
        )
    except _LokiRetryable as exc:
        attempts = retry.attempts + 1
        raise LokiError(f"Loki failed after {attempts} attempts; last error: {exc}") from None


def count_buckets(
    client: httpx.Client,
    base_url: str,
    query: str,
    edges: list[int],
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    headers: Mapping[str, str] | None = None,
) -> list[int]:
    """Lines of `query` per bucket ``[edges[i], edges[i+1])``, by one metric query.

    Loki evaluates ``count_over_time(q [step] offset o)`` at points aligned to multiples of
    the step since the epoch, each over ``(t - o - step, t - o]``; the offset moves those
    ranges onto the buckets (to the millisecond). So a line exactly on an edge counts in the
    bucket before, and a last bucket shorter than the step also counts up to a step past
    the window's end: the counts plan the read, they are not the read.
    """
    step = edges[1] - edges[0]
    step_ms = step // BUCKET_UNIT_NS
    buckets = len(edges) - 1
    grid = -(-edges[0] // step) * step  # the first point Loki evaluates at or after the start
    offset_ms = (grid - edges[0]) // BUCKET_UNIT_NS
    offset = f" offset {offset_ms}ms" if offset_ms else ""
    params = {
        "query": f"sum(count_over_time({query} [{step_ms}ms]{offset}))",
        "start": str(grid + step),
        "end": str(grid + buckets * step),
        "step": f"{step_ms}ms",
    }
    url = base_url.rstrip("/") + QUERY_RANGE_PATH
    payload = _get_with_retries(
        client, url, params, timeout_s, headers, retry, sleep, "Loki count query"
    )
    counts = [0] * buckets
    try:
        if payload["status"] != "success" or payload["data"]["resultType"] != "matrix":
            raise LokiError("Loki answered a count query without a matrix")
        for series in payload["data"]["result"]:
            for moment, value in series["values"]:
                at = round((round(float(moment) * 1e9) - grid) / step) - 1
                if 0 <= at < buckets:
                    counts[at] += int(float(value))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LokiError(f"Loki returned an unexpected count response: {exc!r}") from None
    return counts


@dataclass(frozen=True)
class LokiSource:
    """A log source backed by Loki (see the module docstring)."""

    client: httpx.Client
    base_url: str
    page_size: int = MAX_PAGE_SIZE
    retry: RetryPolicy = DEFAULT_RETRY
    timeout_s: float = 30.0
    parallelism: int = 4
    sleep: Callable[[float], None] = time.sleep
    tenant: str | None = None  # sent as X-Scope-OrgID (multi-tenant Loki)

    @property
    def _headers(self) -> dict[str, str] | None:
        return {"X-Scope-OrgID": self.tenant} if self.tenant else None

    def read(self, plan: ReadPlan) -> SourceRead:
        """Count the window, then fetch the planned ranges in parallel (see the module)."""
        window = plan.window
        read = SourceRead(query=build_query(window.filters, window.log_filter), chunks=iter(()))
        read.chunks = self._chunks(plan, read)
        return read

    def _query(self, window: Window) -> str:
        return build_query(window.filters, window.log_filter)

    def _count(self, window: Window, edges: list[int]) -> list[int]:
        return count_buckets(
            self.client,
            self.base_url,
            self._query(window),
            edges,
            retry=self.retry,
            timeout_s=self.timeout_s,
            sleep=self.sleep,
            headers=self._headers,
        )

    def _fetch(self, window: Window, limit: int) -> FetchResult:
        return fetch_range(
            self.client,
            self.base_url,
            self._query(window),
            window.start_ns,
            window.end_ns,
            scan_limit=limit,
            page_size=self.page_size,
            retry=self.retry,
            timeout_s=self.timeout_s,
            sleep=self.sleep,
            headers=self._headers,
        )

    def _chunks(self, plan: ReadPlan, read: SourceRead) -> Iterator[Chunk]:
        window = plan.window
        if window.end_ns <= window.start_ns:
            read.coverage = cut_coverage(window, 0, cut=False)
            return
        edges = bucket_edges(window.start_ns, window.end_ns)
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="loki-read") as pool:
            try:
                buckets = self._buckets(pool, plan, edges)
            except LokiRejectedError as exc:
                read.notes.append(f"Loki could not count the window ({exc}); read it forward")
                yield from self._forward(plan, read)
                return
            tasks = plan_tasks(plan, buckets)
            tally = Tally(buckets, tasks)
            yield from self._run(pool, plan, tasks, tally, read)
        read.coverage = tally.coverage(severity_first=plan.severity_first)

    def _buckets(self, pool: ThreadPoolExecutor, plan: ReadPlan, edges: list[int]) -> Buckets:
        """The window's lines per bucket and, when a severity-first plan cannot read them
        all, each tier's (one count query each, the tiers' at once): a window that fits
        costs Loki one scan, not one per tier."""
        total = self._count(plan.window, edges)
        if not plan.severity_first or sum(total) <= plan.budget:
            return Buckets(edges, total)
        tiers = [
            _submit(pool, self._count, plan.window.narrowed(tier.log_filter), edges)
            for tier in TIERS
        ]
        return Buckets(edges, total, [tier.result() for tier in tiers])

    def _forward(self, plan: ReadPlan, read: SourceRead) -> Iterator[Chunk]:
        fetched = self._fetch(plan.window, plan.budget)
        read.pages, read.seen, read.kept = fetched.pages, fetched.seen, fetched.kept
        read.coverage = cut_coverage(plan.window, fetched.kept, cut=fetched.kept >= plan.budget)
        yield from chunked("all", 0, fetched.lines)

    def _run(
        self,
        pool: ThreadPoolExecutor,
        plan: ReadPlan,
        tasks: list[ReadTask],
        tally: Tally,
        read: SourceRead,
    ) -> Iterator[Chunk]:
        """Fetch `tasks`, at most twice `parallelism` in flight (finished ranges wait in
        memory until taken), and yield their chunks as they finish."""
        context = ContextBudget() if plan.context is not None else None
        planned = sum(_size(t) for t in tasks)
        lost = 0
        waiting = iter(tasks)
        running: dict[Future[_Fetched], ReadTask] = {}

        def submit_next() -> None:
            task = next(waiting, None)
            if task is not None:
                running[_submit(pool, self._task, task, plan, context)] = task

        for _ in range(2 * self.parallelism):
            submit_next()
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    submit_next()
                    try:
                        got = future.result()
                    except LokiRejectedError:
                        raise
                    except LokiError as exc:
                        tally.fail(task, exc.message)
                        lost += _size(task)
                        if 2 * lost > planned:
                            raise LokiError(
                                "Loki failed on more than half of the window: "
                                + "; ".join(tally.failed)
                            ) from None
                        continue
                    weigh(task, got.lines)
                    tally.add(task, got.lines)
                    tally.context += len(got.context)
                    read.pages += got.pages
                    read.seen += got.seen
                    read.kept += len(got.lines) + len(got.context)
                    yield from chunked(task.group, task.seq, got.lines)
                    yield from chunked(f"{task.group}+context", task.seq, got.context)
        finally:
            for future in running:
                future.cancel()

    def _task(self, task: ReadTask, plan: ReadPlan, context: ContextBudget | None) -> _Fetched:
        fetched = self._fetch(task.window, task.limit or UNLIMITED)
        got = _Fetched(fetched.lines, [], fetched.pages, fetched.seen)
        if context is not None and plan.context is not None:
            if not task.window.log_filter.is_empty:
                self._add_context(got, task, plan.context, context)
        return got

    def _add_context(
        self, got: _Fetched, task: ReadTask, wanted: Callable[[str], bool], budget: ContextBudget
    ) -> None:
        """Read the neighbours of the lines that may be part of a multi-line event."""
        spans: dict[Stream, list[tuple[int, int]]] = {}
        low, high = task.window.start_ns, task.window.end_ns
        for raw in got.lines:
            if wanted(raw.line) and budget.take(raw.line):
                span = (max(raw.ts_ns - CONTEXT_NS, low), min(raw.ts_ns + CONTEXT_NS + 1, high))
                spans.setdefault(stream_of(raw), []).append(span)
        if not spans:
            return
        have = {(r.ts_ns, r.line, stream_of(r)) for r in got.lines}
        for stream, intervals in spans.items():
            filters = _stream_filters(task.window.filters, stream)
            for start, end in _merged(intervals):
                window = Window(filters, NO_FILTER, start, end)
                try:
                    fetched = self._fetch(window, CONTEXT_LIMIT)
                except LokiRejectedError:
                    raise
                except LokiError as exc:
                    logger.warning("context read failed, going on without it: %s", exc)
                    continue
                got.pages += fetched.pages
                got.seen += fetched.seen
                got.context += [
                    r for r in fetched.lines if (r.ts_ns, r.line, stream_of(r)) not in have
                ]
        got.context.sort(key=attrgetter("ts_ns"))


@dataclass
class _Fetched:
    lines: list[RawLine]
    context: list[RawLine]
    pages: int
    seen: int


def _size(task: ReadTask) -> int:
    return max(task.limit or task.count, 1)


def _submit(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: object) -> Future[T]:
    """Submit with the caller's context, so the fetch's spans join the stage's trace."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _stream_filters(filters: Filters, stream: Stream) -> Filters:
    """The filters of one pod and container (the labels Loki indexes), for a context read."""
    namespace, pod, container = stream
    return Filters(
        namespace=namespace or filters.namespace,
        pod=re.escape(pod) if pod else filters.pod,
        container=container or filters.container,
        node=filters.node,
    )
