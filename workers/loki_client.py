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
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from shared.errors import LokiError, LokiRejectedError
from shared.schemas import FetchResult, RawLine

__all__ = ["MAX_PAGE_SIZE", "compute_backoff", "fetch_range", "parse_retry_after"]

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 5000  # Loki's default max_entries_limit_per_query
QUERY_RANGE_PATH: Final = "/loki/api/v1/query_range"
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_RETRY_EXCEPTIONS: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

LabelKey = tuple[tuple[str, str], ...]
EntryKey = tuple[int, LabelKey, str]


def compute_backoff(attempt: int, base: float, cap: float, *, jitter: float | None = None) -> float:
    """Seconds to wait before retry `attempt` (0 for the first retry).

    Exponential with "equal jitter": half of ``min(cap, base * 2**attempt)`` is fixed, the other
    half is scaled by `jitter` in [0, 1) (random when None), so retries from many workers spread
    out but never collapse to zero. Pure when `jitter` is given.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), 32))
    fraction = random.random() if jitter is None else min(max(jitter, 0.0), 1.0)
    return ceiling / 2 + ceiling / 2 * fraction


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP-date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def fetch_range(
    client: httpx.Client,
    base_url: str,
    query: str,
    start_ns: int,
    end_ns: int,
    *,
    scan_limit: int,
    page_size: int = MAX_PAGE_SIZE,
    max_retries: int = 4,
    timeout_s: float = 30,
    on_page: Callable[[int, int], None] | None = None,
    backoff_base_s: float = 0.5,
    backoff_cap_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Read up to `scan_limit` entries of `query` in ``[start_ns, end_ns)``, oldest first.

    `on_page(pages, kept)` is called after every page. Retries 429, 5xx, connection errors
    and timeouts `max_retries` times with `compute_backoff` (or `Retry-After`), then raises
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
        payload = _get_json(
            client,
            url,
            params,
            max_retries=max_retries,
            timeout_s=timeout_s,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            sleep=sleep,
        )
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


def _get_json(
    client: httpx.Client,
    url: str,
    params: dict[str, str],
    *,
    max_retries: int,
    timeout_s: float,
    backoff_base_s: float,
    backoff_cap_s: float,
    sleep: Callable[[float], None],
) -> Any:
    """GET `url` with retries; the decoded JSON body of the first 200."""
    attempt = 0
    while True:
        retry_after: float | None = None
        try:
            response = client.get(url, params=params, timeout=timeout_s)
        except _RETRY_EXCEPTIONS as exc:
            problem = f"{exc.__class__.__name__}: {exc}"
        else:
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError as exc:
                    raise LokiError(f"Loki returned invalid JSON: {exc}") from None
            if status not in _RETRY_STATUSES:
                text = response.text.strip()
                if status == 400:
                    raise LokiRejectedError(text or "Loki rejected the query (400)")
                raise LokiRejectedError(f"Loki answered {status}: {text[:500]}")
            problem = f"HTTP {status}: {response.text.strip()[:200]}"
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if attempt >= max_retries:
            raise LokiError(f"Loki failed after {attempt + 1} attempts; last error: {problem}")
        if retry_after is not None and retry_after > backoff_cap_s:
            # Don't hold a worker that long: fail now, the task-level retry waits instead.
            raise LokiError(f"Loki asked to retry after {retry_after:.0f}s; last error: {problem}")
        delay = (
            retry_after
            if retry_after is not None
            else compute_backoff(attempt, backoff_base_s, backoff_cap_s)
        )
        logger.warning(
            "Loki request failed (%s); retry %d/%d in %.2fs",
            problem,
            attempt + 1,
            max_retries,
            delay,
        )
        sleep(delay)
        attempt += 1
