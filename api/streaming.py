"""Merge a job's stored backlog with its live tail into one gap-free, duplicate-free stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from api.hub import EventHub
from shared.job_store import AsyncJobStore
from shared.schemas import Event, EventType


class SlowClientError(Exception):
    """Raised when a client fell so far behind that its live buffer overflowed."""


async def job_events(
    job_id: str,
    after_seq: int,
    store: AsyncJobStore,
    hub: EventHub,
    *,
    poll_s: float = 5.0,
) -> AsyncIterator[Event]:
    """Yield every event with `seq > after_seq` in order, ending after `done`.

    Listens first, then reads the backlog, so an event is either in the backlog read or
    arrives live; duplicates are skipped by `seq`. A gap in the live tail (pub/sub loses
    messages while the hub reconnects) is filled from the backlog, and so is silence longer
    than `poll_s`, which also catches a lost final event.
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
                raise SlowClientError(job_id)
            event: Event | None
            try:
                # The fast path takes what is queued without a timer task per event.
                event = listener.queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    event = await asyncio.wait_for(listener.queue.get(), timeout=poll_s)
                except TimeoutError:
                    event = None
            if event is None:
                missed = await store.events_after(job_id, last)
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
