"""FastAPI dependencies: the per-process state built at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aredis
from fastapi import Depends, Request

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


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.la
    return state


StateDep = Annotated[AppState, Depends(get_state)]
