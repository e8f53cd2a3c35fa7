"""A small client for the service's HTTP API: submit a job and follow its SSE events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    """One Server-Sent Event as it came over the wire."""

    event: str
    data: str
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse an open streaming response into events (comments attach to the next event)."""
    event, event_id = "message", None
    data: list[str] = []
    comments: list[str] = []
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


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


def submit(
    client: httpx.Client, api_url: str, body: dict[str, Any], api_key: str | None = None
) -> dict[str, Any]:
    """POST /v1/jobs; raises httpx.HTTPStatusError with the server's answer on 4xx/5xx."""
    response = client.post(f"{api_url}/v1/jobs", json=body, headers=auth_headers(api_key))
    response.raise_for_status()
    return dict(response.json())


def follow(
    client: httpx.Client,
    events_url: str,
    *,
    api_key: str | None = None,
    last_event_id: int | None = None,
    timeout: float = 600,
    headers: dict[str, str] | None = None,
) -> Iterator[SseEvent]:
    """Yield a job's events until the server ends the stream after `done`."""
    headers = {"Accept": "text/event-stream", **auth_headers(api_key), **(headers or {})}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    with client.stream(
        "GET", events_url, headers=headers, timeout=httpx.Timeout(timeout, connect=5)
    ) as response:
        response.raise_for_status()
        yield from iter_sse(response)
