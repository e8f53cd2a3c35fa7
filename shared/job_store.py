"""The job record and its event log in Redis: the source of truth for both API and workers.

Every event is appended by one Lua script that bumps the job's sequence number, adds the event
to a capped stream (the replayable backlog) and publishes it (the live tail) atomically, so a
reader that subscribes first and then reads the backlog can merge the two by `seq` with no gap
and no duplicate. The same script refuses to write once the job is terminal, so nothing ever
follows `done`, and refuses writes from a stale attempt (a redelivered duplicate of a task).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
import redis
import redis.asyncio as aredis
from pydantic import BaseModel

from shared import metrics, redis_keys
from shared.backfill import result_summary
from shared.errors import JobNotFoundError, StageDataLostError
from shared.schemas import (
    TERMINAL_STATUSES,
    AnalysisRequest,
    CancelledData,
    DoneData,
    Event,
    EventType,
    JobError,
    JobResult,
    JobStatus,
    JobView,
    Stage,
    StageCounts,
)

# The terminal statuses, as the script receives them (space-separated) from Python.
_TERMINAL_ARG = " ".join(status.value for status in TERMINAL_STATUSES)

# KEYS: job hash, events stream.
# ARGV: channel, maxlen, ttl, expected attempt ("" = any), terminal statuses, n field pairs,
#       fields..., events...
# Returns the last seq written, 0 when refused (job terminal or stale attempt), -1 if no job.
_COMMIT_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
for terminal in string.gmatch(ARGV[5], '%S+') do
  if status == terminal then return 0 end
end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[4] then return 0 end
local nfields = tonumber(ARGV[6])
local i = 7
if nfields > 0 then
  local pairs = {}
  for j = 0, nfields * 2 - 1 do pairs[#pairs + 1] = ARGV[i + j] end
  redis.call('HSET', KEYS[1], unpack(pairs))
  i = i + nfields * 2
end
local seq = 0
while i <= #ARGV do
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[i])
  redis.call('PUBLISH', ARGV[1], seq .. '|' .. ARGV[i])
  i = i + 1
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
if seq == 0 then seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') end
return seq
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def encode_event(event_type: EventType, job_id: str, attempt: int, data: BaseModel) -> str:
    """The JSON body of an event without its `seq` (the script assigns it)."""
    return json.dumps(
        {
            "type": event_type.value,
            "job_id": job_id,
            "attempt": attempt,
            "ts": time.time(),
            "data": data.model_dump(mode="json"),
        },
        separators=(",", ":"),
    )


def decode_event(seq: int, body: str | bytes) -> Event:
    payload = json.loads(body)
    payload["seq"] = seq
    return Event.model_validate(payload)


def decode_published(message: str | bytes) -> Event:
    """Parse a pub/sub message `<seq>|<json>`."""
    text = message.decode() if isinstance(message, bytes) else message
    seq, _, body = text.partition("|")
    return decode_event(int(seq), body)


def _stream_id_seq(entry_id: str | bytes) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[1])


def events_from_stream(entries: Sequence[tuple[Any, Any]] | None) -> list[Event]:
    out: list[Event] = []
    for entry_id, fields in entries or ():
        body = fields.get(b"e", fields.get("e"))
        out.append(decode_event(_stream_id_seq(entry_id), body))
    return out


def job_view_from_hash(job_id: str, raw: Mapping[bytes | str, bytes | str]) -> JobView:
    """Build the public view of a job from its Redis hash."""
    if not raw:
        raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
    fields = {_text(k): _text(v) for k, v in raw.items()}
    counts = StageCounts.model_validate(
        {
            key.split(":", 1)[1]: json.loads(value)
            for key, value in fields.items()
            if key.startswith("counts:")
        }
    )
    stage = fields.get("stage") or None
    return JobView(
        job_id=job_id,
        status=JobStatus(fields["status"]),
        stage=Stage(stage) if stage else None,
        attempt=int(fields.get("attempt", "0")),
        created_at=datetime.fromisoformat(fields["created_at"]),
        started_at=datetime.fromisoformat(fields["started_at"])
        if fields.get("started_at")
        else None,
        finished_at=(
            datetime.fromisoformat(fields["finished_at"]) if fields.get("finished_at") else None
        ),
        counts=counts,
        request=AnalysisRequest.model_validate_json(fields["request"]),
        result=JobResult.model_validate_json(fields["result"]) if fields.get("result") else None,
        error=JobError.model_validate_json(fields["error"]) if fields.get("error") else None,
    )


def terminal_fields(
    status: JobStatus, *, result: JobResult | None = None, error: JobError | None = None
) -> dict[str, str]:
    fields = {"status": status.value, "finished_at": now_iso()}
    if result is not None:
        fields["result"] = result.model_dump_json()
        # What a backfill's roll-up reads, without loading every item's whole result.
        fields["summary"] = json.dumps(result_summary(result))
    if error is not None:
        fields["error"] = error.model_dump_json()
    return fields


def terminal_events(
    job_id: str,
    attempt: int,
    status: JobStatus,
    *,
    result: JobResult | None = None,
    error: JobError | None = None,
) -> list[str]:
    """The closing events of a job: `result`, `error` or `cancelled`, then `done`."""
    events = []
    if result is not None:
        events.append(encode_event(EventType.RESULT, job_id, attempt, result))
    if error is not None:
        events.append(encode_event(EventType.ERROR, job_id, attempt, error))
    if status is JobStatus.CANCELLED:
        events.append(encode_event(EventType.CANCELLED, job_id, attempt, CancelledData()))
    events.append(encode_event(EventType.DONE, job_id, attempt, DoneData(status=status)))
    return events


JOB_LOST = JobError(
    code="job_lost",
    message="this job's record is gone from Redis (restarted without persistence, or the "
    "job expired): it will not finish; submit it again",
)


def lost_events(job_id: str, after_seq: int) -> list[Event]:
    """How the stream of a job whose record is gone ends: `error` (`job_lost`) and `done`,
    numbered after the last event the client has (nothing is left to number them in Redis)."""
    now = time.time()
    closing = [
        (EventType.ERROR, JOB_LOST.model_dump(mode="json")),
        (EventType.DONE, DoneData(status=JobStatus.FAILED).model_dump(mode="json")),
    ]
    return [
        Event(seq=after_seq + i, type=event_type, job_id=job_id, ts=now, data=data)
        for i, (event_type, data) in enumerate(closing, start=1)
    ]


def _commit_args(
    job_id: str,
    *,
    maxlen: int,
    ttl: int,
    attempt: int | None,
    fields: Mapping[str, str],
    events: Sequence[str],
) -> list[str | int]:
    args: list[str | int] = [
        redis_keys.events_channel(job_id),
        maxlen,
        ttl,
        "" if attempt is None else str(attempt),
        _TERMINAL_ARG,
        len(fields),
    ]
    for key, value in fields.items():
        args.extend((key, value))
    args.extend(events)
    return args


def stage_data_keys(job_id: str) -> list[str]:
    """Intermediate stage outputs: deleted when the job ends (the result keeps what matters)."""
    return [redis_keys.stage_data(job_id, stage) for stage in Stage]


def _finished_field(status: JobStatus) -> str:
    return metrics.counter_field(metrics.JOBS_FINISHED, status=status.value)


def queue_cleanup(
    pipe: redis.client.Pipeline | aredis.client.Pipeline, job_id: str, status: JobStatus
) -> None:
    """What follows a job's terminal transition (queued on a pipeline): its stage data goes,
    the reaper stops watching it, and the finished counter goes up."""
    pipe.delete(*stage_data_keys(job_id))
    pipe.zrem(redis_keys.ACTIVE_JOBS, job_id)
    pipe.zrem(redis_keys.RUNNING_STAGES, job_id)
    pipe.hincrbyfloat(redis_keys.METRICS, _finished_field(status), 1)


def compress(payload: Any) -> bytes:
    # Level 1: a million lines pass through here twice; higher levels cost 2x the time for
    # a few percent less memory.
    return zlib.compress(orjson.dumps(payload), 1)


def decompress(blob: bytes) -> Any:
    return orjson.loads(zlib.decompress(blob))


Client = TypeVar("Client", redis.Redis, aredis.Redis)


class _Store(Generic[Client]):
    """A Redis client, the record's TTL and backlog cap, and the commit script."""

    def __init__(self, client: Client, *, ttl_s: int, backlog_max: int):
        self.redis: Client = client
        self.ttl_s = ttl_s
        self.backlog_max = backlog_max
        # A Script or an AsyncScript, called the same way (awaited on the async side).
        self._commit: Any = client.register_script(_COMMIT_LUA)


class JobStore(_Store[redis.Redis]):
    """Synchronous access for workers."""

    def commit(
        self,
        job_id: str,
        *,
        fields: Mapping[str, str] | None = None,
        events: Sequence[str] = (),
        attempt: int | None = None,
    ) -> int:
        """Update fields and append events atomically; 0 means refused (terminal/stale)."""
        args = _commit_args(
            job_id,
            maxlen=self.backlog_max,
            ttl=self.ttl_s,
            attempt=attempt,
            fields=fields or {},
            events=events,
        )
        keys = [redis_keys.job(job_id), redis_keys.job_events(job_id)]
        return int(self._commit(keys=keys, args=args))

    def fields(self, job_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(redis_keys.job(job_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def view(self, job_id: str) -> JobView:
        return job_view_from_hash(job_id, self.redis.hgetall(redis_keys.job(job_id)))

    def status(self, job_id: str) -> JobStatus | None:
        value = self.redis.hget(redis_keys.job(job_id), "status")
        return JobStatus(_text(value)) if value else None

    def put_stage_data(self, job_id: str, stage: Stage, payload: Any) -> None:
        self.redis.set(redis_keys.stage_data(job_id, stage), compress(payload), ex=self.ttl_s)

    def put_chunk(self, job_id: str, stage: Stage, name: str, payload: Any) -> None:
        """Store one chunk of a stage's output (a field of its hash; names sort in order)."""
        key = redis_keys.stage_data(job_id, stage)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, name, compress(payload))
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    def chunk_names(self, job_id: str, stage: Stage, prefix: str = "") -> list[str]:
        """The names of a stage's chunks that start with `prefix`, sorted."""
        names = (_text(n) for n in self.redis.hkeys(redis_keys.stage_data(job_id, stage)))
        return sorted(n for n in names if n.startswith(prefix))

    def get_chunk(self, job_id: str, stage: Stage, name: str) -> Any:
        blob = self.redis.hget(redis_keys.stage_data(job_id, stage), name)
        if blob is None:
            raise StageDataLostError(
                f"chunk {name} of the {stage.value} output of this job is gone from Redis",
                job_id=job_id,
            )
        return decompress(blob if isinstance(blob, bytes) else blob.encode())

    def drop_chunks(self, job_id: str, stage: Stage, prefix: str = "") -> None:
        """Delete a stage's chunks that start with `prefix` (all of them by default)."""
        if not prefix:
            self.redis.delete(redis_keys.stage_data(job_id, stage))
            return
        names = self.chunk_names(job_id, stage, prefix)
        if names:
            self.redis.hdel(redis_keys.stage_data(job_id, stage), *names)

    def get_stage_data(self, job_id: str, stage: Stage) -> Any:
        blob = self.redis.get(redis_keys.stage_data(job_id, stage))
        if blob is None:
            raise StageDataLostError(
                f"the {stage.value} output of this job is gone from Redis (restarted without "
                "persistence?): the job cannot go on; submit it again",
                job_id=job_id,
            )
        return decompress(blob if isinstance(blob, bytes) else blob.encode())

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        attempt: int | None = None,
        result: JobResult | None = None,
        error: JobError | None = None,
    ) -> bool:
        """Move the job to a terminal status once; False if it already was terminal."""
        job_attempt = attempt if attempt is not None else 0
        written = self.commit(
            job_id,
            fields=terminal_fields(status, result=result, error=error),
            events=terminal_events(job_id, job_attempt, status, result=result, error=error),
            attempt=attempt,
        )
        if written > 0:
            with self.redis.pipeline(transaction=False) as pipe:
                queue_cleanup(pipe, job_id, status)
                pipe.execute()
        return written > 0


class AsyncJobStore(_Store[aredis.Redis]):
    """Asynchronous access for the API."""

    async def create(
        self,
        job_id: str,
        request: AnalysisRequest,
        *,
        traceparent: str = "",
        owner: str = "",
        tenant: str | None = None,
        backfill_id: str = "",
    ) -> None:
        """Store a new job as `queued`: `owner` is the id of the key that created it, `tenant`
        the Loki tenant its queries are sent as, `backfill_id` the backfill it belongs to."""
        key = redis_keys.job(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "status": JobStatus.QUEUED.value,
                    "created_at": now_iso(),
                    "request": request.model_dump_json(),
                    "seq": 0,
                    "attempt": 0,
                    "traceparent": traceparent,
                    "owner": owner,
                    "tenant": tenant or "",
                    "backfill_id": backfill_id,
                },
            )
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def view(self, job_id: str) -> JobView:
        return job_view_from_hash(job_id, await self.redis.hgetall(redis_keys.job(job_id)))

    async def owner(self, job_id: str) -> str | None:
        """The id of the key that created the job; None when there is no such job."""
        value = await self.redis.hget(redis_keys.job(job_id), "owner")
        if value is None:
            return None if not await self.redis.exists(redis_keys.job(job_id)) else ""
        return _text(value)

    async def progress(self, job_id: str) -> tuple[int, JobStatus | None]:
        """The seq of the job's last event and its status (None when there is no such job)."""
        seq, status = await self.redis.hmget(redis_keys.job(job_id), ["seq", "status"])
        return int(seq or 0), JobStatus(_text(status)) if status else None

    async def exists(self, job_id: str) -> bool:
        """Whether the job's record is still there (a Redis restart without persistence or
        the TTL takes it)."""
        return bool(await self.redis.hexists(redis_keys.job(job_id), "status"))

    async def traceparent(self, job_id: str) -> str:
        value = await self.redis.hget(redis_keys.job(job_id), "traceparent")
        return _text(value) if value else ""

    async def events_after(self, job_id: str, seq: int, *, until: int | None = None) -> list[Event]:
        """Backlog events with `seq` greater than the given one (and at most `until`)."""
        upper = "+" if until is None else f"0-{until}"
        entries = await self.redis.xrange(redis_keys.job_events(job_id), f"0-{seq + 1}", upper)
        return events_from_stream(entries)

    async def finish(
        self, job_id: str, status: JobStatus, *, error: JobError | None = None
    ) -> bool:
        args = _commit_args(
            job_id,
            maxlen=self.backlog_max,
            ttl=self.ttl_s,
            attempt=None,
            fields=terminal_fields(status, error=error),
            events=terminal_events(job_id, 0, status, error=error),
        )
        keys = [redis_keys.job(job_id), redis_keys.job_events(job_id)]
        written = int(await self._commit(keys=keys, args=args))
        if written > 0:
            async with self.redis.pipeline(transaction=False) as pipe:
                queue_cleanup(pipe, job_id, status)
                await pipe.execute()
        return written > 0
