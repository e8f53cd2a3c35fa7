"""Merge a job's stored backlog with its live tail into one gap-free, duplicate-free stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from api.hub import EventHub, Listener
from shared.errors import SlowClientError, StreamStoppedError
from shared.job_store import AsyncJobStore, lost_events
from shared.schemas import Event, EventType

SLOW_CLIENT = "client too slow; reconnect with Last-Event-ID"
SHUTTING_DOWN = "this API process is stopping; reconnect with Last-Event-ID"


class Stop(Protocol):
    """What tells a stream to end early (sse-starlette's shutdown event)."""

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


async def _next_live(listener: Listener, poll_s: float, stop: Stop | None) -> Event | None:
    """The next live event, or None after `poll_s` of silence; raises StreamStoppedError."""
    try:
        # The fast path takes what is queued without a timer task per event.
        return listener.queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    getter = asyncio.ensure_future(listener.queue.get())
    waiters: set[asyncio.Future[Any]] = {getter}
    if stop is not None:
        waiters.add(asyncio.ensure_future(stop.wait()))
    try:
        done, _ = await asyncio.wait(waiters, timeout=poll_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    if getter in done:
        return getter.result()
    if stop is not None and stop.is_set():
        raise StreamStoppedError(SHUTTING_DOWN)
    return None


async def job_events(
    job_id: str,
    after_seq: int,
    store: AsyncJobStore,
    hub: EventHub,
    *,
    poll_s: float = 5.0,
    stop: Stop | None = None,
) -> AsyncIterator[Event]:
    """Yield every event with `seq > after_seq` in order, ending after `done`.

    Listens first, then reads the backlog, so an event is either in the backlog read or
    arrives live; duplicates are skipped by `seq`. A gap in the live tail (pub/sub loses
    messages while the hub reconnects) is filled from the backlog, and so is silence longer
    than `poll_s`, which also catches a lost final event. A job whose record is gone (a
    Redis restart without persistence) ends with `error` (`job_lost`) and `done`.
    """
    last = after_seq
    async with hub.listen(job_id) as listener:
        for stored in await store.events_after(job_id, last):
            yield stored
            last = stored.seq
            if stored.type is EventType.DONE:
                return
        while True:
            if listener.overflowed:
                raise SlowClientError(
                    "client too slow; reconnect with Last-Event-ID", job_id=job_id
                )
            if stop is not None and stop.is_set():
                raise StreamStoppedError(
                    "this API process is stopping; reconnect with Last-Event-ID"
                )
            event = await _next_live(listener, poll_s, stop)
            if event is None:
                missed = await store.events_after(job_id, last)
                if not missed and not await store.exists(job_id):
                    missed = lost_events(job_id, last)
            else:
                if event.seq <= last:
                    continue
                missed = (
                    await store.events_after(job_id, last, until=event.seq - 1)
                    if event.seq > last + 1
                    else []
                )
                missed.append(event)
            for item in missed:
                if item.seq <= last:
                    continue
                yield item
                last = item.seq
                if item.type is EventType.DONE:
                    return
