"""A key's data stored before tenants (its job history, its backfills) moves into the tenant
of the key that owns it, when that key first reads it; nobody else ever reads it. (Findings,
shared by a namespace's keys, move to the default tenant: `shared.findings_store`.)

Each move is one transaction or one RENAMENX, so two readers at once move it once.
"""

from __future__ import annotations

import re

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from api.limits import HISTORY_KEPT
from shared import redis_keys

# Backfill ids are uuid4 hex: nothing else under the old `la:backfill:` prefix is one.
_BACKFILL_ID = re.compile(r"[0-9a-f]{32}")


async def adopt_history(client: aredis.Redis, tenant: str, principal: str, ttl_s: int) -> None:
    """Merge the key's history of before tenants into its history in `tenant`."""
    legacy = redis_keys.legacy_principal_history(principal)
    if not await client.exists(legacy):
        return
    target = redis_keys.principal_history(tenant, principal)
    async with client.pipeline(transaction=True) as pipe:
        pipe.zunionstore(target, [target, legacy], aggregate="MAX")
        pipe.zremrangebyrank(target, 0, -HISTORY_KEPT - 1)
        pipe.expire(target, ttl_s)
        pipe.delete(legacy)
        await pipe.execute()


async def adopt_backfill(
    client: aredis.Redis, tenant: str, principal: str, backfill_id: str
) -> None:
    """Move the backfill of before tenants into `tenant` when `principal` created it."""
    if not _BACKFILL_ID.fullmatch(backfill_id):
        return
    legacy = redis_keys.legacy_backfill(backfill_id)
    owner = await client.hget(legacy, "owner")
    if owner is None or (owner.decode() if isinstance(owner, bytes) else owner) != principal:
        return
    try:
        await client.renamenx(legacy, redis_keys.backfill(tenant, backfill_id))
    except ResponseError:
        pass  # moved by a concurrent read of the same key
