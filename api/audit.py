"""The audit trail: one JSON log line per submission, cancel and denied request, and a
counter by action and outcome. Never the key, never log content: the key's name and id,
the action, the namespace, the job id, the outcome (the trace id comes with the log line)."""

from __future__ import annotations

import contextlib
import logging

import redis.asyncio as aredis
from redis.exceptions import RedisError

from api.access import Principal
from shared import metrics, redis_keys

logger = logging.getLogger("log_analyzer.audit")


async def audit(
    client: aredis.Redis,
    principal: Principal,
    action: str,
    outcome: str,
    *,
    namespace: str | None = None,
    job_id: str | None = None,
    reason: str | None = None,
) -> None:
    """Log the decision and count it (a Redis error never fails the request)."""
    logger.info(
        "audit %s %s",
        action,
        outcome,
        extra={
            "audit": True,
            "key_name": principal.name,
            "key_id": principal.id,
            "role": principal.role.value,
            "action": action,
            "outcome": outcome,
            "namespace": namespace,
            "job_id": job_id,
            "reason": reason,
        },
    )
    field = metrics.counter_field(metrics.ACCESS_DECISIONS, action=action, outcome=outcome)
    with contextlib.suppress(RedisError, OSError):
        await client.hincrbyfloat(redis_keys.METRICS, field, 1)
