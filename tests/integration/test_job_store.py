"""The job record's guarantees, against a real Redis (the Lua scripts run there)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import redis
import redis.asyncio as aredis

from shared import redis_keys
from shared.job_store import AsyncJobStore, JobStore, encode_event
from shared.schemas import AnalysisRequest, EventType, JobError, JobStatus, TokenData
from workers.llm.slots import LlmSlot

pytestmark = pytest.mark.integration

REQUEST = AnalysisRequest.model_validate(
    {
        "time_range": {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T11:00:00Z"},
        "filters": {"namespace": "shop"},
    }
)


def new_job(redis_url: str) -> tuple[str, JobStore]:
    job_id = uuid.uuid4().hex

    async def create() -> None:
        client = aredis.Redis.from_url(redis_url)
        await AsyncJobStore(client, ttl_s=60, backlog_max=1000).create(job_id, REQUEST)
        await client.aclose()

    asyncio.run(create())
    return job_id, JobStore(redis.Redis.from_url(redis_url), ttl_s=60, backlog_max=1000)


def token(job_id: str, text: str, attempt: int = 0) -> str:
    return encode_event(EventType.TOKEN, job_id, attempt, TokenData(text=text))


def test_seq_is_contiguous_and_nothing_follows_done(redis_url: str) -> None:
    job_id, store = new_job(redis_url)
    assert [store.commit(job_id, events=[token(job_id, str(i))]) for i in range(3)] == [1, 2, 3]
    assert store.finish(job_id, JobStatus.FAILED, error=JobError(code="x", message="y"))
    assert not store.finish(job_id, JobStatus.SUCCEEDED), "a second terminal transition"
    assert store.commit(job_id, events=[token(job_id, "late")]) == 0
    entries = store.redis.xrange(redis_keys.job_events(job_id)) or []
    kinds = [fields[b"e"] for _, fields in entries if fields]
    assert len(entries) == 5 and b'"done"' in kinds[-1] and b'"error"' in kinds[-2]
    assert store.view(job_id).status is JobStatus.FAILED
    assert 0 < store.redis.ttl(redis_keys.job_events(job_id)) <= 60


def test_stale_attempt_cannot_write(redis_url: str) -> None:
    job_id, store = new_job(redis_url)
    store.redis.hset(redis_keys.job(job_id), "attempt", 2)
    assert store.commit(job_id, events=[token(job_id, "old", 1)], attempt=1) == 0
    assert store.commit(job_id, events=[token(job_id, "new", 2)], attempt=2) == 1


def test_unknown_job_is_refused(redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(redis_url), ttl_s=60, backlog_max=10)
    assert store.commit("missing", events=[token("missing", "x")]) == -1
    assert not store.redis.exists(redis_keys.job_events("missing"))


def test_backlog_is_capped(redis_url: str) -> None:
    job_id, store = new_job(redis_url)
    store.backlog_max = 100
    for i in range(0, 1000, 50):
        store.commit(job_id, events=[token(job_id, str(j)) for j in range(i, i + 50)])
    assert store.redis.xlen(redis_keys.job_events(job_id)) < 300


def test_llm_slots_never_exceed_the_limit_across_holders(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(redis_keys.LLM_SLOTS)
    inside = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        with LlmSlot(redis.Redis.from_url(redis_url), 2, wait_s=20, poll_s=0.01):
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert peak == 2
    assert client.zcard(redis_keys.LLM_SLOTS) == 0


def test_a_dead_holders_slot_expires(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(redis_keys.LLM_SLOTS)
    dead = LlmSlot(client, 1, lease_s=1)
    assert dead.try_acquire()  # never released: its worker was killed
    waiter = LlmSlot(client, 1, lease_s=1, wait_s=5, poll_s=0.05)
    started = time.monotonic()
    with waiter:
        assert time.monotonic() - started < 4
