"""Findings with a stable identity in Redis: one hash per namespace, template fingerprint →
Finding. Workers add a sighting when a job succeeds; the API lists them."""

from __future__ import annotations

from datetime import datetime

import redis
import redis.asyncio as aredis
from redis.exceptions import WatchError
from redis.typing import EncodableT

from shared import redis_keys
from shared.backfill import absorb
from shared.schemas import AnalysisRequest, JobResult
from shared.schemas.backfills import Finding, Sighting

MAX_WATCH_RETRIES = 20


def record_sightings(
    client: redis.Redis, job_id: str, request: AnalysisRequest, result: JobResult, ttl_s: int
) -> list[Finding]:
    """Add this job's probable causes to its namespace's findings; the ones that are new.

    Optimistic (WATCH/MULTI): workers of other jobs may update the same namespace at once.
    A job counted before (a redelivered stage) adds nothing.
    """
    causes = result.findings.probable_causes if result.findings else []
    if not causes:
        return []
    namespace = request.filters.namespace
    key = redis_keys.findings(namespace)
    window = request.time_range
    for _ in range(MAX_WATCH_RETRIES):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]  # unannotated in redis-py
                stored = pipe.hmget(key, [c.fingerprint for c in causes])
                updates: dict[EncodableT, EncodableT] = {}
                new: list[Finding] = []
                for cause, raw in zip(causes, stored, strict=True):
                    existing = Finding.model_validate_json(raw) if raw else None
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
                    if finding is not None:
                        updates[cause.fingerprint] = finding.model_dump_json()
                        if existing is None:
                            new.append(finding)
                pipe.multi()
                if updates:
                    pipe.hset(key, mapping=updates)
                    pipe.expire(key, ttl_s)
                    pipe.sadd(redis_keys.FINDINGS_NAMESPACES, namespace)
                pipe.execute()
                return new
            except WatchError:
                continue
    raise RuntimeError(f"findings of {namespace} kept changing; sighting of {job_id} dropped")


async def list_findings(
    client: aredis.Redis, namespaces: list[str], since: datetime | None
) -> list[Finding]:
    """The findings of `namespaces` last seen at or after `since`, most recent first."""
    found: list[Finding] = []
    for namespace in namespaces:
        for raw in (await client.hgetall(redis_keys.findings(namespace))).values():
            finding = Finding.model_validate_json(raw)
            if since is None or finding.last_seen >= since:
                found.append(finding)
    found.sort(key=lambda f: (f.last_seen, f.sightings), reverse=True)
    return found


async def known_namespaces(client: aredis.Redis) -> list[str]:
    """Namespaces that have findings (their hashes may since have expired)."""
    members = await client.smembers(redis_keys.FINDINGS_NAMESPACES)
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
