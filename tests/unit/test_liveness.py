"""Job liveness against fakeredis (the real Lua scripts): a run that stops beating is taken
over once, its old message is refused, a lost record or lost stage data ends the job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import cast

import fakeredis
import pytest
from kombu.exceptions import OperationalError

from api.producer import Producer
from api.reaper import rerun_lost
from shared import redis_keys
from shared.job_store import JobStore
from shared.schemas import AnalysisRequest, JobStatus, Stage
from shared.settings import Settings
from tests.support.incident import job_request
from workers.middleware.admission import admit
from workers.middleware.dispatch import dispatch_fence
from workers.middleware.errors import error_mapping
from workers.middleware.heartbeat import beat, job_heartbeat, stage_ended
from workers.runner import StageFailed, StageRun, StageSkipped, load_run
from workers.stage_data import load_evidence

JOB = "job-1"


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def store(server: fakeredis.FakeServer) -> Iterator[JobStore]:
    client = fakeredis.FakeRedis(server=server)
    request = AnalysisRequest.model_validate(job_request())
    client.hset(
        redis_keys.job(JOB),
        mapping={
            "status": "running",
            "request": request.model_dump_json(),
            "seq": 0,
            "attempt": 0,
            "created_at": "2026-11-24T06:00:00+00:00",
        },
    )
    yield JobStore(client, ttl_s=60, backlog_max=100)
    client.close()


def running(store: JobStore) -> dict[str, float]:
    members = cast(
        list[tuple[bytes, float]],
        store.redis.zrange(redis_keys.RUNNING_STAGES, 0, -1, withscores=True),
    )
    return {member.decode(): score for member, score in members}


def age(store: JobStore, seconds: float) -> None:
    """Pretend the job's last beat was `seconds` ago."""
    store.redis.zadd(redis_keys.RUNNING_STAGES, {JOB: time.time() - seconds})


Sent = list[tuple[str, Stage, int, str]]


def sweep(
    server: fakeredis.FakeServer, lost_after_s: float = 30, *, broker_down: bool = False
) -> Sent:
    """One liveness sweep as the API runs it; returns what it sent again."""
    sent: Sent = []

    def rerun(job_id: str, stage: Stage, dispatch: int, backfill_id: str) -> None:
        if broker_down:
            raise OperationalError("broker unreachable")
        sent.append((job_id, stage, dispatch, backfill_id))

    async def scenario() -> list[str]:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            return await rerun_lost(client, rerun, lost_after_s=lost_after_s, send_timeout_s=5)
        finally:
            await client.aclose()

    ids = asyncio.run(scenario())
    assert ids == [s[0] for s in sent]
    return sent


def test_a_running_stage_is_watched_and_leaves_the_watch_when_it_ends(store: JobStore) -> None:
    run = load_run(store, Settings(job_heartbeat_s=0.01), JOB, Stage.CALL_LLM)
    seen: list[dict[str, float]] = []
    job_heartbeat(run, lambda: seen.append(running(store)))
    assert list(seen[0]) == [JOB]
    assert store.fields(JOB)["running_stage"] == "call_llm"
    assert running(store) == {}, "a stage that ended is no lost run"


def test_a_beat_that_races_the_end_of_its_run_is_refused(store: JobStore) -> None:
    assert beat(store.redis, JOB, Stage.NORMALIZE, "run-a")
    stage_ended(store.redis, JOB, "run-a")
    assert not beat(store.redis, JOB, Stage.NORMALIZE, "run-a")
    assert running(store) == {}
    assert beat(store.redis, JOB, Stage.CALL_LLM, "run-b"), "the next stage's run beats"


def test_a_run_fenced_out_by_a_newer_attempt_does_not_beat(store: JobStore) -> None:
    store.redis.hset(redis_keys.job(JOB), "attempt", 1)  # the stage started again
    assert not beat(store.redis, JOB, Stage.CALL_LLM, "run-a", attempt=0)
    assert beat(store.redis, JOB, Stage.CALL_LLM, "run-b", attempt=1)
    assert store.fields(JOB)["run_token"] == "run-b"


def test_a_beat_never_brings_back_a_lost_or_ended_job(store: JobStore) -> None:
    store.redis.delete(redis_keys.job(JOB))  # Redis restarted without persistence
    assert not beat(store.redis, JOB, Stage.CALL_LLM, "run-a")
    assert not store.redis.exists(redis_keys.job(JOB)), "a beat recreated a partial record"
    assert running(store) == {}


def test_a_run_that_stopped_beating_is_sent_again_once(
    store: JobStore, server: fakeredis.FakeServer
) -> None:
    beat(store.redis, JOB, Stage.CALL_LLM, "run-a")
    assert sweep(server) == [], "it beat just now"
    age(store, 31)
    assert sweep(server) == [(JOB, Stage.CALL_LLM, 1, "")]
    assert sweep(server) == [], "taken over once, not at every sweep"
    assert store.fields(JOB)["dispatch"] == "1"


def test_a_run_that_could_not_be_sent_again_is_tried_at_the_next_sweep(
    store: JobStore, server: fakeredis.FakeServer
) -> None:
    beat(store.redis, JOB, Stage.CALL_LLM, "run-a")
    age(store, 31)
    assert sweep(server, broker_down=True) == []
    assert JOB in running(store), "still watched"
    assert sweep(server) == [(JOB, Stage.CALL_LLM, 2, "")]


def test_a_backfill_item_is_sent_again_with_its_backfill(
    store: JobStore, server: fakeredis.FakeServer
) -> None:
    store.redis.hset(redis_keys.job(JOB), "backfill_id", "bf-1")
    beat(store.redis, JOB, Stage.NORMALIZE, "run-a")
    age(store, 60)
    assert sweep(server) == [(JOB, Stage.NORMALIZE, 1, "bf-1")]


def test_an_ended_job_is_not_sent_again(store: JobStore, server: fakeredis.FakeServer) -> None:
    beat(store.redis, JOB, Stage.CALL_LLM, "run-a")
    age(store, 60)
    store.finish(JOB, JobStatus.CANCELLED)
    assert sweep(server) == []
    assert running(store) == {}


def test_after_a_takeover_the_old_message_is_refused_before_it_counts_as_a_start(
    store: JobStore, server: fakeredis.FakeServer
) -> None:
    beat(store.redis, JOB, Stage.CALL_LLM, "run-a")
    age(store, 60)
    [(_, stage, dispatch, _)] = sweep(server)
    settings = Settings()
    ran: list[int] = []

    def start(message_dispatch: int) -> None:
        run = load_run(store, settings, JOB, stage, message_dispatch)
        dispatch_fence(run, lambda: admit(run, lambda: ran.append(run.dispatch)))

    # The broker hands the old message back after its visibility timeout: stale.
    with pytest.raises(StageSkipped):
        start(0)
    assert store.fields(JOB).get("runs:call_llm") is None
    start(dispatch)
    assert ran == [1]
    assert store.fields(JOB)["runs:call_llm"] == "1"


def test_a_stage_whose_input_is_gone_fails_the_job_with_a_clear_code(store: JobStore) -> None:
    run: StageRun = load_run(store, Settings(), JOB, Stage.CALL_LLM)

    with pytest.raises(StageFailed):
        # normalize's output, which call_llm reads, was lost with a Redis restart
        error_mapping(run, lambda: None if load_evidence(store, JOB) else None)
    view = store.view(JOB)
    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.code == "stage_data_lost"
    assert view.error.stage is Stage.CALL_LLM


def test_a_lost_stage_is_sent_again_with_the_rest_of_its_chain_on_the_jobs_queue() -> None:
    producer = Producer(Settings())
    steps = producer.steps("j", "backfill", "bf-1", start=Stage.NORMALIZE, dispatch=2)
    sent = [(t.task, t.args, t.kwargs, t.options["queue"]) for t in steps.tasks]
    kwargs = {"backfill_id": "bf-1", "dispatch": 2}
    assert sent == [
        ("log_analyzer.normalize", ("j",), kwargs, "backfill"),
        ("log_analyzer.call_llm", ("j",), kwargs, "backfill"),
    ]
    first = producer.steps("j")
    assert [(t.task, t.kwargs) for t in first.tasks] == [
        (f"log_analyzer.{stage.value}", {}) for stage in Stage
    ], "a new job's messages carry no dispatch"
