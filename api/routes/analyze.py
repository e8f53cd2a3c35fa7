"""`POST /v1/analyze/stream`: the seed's endpoint, kept for existing users.

It goes through the same queue as `/v1/jobs` and streams plain text: what was read, the
findings (computed before the model is asked), then the model's answer as it is generated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from api.audit import audit
from api.auth import PrincipalDep
from api.deps import StateDep
from api.errors import ERROR_RESPONSES
from api.key_watch import KeyWatch
from api.streaming import job_events
from api.submit import submit_job
from shared.errors import StreamError
from shared.schemas import (
    AnalysisRequest,
    CancelledData,
    Event,
    Findings,
    JobError,
    JobResult,
    RetryData,
    Stage,
    StageEventData,
    TokenData,
    event_data,
)
from shared.validation import validate_request

router = APIRouter(tags=["legacy"], responses=ERROR_RESPONSES)


def render_text(event: Event) -> str:
    """The plain-text rendering of one event ('' for events the text stream leaves out)."""
    data = event_data(event)
    if isinstance(data, TokenData):
        return data.text
    if isinstance(data, StageEventData) and data.counts is not None:
        if data.stage is Stage.QUERY_LOKI:
            return f"{data.counts.summary().capitalize()}.\n"
        if data.stage is Stage.NORMALIZE:
            return f"Summary: {data.counts.summary()}.\n\n"
    if isinstance(data, Findings):
        return f"Findings: {data.summary}\n\n"
    if isinstance(data, JobResult) and data.model_status == "failed" and data.model_error:
        error = data.model_error
        return f"\n[the model's answer is missing: {error.code}: {error.message}]\n"
    if isinstance(data, RetryData):
        return "\n\n[the model call was retried; the answer restarts below]\n\n"
    if isinstance(data, JobError):
        return f"\nERROR [{data.code}]: {data.message}\n"
    if isinstance(data, CancelledData):
        return "\n[cancelled]\n"
    return ""


@router.post(
    "/v1/analyze/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "A summary line, then the analysis as it is generated.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def analyze_stream(
    body: AnalysisRequest, state: StateDep, principal: PrincipalDep
) -> StreamingResponse:
    """Submit a job and stream its summary and analysis as plain text."""
    validate_request(body, state.settings)
    job_id = await submit_job(state, body, principal)
    state.streams.acquire(principal.id, principal.effective_limits(state.settings).max_streams)

    async def text() -> AsyncIterator[str]:
        watch = KeyWatch(state.keys, principal)  # ends the stream once the key is revoked
        try:
            async with watch:
                async for event in job_events(job_id, 0, state.store, state.hub, stop=watch.stop):
                    chunk = render_text(event)
                    if chunk:
                        yield chunk
        except StreamError as exc:
            code, message = watch.lost or (exc.code, exc.message)
            if watch.lost is not None:
                await audit(state.redis, principal, "stream", "revoked", job_id=job_id)
            yield f"\nERROR [{code}]: {message}\n"
        except (RedisError, OSError):
            yield f"\nERROR [stream_interrupted]: follow /v1/jobs/{job_id}/events to resume\n"
        finally:
            state.streams.release(principal.id)

    return StreamingResponse(
        text(),
        media_type="text/plain; charset=utf-8",
        headers={"X-Job-Id": job_id, "X-Accel-Buffering": "no"},
    )
