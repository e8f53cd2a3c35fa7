"""Findings in Redis per tenant (shared.findings_store), on fakeredis: a tenant's sightings
stay in its own keys, and findings stored before tenants move to the default tenant once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from shared import redis_keys
from shared.findings_store import list_findings, migrate_legacy_findings, record_sightings
from shared.schemas import AnalysisRequest, JobResult, Level
from shared.schemas.backfills import Finding, Sighting
from shared.tenancy import DEFAULT_TENANT
from tests.support.findings import result_with_cause
from tests.support.incident import job_request

T0 = datetime(2026, 11, 24, 6, tzinfo=UTC)
TTL = 3600


def finding(fingerprint: str, *jobs: str) -> Finding:
    recent = [
        Sighting(job_id=j, start=T0 + timedelta(hours=n), end=T0 + timedelta(hours=n + 1), count=3)
        for n, j in enumerate(jobs)
    ]
    return Finding(
        namespace="shop",
        fingerprint=fingerprint,
        template=f"template {fingerprint}",
        level=Level.ERROR,
        first_seen=T0,
        last_seen=recent[-1].end,
        sightings=len(recent),
        lines=3 * len(recent),
        recent=recent[::-1],
    )


def store_legacy(client: fakeredis.FakeRedis, namespace: str, *found: Finding) -> None:
    """Findings as the version before tenants wrote them."""
    key = redis_keys.legacy_findings(namespace)
    client.hset(key, mapping={f.fingerprint: f.model_dump_json() for f in found})
    client.expire(key, 600)
    client.sadd(redis_keys.LEGACY_FINDINGS_NAMESPACES, namespace)


def test_findings_stored_before_tenants_move_to_the_default_tenant_once() -> None:
    server = fakeredis.FakeServer()
    sync = fakeredis.FakeRedis(server=server)
    store_legacy(sync, "shop", finding("fp-disk", "old-1", "both"), finding("fp-dns", "old-2"))
    sync.sadd(redis_keys.LEGACY_FINDINGS_NAMESPACES, "expired-ns")  # its hash is gone
    # A worker of the new version saw fp-disk already (one sighting shared with the old one).
    target = redis_keys.findings(DEFAULT_TENANT, "shop")
    sync.hset(target, "fp-disk", finding("fp-disk", "both", "new-1").model_dump_json())

    async def run() -> tuple[int, int, list[Finding]]:
        client = fakeredis.FakeAsyncRedis(server=server)
        first = await migrate_legacy_findings(client, DEFAULT_TENANT, TTL)
        again = await migrate_legacy_findings(client, DEFAULT_TENANT, TTL)
        found = await list_findings(client, DEFAULT_TENANT, ["shop"], None)
        return first, again, found

    first, again, found = asyncio.run(run())
    assert (first, again) == (1, 0)
    by_fingerprint = {f.fingerprint: f for f in found}
    disk = by_fingerprint["fp-disk"]
    assert disk.sightings == 3 and {s.job_id for s in disk.recent} == {"old-1", "both", "new-1"}
    assert by_fingerprint["fp-dns"].sightings == 1
    assert not sync.exists(redis_keys.legacy_findings("shop"))
    assert not sync.exists(redis_keys.LEGACY_FINDINGS_NAMESPACES)
    assert sync.smembers(redis_keys.findings_namespaces(DEFAULT_TENANT)) == {b"shop"}
    assert 600 - 5 <= sync.ttl(target) <= 600  # the longer lifetime of the two hashes


def test_a_tenants_findings_are_listed_for_that_tenant_only() -> None:
    server = fakeredis.FakeServer()
    sync = fakeredis.FakeRedis(server=server)
    sync.hset(redis_keys.findings("team-a", "shop"), "fp", finding("fp", "job-a").model_dump_json())

    async def listed(tenant: str) -> list[Finding]:
        client = fakeredis.FakeAsyncRedis(server=server)
        return await list_findings(client, tenant, ["shop"], None)

    assert [f.fingerprint for f in asyncio.run(listed("team-a"))] == ["fp"]
    assert asyncio.run(listed("team-b")) == []
    assert asyncio.run(listed(DEFAULT_TENANT)) == []


def a_job_seeing(fingerprint: str) -> tuple[AnalysisRequest, JobResult]:
    request = AnalysisRequest.model_validate(job_request())
    return request, result_with_cause(fingerprint, T0, template=f"template {fingerprint}", count=3)


@pytest.mark.parametrize("job_id", ["new-job", "old-1"])  # old-1: a redelivered stage
def test_a_worker_adopts_a_finding_stored_before_tenants_instead_of_calling_it_new(
    job_id: str,
) -> None:
    client = fakeredis.FakeRedis()
    store_legacy(client, "shop", finding("fp-disk", "old-1"), finding("fp-dns", "old-2"))
    new = record_sightings(
        client, DEFAULT_TENANT, job_id, *a_job_seeing("fp-disk"), TTL, adopt_legacy=True
    )
    assert new == []  # known before tenants: no webhook hears of it twice
    stored = client.hget(redis_keys.findings(DEFAULT_TENANT, "shop"), "fp-disk")
    assert stored is not None
    adopted = Finding.model_validate_json(stored)
    assert {s.job_id for s in adopted.recent} == {"old-1", job_id}
    assert client.hkeys(redis_keys.legacy_findings("shop")) == [b"fp-dns"]  # the rest: the API
    # A tenant other than the default never looks there.
    other = record_sightings(client, "team-a", "job-a", *a_job_seeing("fp-dns"), TTL)
    assert [f.fingerprint for f in other] == ["fp-dns"]
    assert client.hkeys(redis_keys.legacy_findings("shop")) == [b"fp-dns"]
