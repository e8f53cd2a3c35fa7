"""SSE helpers for tests and benchmarks (what `curl -N` would show)."""

from __future__ import annotations

import httpx

from api.client import SseEvent, iter_sse

__all__ = ["SseEvent", "collect", "iter_sse"]


def collect(
    client: httpx.Client,
    url: str,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> list[SseEvent]:
    """Read events until the server ends the stream (or `stop_after` events were read)."""
    request_headers = {"Accept": "text/event-stream", **(headers or {})}
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = str(last_event_id)
    events: list[SseEvent] = []
    with client.stream(
        "GET", url, headers=request_headers, timeout=httpx.Timeout(timeout, connect=5.0)
    ) as response:
        response.raise_for_status()
        for event in iter_sse(response):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events
