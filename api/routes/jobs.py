"""`/v1/jobs`: submit, inspect, follow and cancel analysis jobs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request, Response
from opentelemetry.propagate import extract
from opentelemetry.trace import Link, get_current_span
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.access import Principal
from api.audit import audit
from api.auth import PrincipalDep
from api.deps import AppState, StateDep
from api.errors import ERROR_RESPONSES
from api.key_watch import KeyWatch
from api.legacy import adopt_history
from api.streaming import job_frames
from api.submit import submit_job
from api.transport import abort_if_stuck, transport_of
from api.urls import public_url
from shared import redis_keys
from shared.errors import InvalidQueryError, JobNotFoundError, SlowClientError, StreamError
from shared.schemas import (
    AnalysisRequest,
    EventType,
    JobAccepted,
    JobStatus,
    JobSummary,
    JobView,
)
from shared.telemetry import tracer
from shared.tenancy import data_tenant
from shared.validation import validate_request

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

SSE_RETRY_MS = 2000
# Time a stream gets, once the server is stopping, to tell its client to resume elsewhere;
# below uvicorn's --timeout-graceful-shutdown.
SHUTDOWN_GRACE_S = 1.0
# The JSON in each event's `data:` line (an `error` about the stream itself has no seq).
EVENT_DATA_SCHEMA = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "type": {"type": "string", "enum": [t.value for t in EventType]},
        "job_id": {"type": "string"},
        "attempt": {"type": "integer"},
        "ts": {"type": "number"},
        "data": {"type": "object"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}
# One Server-Sent Event as a client sees it (the OpenAPI 3.2 way of describing a stream).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": EVENT_DATA_SCHEMA,
        },
    },
}


@router.post("", status_code=202, response_model=JobAccepted)
async def create_job(
    body: AnalysisRequest,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
    response: Response,
) -> JobAccepted:
    """Validate the request, queue the pipeline and answer at once with where to follow it."""
    validate_request(body, state.settings)
    job_id = await submit_job(state, body, principal)
    status_url = public_url(request, state.settings, "get_job", job_id=job_id)
    response.headers["Location"] = status_url
    return JobAccepted(
        job_id=job_id,
        status=JobStatus.QUEUED,
        status_url=status_url,
        events_url=public_url(request, state.settings, "job_events_stream", job_id=job_id),
    )


async def owned_job(state: AppState, principal: Principal, job_id: str, action: str) -> None:
    """Raise JobNotFoundError (404) unless the job exists and `principal` may see it: a job of
    another key (or tenant) answers exactly like one that does not exist."""
    owner = await state.store.owner(job_id)
    if owner is None:
        raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
    stored = await state.redis.hget(redis_keys.job(job_id), "tenant")
    tenant = data_tenant(_text(stored) if stored else None, state.settings)
    if tenant != principal.data_tenant(state.settings):
        reason = "other_tenant"
    elif not principal.may_see(owner):
        reason = "not_owner"
    else:
        return
    await audit(state.redis, principal, action, "denied", job_id=job_id, reason=reason)
    raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)


@router.get("", response_model=list[JobSummary])
async def list_jobs(state: StateDep, principal: PrincipalDep) -> list[JobSummary]:
    """The caller's latest jobs (up to 100), newest first; expired ones are left out."""
    tenant = principal.data_tenant(state.settings)
    await adopt_history(state.redis, tenant, principal.id, state.settings.job_ttl_s)
    history = redis_keys.principal_history(tenant, principal.id)
    members = await state.redis.zrevrange(history, 0, -1)
    ids = [_text(m) for m in members if isinstance(m, bytes | str)]
    async with state.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(
                redis_keys.job(job_id), ["status", "request", "created_at", "summary", "tenant"]
            )
        rows = await pipe.execute()
    jobs = []
    for job_id, (status, request, created_at, summary, job_tenant) in zip(ids, rows, strict=True):
        if status is None or request is None:
            continue
        if data_tenant(_text(job_tenant) if job_tenant else None, state.settings) != tenant:
            continue  # made before the key moved to this tenant
        asked = AnalysisRequest.model_validate_json(request)
        facts = json.loads(summary) if summary else {}
        jobs.append(
            JobSummary(
                job_id=job_id,
                status=JobStatus(_text(status)),
                namespace=asked.filters.namespace,
                time_range=asked.time_range,
                created_at=datetime.fromisoformat(_text(created_at)),
                **{k: facts.get(k) for k in ("model", "tokens_generated", "ttft_s", "cause")},
            )
        )
    return jobs


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: str, state: StateDep, principal: PrincipalDep) -> JobView:
    """The job's status, current stage, counts, result and error."""
    await owned_job(state, principal, job_id, "read")
    return await state.store.view(job_id)


@router.delete("/{job_id}", status_code=202, response_model=JobView)
async def cancel_job(job_id: str, state: StateDep, principal: PrincipalDep) -> JobView:
    """Cancel a job; a running LLM call stops at its next token. Idempotent."""
    await owned_job(state, principal, job_id, "cancel")
    view = await state.store.view(job_id)
    if not view.status.terminal:
        await state.store.finish(job_id, JobStatus.CANCELLED)
        view = await state.store.view(job_id)
    namespace = view.request.filters.namespace
    await audit(state.redis, principal, "cancel", "accepted", namespace=namespace, job_id=job_id)
    return view


def stream_error(code: str, message: str) -> ServerSentEvent:
    """An `error` event about the stream itself (no id: the job's events are untouched)."""
    return ServerSentEvent(event="error", data=json.dumps({"code": code, "message": message}))


def job_trace_links(traceparent: str) -> list[Link]:
    """A span link to the job's own trace, so a viewer can go from a stream to its job."""
    if not traceparent:
        return []
    span_context = get_current_span(extract({"traceparent": traceparent})).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


# The highest seq Redis can count to (HINCRBY is signed 64-bit).
MAX_EVENT_ID = 2**63 - 1


def parse_last_event_id(value: str | None) -> int:
    """The event id a client resumes after (0: from the start); raises InvalidQueryError (422,
    naming the header) for anything but a decimal event id (int() would take '+3', '1_0', '٣'
    and ids Redis cannot hold)."""
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_EVENT_ID)):
        seq = -1
    else:
        seq = int(value)
    if not 0 <= seq <= MAX_EVENT_ID:
        raise InvalidQueryError(
            "Last-Event-ID",
            f"Last-Event-ID must be an event id: decimal digits, at most {MAX_EVENT_ID}",
            location="header",
        )
    return seq


async def nothing_after(state: AppState, job_id: str, after: int) -> bool:
    """Whether a client that has seen event `after` has seen everything: the job ended and
    `after` is its last event or beyond. Raises InvalidQueryError when `after` is past the
    last event of a job still running (the stream would skip what comes up to it)."""
    if after == 0:
        return False
    last, status = await state.store.progress(job_id)
    if after < last:
        return False
    if status is not None and status.terminal:
        return True
    if after > last:
        raise InvalidQueryError(
            "Last-Event-ID",
            f"Last-Event-ID {after} is past this job's last event ({last})",
            location="header",
        )
    return False


@router.get(
    "/{job_id}/events",
    name="job_events_stream",
    responses={
        200: {
            "description": "The job's events (stage, token, retry, result, error, "
            "cancelled, done), each with a strictly increasing `id:`.",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        },
        204: {
            "description": "Last-Event-ID is the last event of an ended job, or past it: "
            "there is nothing more to send (an EventSource stops reconnecting)."
        },
    },
    response_class=EventSourceResponse,
)
async def stream_job_events(
    job_id: str,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Server-Sent Events: everything after Last-Event-ID from the backlog, then the live tail;
    204 when Last-Event-ID is at or past the end of an ended job."""
    after = parse_last_event_id(last_event_id)
    await owned_job(state, principal, job_id, "stream")  # 404 before the stream starts
    if await nothing_after(state, job_id, after):
        return Response(status_code=204)
    links = job_trace_links(await state.store.traceparent(job_id))
    state.streams.acquire(principal.id, principal.effective_limits(state.settings).max_streams)
    # Set on shutdown (by sse-starlette) or when the key is no longer accepted (by the watch).
    stop = anyio.Event()
    transport = transport_of(request)

    def drop_stuck() -> None:
        # A slow client whose socket no longer takes data cannot be sent a final event.
        abort_if_stuck(transport)

    async def frames() -> AsyncIterator[ServerSentEvent | bytes]:
        ended = False
        yield ServerSentEvent(comment="stream open", retry=SSE_RETRY_MS)
        watch = KeyWatch(state.keys, principal, stop)
        try:
            async with watch:
                with tracer().start_as_current_span("follow_job", links=links) as span:
                    span.set_attribute("job.id", job_id)
                    span.set_attribute("sse.last_event_id", after)
                    batches = job_frames(
                        job_id,
                        after,
                        state.store,
                        state.hub,
                        stop=stop,
                        tick_s=state.settings.sse_coalesce_tick_s,
                        on_slow=drop_stuck,
                    )
                    async for batch in batches:
                        # Frames are encoded once by the hub; a batch goes out in one write.
                        yield batch[0].sse if len(batch) == 1 else b"".join(f.sse for f in batch)
        except SlowClientError as exc:
            if not abort_if_stuck(transport):
                yield stream_error(exc.code, exc.message)
            ended = True
        except StreamError as exc:
            if watch.lost is not None:
                await audit(state.redis, principal, "stream", "revoked", job_id=job_id)
                yield stream_error(*watch.lost)
            else:
                yield stream_error(exc.code, exc.message)
            ended = True
        except (RedisError, OSError):
            yield stream_error(
                "stream_interrupted", "the event store is unreachable; reconnect with Last-Event-ID"
            )
            ended = True
        else:
            ended = True
        finally:
            state.streams.release(principal.id)
            if not ended:
                # Closed mid-write (send timeout): uvicorn's graceful close would keep the
                # socket until a client that never reads takes the bytes still buffered.
                abort_if_stuck(transport)

    return EventSourceResponse(
        frames(),
        ping=int(state.settings.sse_ping_s),
        send_timeout=state.settings.sse_send_timeout_s,
        shutdown_event=stop,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
        headers={"Cache-Control": "no-cache"},
    )
