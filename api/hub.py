"""One pub/sub connection per API process, fanned out to every SSE client in the process.

A Redis connection in subscribe mode can do nothing else, and one per client would exhaust
Redis and this process's file descriptors; so the hub holds one connection and subscribes it to
a job's channel while at least one local client follows that job (the first subscribes, the
last unsubscribes). Each message is decoded and encoded as SSE bytes once (api.relay.encode)
and the same frame goes to every listener of the job. Each listener has a bounded outbox: a
client too slow to drain it is marked slow and dropped (it can reconnect with Last-Event-ID
and replay from the backlog), so it never stalls the reader or the others.
A message it cannot decode is logged, counted and dropped, and whatever else goes wrong,
the hub logs it and subscribes again: it never stops while the process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from api.relay import Frame, Outbox, encode
from shared import redis_keys
from shared.job_store import decode_published

logger = logging.getLogger(__name__)

# Subscribed for as long as the hub runs, so its connection is in subscribe mode (and read)
# even while no job is followed; nothing publishes on it.
CONTROL_CHANNEL = f"{redis_keys.PREFIX}:hub"
# How long a new listener waits for Redis to confirm its job's subscription; past it the
# stream starts anyway and fills any gap from the backlog.
CONFIRM_TIMEOUT_S = 1.0


class Listener:
    """The live frames of one job for one client."""

    def __init__(self, job_id: str, outbox: Outbox, on_slow: Callable[[], None] | None = None):
        self.job_id = job_id
        self.outbox = outbox
        self.on_slow = on_slow
        self._waiter: asyncio.Future[None] | None = None

    @property
    def overflowed(self) -> bool:
        return self.outbox.slow

    def offer(self, frame: Frame, now: float) -> None:
        """Queue `frame`; a listener that just became slow is told once (`on_slow`)."""
        was_slow = self.outbox.slow
        self.outbox.push(frame, now)
        if self.outbox.slow and not was_slow and self.on_slow is not None:
            self.on_slow()
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> list[Frame]:
        return self.outbox.take()

    async def wait(self, timeout: float) -> None:
        """Until a frame is queued, the listener is slow or woken, or `timeout` passes."""
        if len(self.outbox) or self.outbox.slow:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class EventHub:
    """Routes live job events from Redis pub/sub to in-process listeners."""

    def __init__(self, client: aredis.Redis, *, buffer: int = 1000, max_lag_s: float = 10.0):
        self._redis = client
        self._buffer = buffer
        self._max_lag_s = max_lag_s
        self._listeners: dict[str, set[Listener]] = {}
        self._pubsub: Any = None  # redis-py's PubSub of the current connection
        self._active: set[str] = set()  # jobs subscribed on the current connection
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self.bad_messages = 0
        self.subscribe_commands = 0  # SUBSCRIBEs sent for jobs (one per job, not per client)

    @property
    def listener_count(self) -> int:
        return sum(len(group) for group in self._listeners.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            # A cancel can be swallowed inside redis-py's read timeout (Python 3.11's
            # wait_for); the flag ends the loop at its next read timeout anyway.
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=3.0)

    @contextlib.asynccontextmanager
    async def listen(
        self, job_id: str, on_slow: Callable[[], None] | None = None
    ) -> AsyncIterator[Listener]:
        """Register a listener for the duration of the block; on entry the job's channel is
        subscribed (or the hub is reconnecting and will subscribe it)."""
        listener = Listener(job_id, Outbox(self._buffer, self._max_lag_s), on_slow)
        self._listeners.setdefault(job_id, set()).add(listener)
        try:
            await self._sync(job_id)
            confirmed = self._confirmed.get(job_id)
            if confirmed is not None and not confirmed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(confirmed.wait(), CONFIRM_TIMEOUT_S)
            yield listener
        finally:
            group = self._listeners.get(job_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[job_id]
                    await self._sync(job_id)

    async def _sync(self, job_id: str) -> None:
        """Subscribe or unsubscribe the job's channel so it matches whether anyone listens;
        serialized, so a leave and a join of the same job cannot cross on the wire."""
        async with self._lock:
            pubsub = self._pubsub
            wanted = job_id in self._listeners
            if pubsub is None or wanted == (job_id in self._active):
                return
            channel = redis_keys.events_channel(job_id)
            try:
                if wanted:
                    self._active.add(job_id)
                    self._confirmed[job_id] = asyncio.Event()
                    self.subscribe_commands += 1
                    await pubsub.subscribe(channel)
                else:
                    self._active.discard(job_id)
                    self._confirmed.pop(job_id, None)
                    await pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                # The reader notices the broken connection and resubscribes what is wanted.
                logger.warning("event hub could not (un)subscribe", extra={"error": str(exc)})

    async def _run(self) -> None:
        """Listen until cancelled; whatever goes wrong, log it, wait a little and listen again."""
        backoff = 0.1
        while not self._closing:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                logger.warning("event hub lost Redis, reconnecting", extra={"error": str(exc)})
            except Exception:  # noqa: BLE001 - the hub must never stop; streams fall back to polling meanwhile
                logger.exception("event hub failed; restarting it")
            self.subscribed.clear()
            if self._closing:
                return
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            async with self._lock:
                jobs = set(self._listeners)
                self._confirmed = {job: asyncio.Event() for job in jobs}
                channels = [redis_keys.events_channel(job) for job in sorted(jobs)]
                self.subscribe_commands += len(channels)
                await pubsub.subscribe(CONTROL_CHANNEL, *channels)
                self._pubsub, self._active = pubsub, jobs
            self.subscribed.set()
            while not self._closing:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "message":
                    self._dispatch(message["channel"], message["data"])
                elif kind == "subscribe":
                    confirmed = self._confirmed.get(_job_of(message["channel"]))
                    if confirmed is not None:
                        confirmed.set()
        finally:
            self._pubsub, self._active = None, set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), timeout=1.0)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        group = self._listeners.get(redis_keys.job_id_from_channel(name))
        if not group:
            return
        try:
            frame = encode(decode_published(data))
        except (ValueError, ValidationError) as exc:
            # Listeners fill the gap from the backlog on their next event or poll.
            self.bad_messages += 1
            logger.warning(
                "event hub dropped a message it cannot decode",
                extra={"channel": name, "error": str(exc)[:200]},
            )
            return
        now = time.monotonic()
        for listener in tuple(group):
            listener.offer(frame, now)


def _job_of(channel: bytes | str) -> str:
    name = channel.decode() if isinstance(channel, bytes) else channel
    return redis_keys.job_id_from_channel(name)
