"""Findings with a stable identity in Redis: per tenant, one hash per namespace, template
fingerprint → Finding. Workers add a sighting when a job succeeds; the API lists them.

Findings stored before tenants (`la:findings:<namespace>`) belong to the default tenant:
`migrate_legacy_findings` moves them there, namespace by namespace, each move one transaction
(the old hash and its index entry go with it), so running it again, or on two API processes
at once, moves nothing twice. The API runs it at start and before every read of findings,
which also catches what a worker of the previous version writes during a rolling upgrade;
a worker recording a finding of the default tenant moves that finding's old record itself,
so it is never announced as new twice.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

import redis
import redis.asyncio as aredis
from redis.exceptions import WatchError
from redis.typing import EncodableT

from shared import redis_keys
from shared.backfill import absorb, merge_findings
from shared.schemas import AnalysisRequest, JobResult
from shared.schemas.backfills import Finding, Sighting

MAX_WATCH_RETRIES = 20
logger = logging.getLogger(__name__)


def record_sightings(
    client: redis.Redis,
    tenant: str,
    job_id: str,
    request: AnalysisRequest,
    result: JobResult,
    ttl_s: int,
    *,
    adopt_legacy: bool = False,
) -> list[Finding]:
    """Add this job's probable causes to its tenant's findings of its namespace; the ones
    that are new.

    Optimistic (WATCH/MULTI): workers of other jobs may update the same namespace at once.
    A job counted before (a redelivered stage) adds nothing. With `adopt_legacy` (a job of
    the default tenant), a cause also stored the way of before tenants, not yet moved by the
    API, is merged and moved with it: it is not new, and no webhook hears of it twice.
    """
    causes = result.findings.probable_causes if result.findings else []
    if not causes:
        return []
    namespace = request.filters.namespace
    key = redis_keys.findings(tenant, namespace)
    legacy = redis_keys.legacy_findings(namespace)
    fingerprints = [c.fingerprint for c in causes]
    window = request.time_range
    for _ in range(MAX_WATCH_RETRIES):
        with client.pipeline(transaction=True) as pipe:
            try:
                watched = (key, legacy) if adopt_legacy else (key,)
                pipe.watch(*watched)  # type: ignore[no-untyped-call]  # unannotated in redis-py
                stored = pipe.hmget(key, fingerprints)
                old = pipe.hmget(legacy, fingerprints) if adopt_legacy else [None] * len(causes)
                updates: dict[EncodableT, EncodableT] = {}
                new: list[Finding] = []
                for cause, raw, old_raw in zip(causes, stored, old, strict=True):
                    existing = _one_finding(raw, old_raw)
                    finding = absorb(
                        existing,
                        namespace=namespace,
                        fingerprint=cause.fingerprint,
                        template=cause.template,
                        level=cause.level,
                        first_seen=cause.first_seen,
                        count=cause.count,
                        sighting=Sighting(
                            job_id=job_id, start=window.start, end=window.end, count=cause.count
                        ),
                    )
                    if finding is None and old_raw is not None:
                        finding = existing  # counted before; still to move out of `legacy`
                    if finding is not None:
                        updates[cause.fingerprint] = finding.model_dump_json()
                        if existing is None:
                            new.append(finding)
                pipe.multi()
                if updates:
                    pipe.hset(key, mapping=updates)
                    pipe.expire(key, ttl_s)
                    pipe.sadd(redis_keys.findings_namespaces(tenant), namespace)
                moved = [fp for fp, o in zip(fingerprints, old, strict=True) if o is not None]
                if moved:
                    pipe.hdel(legacy, *moved)
                pipe.execute()
                return new
            except WatchError:
                continue
    raise RuntimeError(f"findings of {namespace} kept changing; sighting of {job_id} dropped")


async def list_findings(
    client: aredis.Redis, tenant: str, namespaces: list[str], since: datetime | None
) -> list[Finding]:
    """The tenant's findings of `namespaces` last seen at or after `since` (aware), most
    recent first."""
    found: list[Finding] = []
    for namespace in namespaces:
        for raw in (await client.hgetall(redis_keys.findings(tenant, namespace))).values():
            finding = Finding.model_validate_json(raw)
            if since is None or finding.last_seen >= since:
                found.append(finding)
    found.sort(key=lambda f: (f.last_seen, f.sightings), reverse=True)
    return found


async def known_namespaces(client: aredis.Redis, tenant: str) -> list[str]:
    """The tenant's namespaces that have findings (their hashes may since have expired)."""
    members = await client.smembers(redis_keys.findings_namespaces(tenant))
    return sorted(_text(m) for m in members)


async def migrate_legacy_findings(client: aredis.Redis, tenant: str, ttl_s: int) -> int:
    """Move the findings stored before tenants into `tenant`'s (the default tenant); how many
    namespaces moved. A finding already in both places (a worker of each version saw it) is
    merged; the moved hash keeps the longer of the two lifetimes."""
    moved = 0
    for member in await client.smembers(redis_keys.LEGACY_FINDINGS_NAMESPACES):
        moved += await _move_namespace(client, tenant, _text(member), ttl_s)
    if moved:
        logger.info("findings stored before tenants moved", extra={"namespaces": moved})
    return moved


async def _move_namespace(client: aredis.Redis, tenant: str, namespace: str, ttl_s: int) -> int:
    legacy = redis_keys.legacy_findings(namespace)
    target = redis_keys.findings(tenant, namespace)
    for _ in range(MAX_WATCH_RETRIES):
        async with client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(legacy, target)
                old = await pipe.hgetall(legacy)
                fingerprints = list(old)
                current = await pipe.hmget(target, fingerprints) if fingerprints else []
                lifetimes = (await pipe.ttl(legacy), await pipe.ttl(target))
                pipe.multi()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                if old:
                    merged: dict[EncodableT, EncodableT] = {}
                    for fingerprint, raw, now in zip(
                        fingerprints, old.values(), current, strict=True
                    ):
                        finding = Finding.model_validate_json(raw)
                        if now is not None:
                            finding = merge_findings(Finding.model_validate_json(now), finding)
                        merged[fingerprint] = finding.model_dump_json()
                    pipe.hset(target, mapping=merged)
                    pipe.expire(target, _lifetime(*lifetimes, ttl_s))
                    pipe.sadd(redis_keys.findings_namespaces(tenant), namespace)
                pipe.delete(legacy)
                pipe.srem(redis_keys.LEGACY_FINDINGS_NAMESPACES, namespace)
                await pipe.execute()
                return 1 if old else 0
            except WatchError:
                continue
    raise RuntimeError(f"findings of {namespace} kept changing; not moved to tenant {tenant}")


def _one_finding(raw: bytes | str | None, old_raw: bytes | str | None) -> Finding | None:
    """The finding stored per tenant, merged with its record of before tenants if any."""
    found = [Finding.model_validate_json(r) for r in (raw, old_raw) if r is not None]
    return functools.reduce(merge_findings, found) if found else None


def _lifetime(old: int, current: int, ttl_s: int) -> int:
    """The longer remaining lifetime of the two hashes (an old one that never expires: a
    full one from now)."""
    return max(ttl_s if old == -1 else old, current)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
