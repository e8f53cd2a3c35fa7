"""FastAPI dependencies: the per-process state built at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import redis.asyncio as aredis
from fastapi import Depends, Request

if TYPE_CHECKING:
    from api.auth import KeyRing
    from api.limits import StreamLimiter

from api.hub import EventHub
from shared.job_store import AsyncJobStore
from shared.settings import Settings


@dataclass
class AppState:
    settings: Settings
    redis: aredis.Redis
    store: AsyncJobStore
    hub: EventHub
    enqueue: Callable[[str], None]
    enqueue_backfill: Callable[[str, str], None]  # (job id, backfill id) on the backfill queue
    keys: KeyRing
    streams: StreamLimiter


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.la
    return state


StateDep = Annotated[AppState, Depends(get_state)]
