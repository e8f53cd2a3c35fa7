"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import StateDep
from shared import __version__, redis_keys

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (it does not look at Redis or workers)."""
    return {"status": "ok", "version": __version__}


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    """Ready when Redis answers and at least one worker has sent a heartbeat recently."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=2.0)
        checks["redis"] = "ok"
        workers = 0
        async for _ in state.redis.scan_iter(match=redis_keys.WORKER_HEARTBEAT_PATTERN, count=100):
            workers += 1
        checks["workers"] = str(workers)
        ok = workers > 0
    except (RedisError, OSError, TimeoutError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
        ok = False
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
