"""A small Server-Sent Events reader for tests and benchmarks (what `curl -N` would show)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse an open streaming response into events (comments are attached to the next one)."""
    event, data, event_id, comments = "message", [], None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data), event_id, comments)
            event, data, event_id, comments = "message", [], None, []
            continue
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def collect(
    client: httpx.Client,
    url: str,
    *,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout: float = 30.0,
) -> list[SseEvent]:
    """Read events until the server ends the stream (or `stop_after` events were read)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[SseEvent] = []
    with client.stream(
        "GET", url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0)
    ) as response:
        response.raise_for_status()
        for event in iter_sse(response):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events
