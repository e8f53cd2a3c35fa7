"""Merge a job's stored backlog with its live tail into one gap-free, duplicate-free stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from api.hub import EventHub, Listener
from api.relay import Frame, coalesce, encode
from shared.errors import SlowClientError, StreamStoppedError
from shared.job_store import AsyncJobStore, lost_events
from shared.schemas import Event, EventType

SLOW_CLIENT = "client too slow; reconnect with Last-Event-ID"
SHUTTING_DOWN = "this API process is stopping; reconnect with Last-Event-ID"


class Stop(Protocol):
    """What tells a stream to end early (sse-starlette's shutdown event)."""

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


async def _wake_on(stop: Stop, listener: Listener) -> None:
    await stop.wait()
    listener.wake()


async def job_frames(
    job_id: str,
    after_seq: int,
    store: AsyncJobStore,
    hub: EventHub,
    *,
    poll_s: float = 5.0,
    stop: Stop | None = None,
    tick_s: float = 0.0,
    on_slow: Callable[[], None] | None = None,
) -> AsyncIterator[list[Frame]]:
    """Every event with `seq > after_seq` in order, in batches, ending after `done`.

    Listens first, then reads the backlog, so an event is either in the backlog read or
    arrives live; duplicates are skipped by `seq`. A gap in the live tail (pub/sub loses
    messages while the hub reconnects) is filled from the backlog, and so is silence longer
    than `poll_s`, which also catches a lost final event. A job whose record is gone (a
    Redis restart without persistence) ends with `error` (`job_lost`) and `done`.
    A client that is behind (more than one live frame waiting) gets its waiting token frames
    merged (api.relay.coalesce); one more than `tick_s` behind then waits `tick_s` before its
    next batch, so a client that cannot keep up costs a write per tick, not per event.
    Raises SlowClientError once the listener overflowed, StreamStoppedError once `stop` is set.
    """
    last = after_seq
    async with hub.listen(job_id, on_slow) as listener:
        backlog: list[Frame] = []
        for stored in await store.events_after(job_id, last):
            backlog.append(encode(stored))
            last = stored.seq
            if stored.type is EventType.DONE:
                break
        if backlog:
            yield backlog
            if backlog[-1].event.type is EventType.DONE:
                return
        watcher = asyncio.create_task(_wake_on(stop, listener)) if stop is not None else None
        try:
            while True:
                if listener.overflowed:
                    raise SlowClientError(SLOW_CLIENT, job_id=job_id)
                if stop is not None and stop.is_set():
                    raise StreamStoppedError(SHUTTING_DOWN)
                lag = listener.outbox.lag(time.monotonic())
                live = listener.take()
                if not live:
                    await listener.wait(poll_s)
                    if listener.overflowed or (stop is not None and stop.is_set()):
                        continue
                    live = listener.take()
                out: list[Frame] = []
                if not live:
                    missed = await store.events_after(job_id, last)
                    if not missed and not await store.exists(job_id):
                        missed = lost_events(job_id, last)
                    out = [encode(e) for e in missed if e.seq > last]
                for frame in live:
                    if frame.seq <= last:
                        continue
                    if frame.first_seq > last + 1:
                        gap = await store.events_after(job_id, last, until=frame.first_seq - 1)
                        out += [encode(e) for e in gap if e.seq > last]
                    out.append(frame)
                    last = frame.seq
                    if frame.event.type is EventType.DONE:
                        break
                if not out:
                    continue
                last = out[-1].seq
                done = next((i for i, f in enumerate(out) if f.event.type is EventType.DONE), None)
                if done is not None:
                    out = out[: done + 1]
                yield coalesce(out) if len(live) > 1 else out
                if done is not None:
                    return
                if tick_s > 0 and lag > tick_s:
                    # More than a tick behind: let the next batch gather a tick's worth.
                    await asyncio.sleep(tick_s)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


async def job_events(
    job_id: str,
    after_seq: int,
    store: AsyncJobStore,
    hub: EventHub,
    *,
    poll_s: float = 5.0,
    stop: Stop | None = None,
    tick_s: float = 0.0,
) -> AsyncIterator[Event]:
    """The events of `job_frames`, one by one (a coalesced token frame is one event)."""
    frames = job_frames(job_id, after_seq, store, hub, poll_s=poll_s, stop=stop, tick_s=tick_s)
    async for batch in frames:
        for frame in batch:
            yield frame.event
