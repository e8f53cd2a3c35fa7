"""One pub/sub connection per API process, fanned out to every SSE client in the process.

A Redis connection in subscribe mode can do nothing else, and one per client would exhaust
Redis and this process's file descriptors; so the hub pattern-subscribes once to every job's
channel and hands each message to the local listeners of that job. Each listener has a bounded
queue: a client too slow to drain it is marked overflowed and dropped (it can reconnect with
Last-Event-ID and replay from the backlog), so it never stalls the reader or the others.
A message it cannot decode is logged, counted and dropped, and whatever else goes wrong,
the hub logs it and subscribes again: it never stops while the process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

import redis.asyncio as aredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from shared import redis_keys
from shared.job_store import decode_published
from shared.schemas import Event

logger = logging.getLogger(__name__)


class Listener:
    """The live events of one job for one client."""

    def __init__(self, job_id: str, maxsize: int):
        self.job_id = job_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class EventHub:
    """Routes live job events from Redis pub/sub to in-process listeners."""

    def __init__(self, client: aredis.Redis, *, buffer: int = 1000):
        self._redis = client
        self._buffer = buffer
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self.bad_messages = 0

    @property
    def listener_count(self) -> int:
        return sum(len(group) for group in self._listeners.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[Listener]:
        """Register a listener for the duration of the block."""
        listener = Listener(job_id, self._buffer)
        self._listeners[job_id].add(listener)
        try:
            yield listener
        finally:
            group = self._listeners.get(job_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[job_id]

    async def _run(self) -> None:
        """Listen until cancelled; whatever goes wrong, log it, wait a little and listen again."""
        backoff = 0.1
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                logger.warning("event hub lost Redis, reconnecting", extra={"error": str(exc)})
            except Exception:  # noqa: BLE001 - the hub must never stop; streams fall back to polling meanwhile
                logger.exception("event hub failed; restarting it")
            self.subscribed.clear()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(redis_keys.EVENTS_CHANNEL_PATTERN)
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._dispatch(message["channel"], message["data"])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), timeout=1.0)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        group = self._listeners.get(redis_keys.job_id_from_channel(name))
        if not group:
            return
        try:
            event = decode_published(data)
        except (ValueError, ValidationError) as exc:
            # Listeners fill the gap from the backlog on their next event or poll.
            self.bad_messages += 1
            logger.warning(
                "event hub dropped a message it cannot decode",
                extra={"channel": name, "error": str(exc)[:200]},
            )
            return
        for listener in tuple(group):
            listener.offer(event)
