"""The backlog/live merge: no gap, no duplicate, ends after done, drops slow clients."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import pytest

from api.hub import EventHub, Listener
from api.relay import encode
from api.streaming import job_events
from shared import redis_keys
from shared.errors import SlowClientError, StreamStoppedError
from shared.schemas import Event, EventType


def ev(seq: int, kind: EventType = EventType.TOKEN) -> Event:
    return Event(seq=seq, type=kind, job_id="j", ts=time.time(), data={"text": str(seq)})


class FakeStore:
    """The backlog: what the events stream in Redis holds."""

    def __init__(self, events: list[Event]):
        self.events = events
        self.reads = 0
        self.record = True  # the job's record is there (a restart without AOF loses it)

    async def events_after(self, job_id: str, seq: int, *, until: int | None = None) -> list[Event]:
        self.reads += 1
        return [e for e in self.events if e.seq > seq and (until is None or e.seq <= until)]

    async def exists(self, job_id: str) -> bool:
        return self.record


def make_hub(buffer: int = 100) -> EventHub:
    return EventHub(client=None, buffer=buffer)  # type: ignore[arg-type]  # never started


async def drain(gen: Any) -> list[int]:
    """The seqs the stream covered: a coalesced token event stands for first_seq..seq."""
    return [s async for e in gen for s in range(e.data.get("first_seq", e.seq), e.seq + 1)]


def publish(hub: EventHub, event: Event) -> None:
    for listener in hub._listeners.get("j", ()):
        listener.offer(encode(event), time.monotonic())


async def next_live(listener: Listener) -> Event:
    await listener.wait(5)
    return listener.take()[0].event


def test_backlog_then_live_without_duplicates() -> None:
    async def scenario() -> list[int]:
        hub = make_hub()
        store = FakeStore([ev(1), ev(2), ev(3)])
        gen = job_events("j", 0, store, hub, poll_s=5)  # type: ignore[arg-type]
        task = asyncio.create_task(drain(gen))
        await asyncio.sleep(0.01)
        # 3 was both stored and published (it arrived after we subscribed): sent once.
        for seq in (3, 4, 5):
            store.events.append(ev(seq)) if seq > 3 else None
            publish(hub, ev(seq))
        store.events.append(ev(6, EventType.DONE))
        publish(hub, ev(6, EventType.DONE))
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 6]


def test_gap_in_live_tail_is_filled_from_backlog() -> None:
    async def scenario() -> list[int]:
        hub = make_hub()
        store = FakeStore([ev(1)])
        task = asyncio.create_task(drain(job_events("j", 0, store, hub, poll_s=5)))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        store.events += [ev(2), ev(3), ev(4), ev(5, EventType.DONE)]
        publish(hub, ev(4))  # 2 and 3 were lost while the hub reconnected
        publish(hub, ev(5, EventType.DONE))
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5]


def test_silence_polls_backlog_and_catches_lost_done() -> None:
    async def scenario() -> list[int]:
        hub = make_hub()
        store = FakeStore([ev(1)])
        task = asyncio.create_task(drain(job_events("j", 0, store, hub, poll_s=0.05)))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        store.events.append(ev(2, EventType.DONE))  # stored, never published
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(scenario()) == [1, 2]


def test_a_job_whose_record_is_gone_ends_with_job_lost_then_done() -> None:
    async def scenario() -> list[Event]:
        store = FakeStore([ev(1), ev(2)])
        store.record = False  # Redis restarted without persistence: record and backlog gone
        return [e async for e in job_events("j", 0, store, make_hub(), poll_s=0.05)]  # type: ignore[arg-type]

    events = asyncio.run(asyncio.wait_for(scenario(), 2))
    assert [(e.seq, e.type) for e in events[2:]] == [(3, EventType.ERROR), (4, EventType.DONE)]
    assert events[2].data["code"] == "job_lost"
    assert events[3].data == {"status": "failed"}


def test_resume_after_last_event_id() -> None:
    async def scenario() -> list[int]:
        store = FakeStore([ev(i) for i in range(1, 10)] + [ev(10, EventType.DONE)])
        return await drain(job_events("j", 6, store, make_hub(), poll_s=5))  # type: ignore[arg-type]

    assert asyncio.run(scenario()) == [7, 8, 9, 10]


def test_slow_client_is_dropped_not_blocking() -> None:
    async def scenario() -> None:
        hub = make_hub(buffer=3)
        store = FakeStore([])
        gen = job_events("j", 0, store, hub, poll_s=5)  # type: ignore[arg-type]
        first: asyncio.Task[Event] = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.01)
        for seq in range(1, 10):  # the reader never blocks, whatever the client does
            publish(hub, ev(seq))
        with pytest.raises(SlowClientError):
            await first
        assert hub.listener_count == 0

    asyncio.run(scenario())


def test_shutdown_ends_a_waiting_stream_at_once() -> None:
    async def scenario() -> None:
        hub = make_hub()
        stop = asyncio.Event()
        gen = job_events("j", 0, FakeStore([ev(1)]), hub, poll_s=30, stop=stop)  # type: ignore[arg-type]
        assert (await gen.__anext__()).seq == 1
        waiting: asyncio.Task[Event] = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.01)
        stop.set()
        with pytest.raises(StreamStoppedError):
            await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


# --- The hub on a (fake) Redis: it survives what it cannot decode, and its own failures -------


async def started_hub() -> tuple[EventHub, Any]:
    client = fakeredis.FakeAsyncRedis()
    hub = EventHub(client, buffer=10)
    await hub.start()
    await asyncio.wait_for(hub.subscribed.wait(), 5)
    return hub, client


def published(event: Event) -> str:
    return f"{event.seq}|{event.model_dump_json(exclude={'seq'})}"


def test_hub_drops_and_counts_a_message_it_cannot_decode_and_goes_on() -> None:
    async def scenario() -> tuple[list[int], int, bool]:
        hub, client = await started_hub()
        async with hub.listen("j") as listener:
            await client.publish(redis_keys.events_channel("j"), "not|an event")
            await client.publish(redis_keys.events_channel("j"), "garbage")
            await client.publish(redis_keys.events_channel("j"), published(ev(1)))
            event = await asyncio.wait_for(next_live(listener), 5)
        alive = hub._task is not None and not hub._task.done()
        await hub.stop()
        return [event.seq], hub.bad_messages, alive

    seqs, bad, alive = asyncio.run(scenario())
    assert seqs == [1] and bad == 2 and alive


def test_hub_restarts_after_an_unexpected_error() -> None:
    async def scenario() -> tuple[int, int]:
        hub, client = await started_hub()
        original = hub._dispatch
        failures = iter([RuntimeError("a bug in dispatch")])

        def flaky(channel: bytes | str, data: bytes | str) -> None:
            error = next(failures, None)
            if error is not None:
                raise error
            original(channel, data)

        hub._dispatch = flaky  # type: ignore[method-assign]
        async with hub.listen("j") as listener:
            await client.publish(redis_keys.events_channel("j"), published(ev(1)))
            await asyncio.sleep(0.05)
            await asyncio.wait_for(hub.subscribed.wait(), 5)
            await asyncio.sleep(0.05)
            await client.publish(redis_keys.events_channel("j"), published(ev(2)))
            event = await asyncio.wait_for(next_live(listener), 5)
        await hub.stop()
        return event.seq, hub.reconnects

    seq, reconnects = asyncio.run(scenario())
    assert seq == 2 and reconnects == 1
