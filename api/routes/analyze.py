"""`POST /v1/analyze/stream`: the seed's endpoint, kept for existing users.

It goes through the same queue as `/v1/jobs` and streams plain text: a one-line summary of
what was read, then the model's answer as it is generated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from api.auth import PrincipalDep
from api.deps import StateDep
from api.errors import ERROR_RESPONSES
from api.streaming import SlowClientError, job_events
from api.submit import submit_job
from shared.schemas import AnalysisRequest, Event, EventType, Stage
from shared.validation import validate_request

router = APIRouter(tags=["legacy"], responses=ERROR_RESPONSES)


def render_text(event: Event) -> str:
    """The plain-text rendering of one event ('' for events the text stream leaves out)."""
    data = event.data
    if event.type is EventType.TOKEN:
        return str(data.get("text", ""))
    if event.type is EventType.STAGE and data.get("state") == "finished":
        counts = data.get("counts", {})
        if data.get("stage") == Stage.NORMALIZE.value:
            return (
                f"Summary: {counts.get('entries', 0)} log events mined into "
                f"{counts.get('templates', 0)} templates.\n\n"
            )
        if data.get("stage") == Stage.QUERY_LOKI.value:
            return (
                f"Read {counts.get('kept', 0)} log lines ({counts.get('seen', 0)} scanned, "
                f"{counts.get('redactions', 0)} secrets redacted).\n"
            )
    if event.type is EventType.RETRY:
        return "\n\n[the model call was retried; the answer restarts below]\n\n"
    if event.type is EventType.ERROR:
        return f"\nERROR [{data.get('code')}]: {data.get('message')}\n"
    if event.type is EventType.CANCELLED:
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
    state.streams.acquire(principal)

    async def text() -> AsyncIterator[str]:
        try:
            async for event in job_events(job_id, 0, state.store, state.hub):
                chunk = render_text(event)
                if chunk:
                    yield chunk
        except SlowClientError:
            yield "\nERROR [slow_client]: client too slow\n"
        except (RedisError, OSError):
            yield f"\nERROR [stream_interrupted]: follow /v1/jobs/{job_id}/events to resume\n"
        finally:
            state.streams.release(principal)

    return StreamingResponse(
        text(),
        media_type="text/plain; charset=utf-8",
        headers={"X-Job-Id": job_id, "X-Accel-Buffering": "no"},
    )
