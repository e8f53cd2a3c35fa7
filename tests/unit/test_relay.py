"""The relay: one subscription and one encoding per job, token coalescing, slow readers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import pytest

from api.hub import EventHub
from api.relay import Frame, Outbox, coalesce, encode
from api.streaming import job_frames
from shared import redis_keys
from shared.errors import SlowClientError
from shared.schemas import Event, EventType


def ev(seq: int, kind: EventType = EventType.TOKEN, attempt: int = 0) -> Event:
    data: dict[str, Any] = {"text": f"<{seq}>"} if kind is EventType.TOKEN else {}
    if kind is EventType.STAGE:
        data = {"stage": "call_llm", "state": "started"}
    return Event(seq=seq, type=kind, job_id="j", attempt=attempt, ts=time.time(), data=data)


def published(event: Event) -> str:
    return f"{event.seq}|{event.model_dump_json(exclude={'seq'})}"


def covered(frames: list[Frame]) -> list[int]:
    return [s for f in frames for s in range(f.first_seq, f.seq + 1)]


# --- coalescing (pure) -----------------------------------------------------------------------


def test_coalesce_merges_only_runs_of_tokens_and_keeps_the_order() -> None:
    frames = [encode(e) for e in (ev(1), ev(2), ev(3, EventType.STAGE), ev(4), ev(5), ev(6))]
    frames.append(encode(ev(7, EventType.DONE)))
    out = coalesce(frames)
    assert [(f.event.type, f.first_seq, f.seq) for f in out] == [
        (EventType.TOKEN, 1, 2),
        (EventType.STAGE, 3, 3),
        (EventType.TOKEN, 4, 6),
        (EventType.DONE, 7, 7),
    ]
    assert out[0].event.data == {"text": "<1><2>", "first_seq": 1}
    assert out[2].event.data == {"text": "<4><5><6>", "first_seq": 4}
    assert out[1] is frames[2] and out[3] is frames[6]  # non-token frames pass untouched
    # The merged frame is a well-formed SSE event with the id of its last token.
    assert out[2].sse.startswith(b"id: 6\r\nevent: token\r\ndata: {")
    assert b'"text":"<4><5><6>"' in out[2].sse and out[2].sse.endswith(b"\r\n\r\n")


def test_coalesce_never_merges_across_attempts_and_leaves_a_lone_token_alone() -> None:
    frames = [encode(ev(1, attempt=0)), encode(ev(2, attempt=1)), encode(ev(3, attempt=1))]
    out = coalesce(frames)
    assert [(f.first_seq, f.seq, f.event.attempt) for f in out] == [(1, 1, 0), (2, 3, 1)]
    assert out[0] is frames[0]


def test_outbox_is_slow_past_its_length_or_its_lag() -> None:
    by_length = Outbox(max_frames=2, max_lag_s=60)
    assert by_length.push(encode(ev(1)), 0.0) and by_length.push(encode(ev(2)), 0.0)
    assert not by_length.push(encode(ev(3)), 0.0) and by_length.slow
    assert len(by_length) == 0  # nothing is kept for a dropped subscriber

    by_lag = Outbox(max_frames=100, max_lag_s=1.0)
    assert by_lag.push(encode(ev(1)), 10.0) and by_lag.push(encode(ev(2)), 10.5)
    assert not by_lag.push(encode(ev(3)), 11.5) and by_lag.slow

    drained = Outbox(max_frames=100, max_lag_s=1.0)
    drained.push(encode(ev(1)), 10.0)
    assert [f.seq for f in drained.take()] == [1]
    assert drained.push(encode(ev(2)), 20.0) and not drained.slow  # the clock restarts


# --- the hub on a (fake) Redis ----------------------------------------------------------------


async def numsub(client: Any, job_id: str) -> int:
    [(_, count)] = await client.pubsub_numsub(redis_keys.events_channel(job_id))
    return int(count)


def test_hub_subscribes_once_per_job_and_encodes_each_event_once() -> None:
    async def scenario() -> None:
        client = fakeredis.FakeAsyncRedis()
        hub = EventHub(client, buffer=10)
        await hub.start()
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        async with (
            hub.listen("j") as a,
            hub.listen("j") as b,
            hub.listen("j") as c,
            hub.listen("k") as other,
        ):
            assert hub.subscribe_commands == 2
            assert await numsub(client, "j") == 1 and await numsub(client, "k") == 1
            await client.publish(redis_keys.events_channel("j"), published(ev(1)))
            for listener in (a, b, c):
                await asyncio.wait_for(listener.wait(5), 5)
            got = [listener.take() for listener in (a, b, c)]
            assert [len(g) for g in got] == [1, 1, 1]
            # One decode and one encoding, shared: the very same frame object.
            assert got[0][0] is got[1][0] is got[2][0]
            assert len(other.take()) == 0
        await asyncio.sleep(0.05)
        assert await numsub(client, "j") == 0 and await numsub(client, "k") == 0
        # A job followed again is subscribed again.
        async with hub.listen("j"):
            assert await numsub(client, "j") == 1
        await hub.stop()

    asyncio.run(scenario())


class FakeStore:
    async def events_after(self, job_id: str, seq: int, *, until: int | None = None) -> list[Event]:
        return []

    async def exists(self, job_id: str) -> bool:
        return True


def test_a_slow_reader_is_dropped_while_a_fast_one_gets_every_event() -> None:
    async def scenario() -> tuple[list[int], int]:
        client = fakeredis.FakeAsyncRedis()
        hub = EventHub(client, buffer=5)
        await hub.start()
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        store: Any = FakeStore()
        told: list[str] = []
        fast_seen: list[Frame] = []

        async def fast() -> None:
            async for batch in job_frames("j", 0, store, hub, poll_s=5):
                fast_seen.extend(batch)

        async def slow() -> None:
            frames = job_frames("j", 0, store, hub, poll_s=5, on_slow=lambda: told.append("x"))
            async for _ in frames:
                await asyncio.sleep(3600)  # a client that stopped reading

        fast_task = asyncio.create_task(fast())
        slow_task = asyncio.create_task(slow())
        while hub.listener_count < 2:
            await asyncio.sleep(0.01)
        channel = redis_keys.events_channel("j")
        for seq in range(1, 50):
            await client.publish(channel, published(ev(seq)))
            await asyncio.sleep(0.002)
        await client.publish(channel, published(ev(50, EventType.DONE)))
        await asyncio.wait_for(fast_task, 5)
        slow_task.cancel()
        with pytest.raises((asyncio.CancelledError, SlowClientError)):
            await slow_task
        await hub.stop()
        return covered(fast_seen), len(told)

    seqs, told = asyncio.run(scenario())
    assert seqs == list(range(1, 51))
    assert told == 1  # the slow one was told once, when it overflowed


def test_a_slow_reader_that_reads_again_gets_slow_client_error() -> None:
    async def scenario() -> None:
        client = fakeredis.FakeAsyncRedis()
        hub = EventHub(client, buffer=3)
        await hub.start()
        await asyncio.wait_for(hub.subscribed.wait(), 5)
        frames = job_frames("j", 0, FakeStore(), hub, poll_s=5)  # type: ignore[arg-type]
        first = asyncio.ensure_future(frames.__anext__())
        while hub.listener_count < 1:
            await asyncio.sleep(0.01)
        await client.publish(redis_keys.events_channel("j"), published(ev(1)))
        assert covered(await asyncio.wait_for(first, 5)) == [1]
        for seq in range(2, 10):  # published while the client is not reading
            await client.publish(redis_keys.events_channel("j"), published(ev(seq)))
        await asyncio.sleep(0.1)
        with pytest.raises(SlowClientError):
            await asyncio.wait_for(frames.__anext__(), 5)
        assert hub.listener_count == 0
        await hub.stop()

    asyncio.run(scenario())
