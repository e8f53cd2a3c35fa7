"""End a stream whose key stops being accepted: revoked, rescoped, or the key file unusable.

Every stream a key holds open (a job's events, `POST /v1/analyze/stream`, a backfill's events)
checks its key at least every `api.auth.FILE_RECHECK_S` (the key file's re-read interval), so
it ends within about one re-read of the change, with an error that says why.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import anyio

from api import auth
from api.access import Principal
from api.auth import KeyRing

# How often an open stream checks its key, at least (the file is re-read every FILE_RECHECK_S).
KEY_WATCH_MIN_S = 0.2
REVOKED = ("key_revoked", "the API key of this stream was revoked")
KEYS_UNAVAILABLE = ("keys_unavailable", "the API's key file cannot be used; this stream ends")


def access_lost(keys: KeyRing, principal: Principal) -> tuple[str, str] | None:
    """None while the key of `principal` is accepted with the same scope; else the (code,
    message) the stream ends with."""
    if keys.still_valid(principal):
        return None
    return KEYS_UNAVAILABLE if keys.problem() is not None else REVOKED


class KeyWatch:
    """While entered, checks the key of `principal`; once it is no longer accepted, `lost`
    says why and `stop` is set (a stream waits on it)."""

    def __init__(self, keys: KeyRing, principal: Principal, stop: anyio.Event | None = None):
        self.keys = keys
        self.principal = principal
        self.stop = stop or anyio.Event()
        self.lost: tuple[str, str] | None = None
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while (lost := access_lost(self.keys, self.principal)) is None:
            await asyncio.sleep(max(auth.FILE_RECHECK_S, KEY_WATCH_MIN_S))
        self.lost = lost
        self.stop.set()

    async def __aenter__(self) -> KeyWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
