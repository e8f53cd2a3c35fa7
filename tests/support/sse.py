"""SSE clients for tests and benchmarks: read a stream to its end, or follow a job across
reconnects with Last-Event-ID (what `curl -N` and a browser's EventSource would do)."""

from __future__ import annotations

import threading
import time

import httpx

from cli.client import SseEvent, follow, iter_sse

__all__ = ["Follower", "SseEvent", "collect", "covered_seqs", "iter_sse", "token_count"]


def covered_seqs(events: list[SseEvent]) -> list[int]:
    """The event ids a stream delivered, in order: a coalesced token event (one the API merged
    for a client that was behind) carries `data.first_seq` and stands for first_seq..id."""
    seqs: list[int] = []
    for event in events:
        if event.id is None:
            continue
        last = int(event.id)
        first = event.json["data"].get("first_seq", last) if event.event == "token" else last
        seqs.extend(range(first, last + 1))
    return seqs


def token_count(events: list[SseEvent]) -> int:
    """How many of the job's token events the stream carried (merged ones counted apart)."""
    return len(covered_seqs([e for e in events if e.event == "token"]))


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
    events: list[SseEvent] = []
    stream = follow(
        client, url, last_event_id=last_event_id, timeout=timeout, headers=headers or {}
    )
    for event in stream:
        events.append(event)
        if stop_after is not None and len(events) >= stop_after:
            break
    return events


class Follower(threading.Thread):
    """An SSE client on its own thread that reconnects with Last-Event-ID until `done`."""

    def __init__(self, url: str, deadline_s: float = 90, headers: dict[str, str] | None = None):
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.events: list[SseEvent] = []
        self.reconnects = 0
        self.deadline = time.monotonic() + deadline_s

    @property
    def last_seq(self) -> int:
        ids = [int(e.id) for e in self.events if e.id]
        return ids[-1] if ids else 0

    def kinds(self) -> list[str]:
        """The types of the job's events received so far (stream-level errors excluded)."""
        return [e.event for e in self.events if e.id]

    def done(self) -> bool:
        return "done" in self.kinds()

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.done() and time.monotonic() < self.deadline:
                headers = dict(self.headers)
                if self.last_seq:
                    headers["Last-Event-ID"] = str(self.last_seq)
                try:
                    with client.stream(
                        "GET", self.url, headers=headers, timeout=httpx.Timeout(30, connect=2)
                    ) as response:
                        if response.status_code != 200:
                            raise httpx.HTTPError(f"status {response.status_code}")
                        for event in iter_sse(response):
                            self.events.append(event)
                except httpx.HTTPError:
                    pass
                if not self.done():
                    self.reconnects += 1
                    time.sleep(0.2)
