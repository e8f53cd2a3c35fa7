"""Read a time window from Loki's `query_range`, page by page, exactly once per line.

Paging goes **forward** (oldest first): when `scan_limit` cuts the window short we keep the
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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import httpx

from shared.errors import LokiError, LokiRejectedError
from shared.logql import build_query
from shared.retry import RetryPolicy, parse_retry_after
from shared.schemas import FetchResult, RawLine
from workers.sources import Window

__all__ = ["MAX_PAGE_SIZE", "LokiSource", "fetch_range"]

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 5000  # Loki's default max_entries_limit_per_query
QUERY_RANGE_PATH: Final = "/loki/api/v1/query_range"
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_RETRY_EXCEPTIONS: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
DEFAULT_RETRY: Final = RetryPolicy(attempts=4, base_s=0.5, cap_s=30.0)

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
    kept: dict[EntryKey, RawLine] = {}
    cursor = start_ns
    boundary: set[EntryKey] = set()  # kept entries at ts == cursor, which the next page re-reads
    while len(kept) < scan_limit and cursor < end_ns:
        limit = min(page_size, scan_limit - len(kept) + len(boundary))
        params = {
            "query": query,
            "start": str(cursor),
            "end": str(end_ns),
            "limit": str(limit),
            "direction": "forward",
        }
        try:
            payload = retry.call(
                partial(_get_json, client, url, params, timeout_s, retry.cap_s),
                retry_if=_retryable,
                what="Loki query_range",
                sleep=sleep,
            )
        except _LokiRetryable as exc:
            attempts = retry.attempts + 1
            raise LokiError(f"Loki failed after {attempts} attempts; last error: {exc}") from None
        entries = _parse_streams(payload)
        result.pages += 1
        result.seen += len(entries)
        added = 0
        for key, labels in entries:
            ts = key[0]
            if key in kept or not cursor <= ts < end_ns or len(kept) >= scan_limit:
                result.dropped += 1
                continue
            kept[key] = RawLine(ts_ns=ts, labels=labels, line=key[2])
            added += 1
        if on_page is not None:
            on_page(result.pages, len(kept))
        if len(entries) < limit:
            break  # Loki had nothing more in the window
        last_ts = max(entries[-1][0][0], cursor)
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
        boundary.update(key for key, _ in entries if key[0] == last_ts and key in kept)
        cursor = last_ts

    result.lines = sorted(kept.values(), key=lambda r: (r.ts_ns, _label_key(r.labels), r.line))
    result.kept = len(result.lines)
    return result


def _label_key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _parse_streams(payload: Any) -> list[tuple[EntryKey, dict[str, str]]]:
    """Flatten a `streams` answer into entries sorted by (ts, labels, line)."""
    try:
        if payload["status"] != "success":
            raise LokiError(f"Loki answered status {payload['status']!r}")
        data = payload["data"]
        if data["resultType"] != "streams":
            raise LokiError(f"Loki answered resultType {data['resultType']!r}, not streams")
        entries: list[tuple[EntryKey, dict[str, str]]] = []
        for stream in data["result"]:
            labels = {str(k): str(v) for k, v in stream["stream"].items()}
            key = _label_key(labels)
            for value in stream["values"]:
                # A third element (structured metadata) appears with categorized labels.
                entries.append(((int(value[0]), key, str(value[1])), labels))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise LokiError(f"Loki returned an unexpected response: {exc!r}") from None
    entries.sort(key=lambda e: e[0])
    return entries


class _LokiRetryable(LokiError):
    """A failure worth another try (429, 5xx, timeouts); `retry_after` as Loki asked."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _LokiRetryable)


def _get_json(
    client: httpx.Client, url: str, params: dict[str, str], timeout_s: float, max_wait_s: float
) -> Any:
    """GET `url`: the decoded JSON of a 200; _LokiRetryable for what may pass."""
    try:
        response = client.get(url, params=params, timeout=timeout_s)
    except _RETRY_EXCEPTIONS as exc:
        raise _LokiRetryable(f"Loki unreachable: {exc.__class__.__name__}: {exc}") from None
    status = response.status_code
    if status == 200:
        try:
            return response.json()
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


@dataclass(frozen=True)
class LokiSource:
    """A log source backed by Loki's `query_range` (see `fetch_range`)."""

    client: httpx.Client
    base_url: str
    page_size: int = MAX_PAGE_SIZE
    retry: RetryPolicy = DEFAULT_RETRY
    timeout_s: float = 30.0

    def read(self, window: Window, *, scan_limit: int) -> FetchResult:
        return fetch_range(
            self.client,
            self.base_url,
            build_query(window.filters, window.log_filter),
            window.start_ns,
            window.end_ns,
            scan_limit=scan_limit,
            page_size=self.page_size,
            retry=self.retry,
            timeout_s=self.timeout_s,
        )
