"""A counting semaphore in Redis so that all workers together never send llama-server more
requests than it has slots (`total_slots` from `/props`); extra jobs wait for a free slot.

Holders take a lease stamped with Redis' own clock and renew it while they stream; a holder
that dies stops renewing and its lease expires, so a killed worker cannot leak a slot.
"""

from __future__ import annotations

import time
import uuid
from types import TracebackType

import redis

from shared import redis_keys
from shared.errors import LlmError

_ACQUIRE_LUA = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or
   redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""


class LlmSlot:
    """`with LlmSlot(...)`: hold one of `limit` LLM slots for the duration of the block."""

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        *,
        lease_s: float = 15.0,
        wait_s: float = 600.0,
        poll_s: float = 0.1,
    ):
        self.client = client
        self.limit = max(1, limit)
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.holder = uuid.uuid4().hex
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._renewed = 0.0

    def try_acquire(self) -> bool:
        ok = bool(
            self._acquire(
                keys=[redis_keys.LLM_SLOTS], args=[self.holder, int(self.lease_s), self.limit]
            )
        )
        if ok:
            self._renewed = time.monotonic()
        return ok

    def renew(self) -> None:
        """Extend the lease; cheap to call per token (renews at most every lease/6 seconds)."""
        if time.monotonic() - self._renewed > self.lease_s / 6:
            self.try_acquire()

    def release(self) -> None:
        self.client.zrem(redis_keys.LLM_SLOTS, self.holder)

    def __enter__(self) -> LlmSlot:
        deadline = time.monotonic() + self.wait_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise LlmError(f"no free LLM slot within {self.wait_s:g} s")
            time.sleep(self.poll_s)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
