"""Create a job record and put its pipeline on the queue, or fail fast with 503."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from kombu.exceptions import KombuError
from opentelemetry.propagate import inject
from redis.exceptions import RedisError

from api.access import Principal
from api.audit import audit
from api.deps import AppState
from api.limits import check_submission, record_submission
from shared import metrics, queues, redis_keys
from shared.errors import ForbiddenError, RateLimitedError, ServiceUnavailableError
from shared.schemas import AnalysisRequest, JobError, JobStatus
from shared.telemetry import log_context, tracer

logger = logging.getLogger(__name__)


async def submit_job(state: AppState, request: AnalysisRequest, principal: Principal) -> str:
    """Store the job as `queued` (owned by `principal`) and enqueue its chain; both bounded by
    `enqueue_timeout_s`.

    Raises ForbiddenError (403) when the namespace is outside the key's scope,
    RateLimitedError (429) when the key is over its limits, ServiceUnavailableError (503)
    when Redis or the queue does not answer in time.
    """
    namespace = request.filters.namespace
    if not principal.allows(namespace):
        await audit(state.redis, principal, "submit", "denied", namespace=namespace,
                    reason="namespace_out_of_scope")  # fmt: skip
        raise ForbiddenError(
            "filters.namespace", f"this key may not analyse namespace {namespace!r}"
        )
    try:
        await asyncio.wait_for(
            check_submission(state.redis, principal.effective_limits(state.settings), principal.id),
            state.settings.enqueue_timeout_s,
        )
    except RateLimitedError:
        await audit(state.redis, principal, "submit", "rate_limited", namespace=namespace)
        raise
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailableError(f"job store unavailable: {exc or 'timeout'}") from exc
    job_id = uuid.uuid4().hex
    with (
        tracer().start_as_current_span("analyze_logs") as span,
        log_context(job_id=job_id, namespace=namespace),
    ):
        span.set_attribute("job.id", job_id)
        span.set_attribute("k8s.namespace.name", namespace)
        span.set_attribute("log.limit", request.limit)
        carrier: dict[str, str] = {}
        inject(carrier)
        await _create_and_enqueue(state, job_id, request, carrier.get("traceparent", ""), principal)
        with contextlib.suppress(RedisError, OSError):
            await record_submission(
                state.redis,
                state.settings,
                principal.id,
                principal.data_tenant(state.settings),
                job_id,
            )
        logger.info("job queued", extra={"principal": principal.id})
        await audit(state.redis, principal, "submit", "accepted", namespace=namespace,
                    job_id=job_id)  # fmt: skip
    return job_id


async def _create_and_enqueue(
    state: AppState, job_id: str, request: AnalysisRequest, traceparent: str, owner: Principal
) -> None:
    timeout = state.settings.enqueue_timeout_s
    try:
        await asyncio.wait_for(
            state.store.create(
                job_id, request, traceparent=traceparent, owner=owner.id, tenant=owner.tenant
            ),
            timeout,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailableError(f"job store unavailable: {exc or 'timeout'}") from exc
    try:
        # Celery's publish is blocking and can hang while Redis is away: run it in a thread
        # and stop waiting after the timeout.
        await asyncio.wait_for(asyncio.to_thread(state.enqueue, job_id), timeout)
    except (RedisError, KombuError, OSError, TimeoutError) as exc:
        error = JobError(code="enqueue_failed", message="the job could not be queued")
        try:
            await asyncio.wait_for(state.store.finish(job_id, JobStatus.FAILED, error=error), 1.0)
        except (RedisError, OSError, TimeoutError):
            logger.warning("could not mark unqueued job failed")
        raise ServiceUnavailableError(f"queue unavailable: {exc or 'timeout'}") from exc
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.hincrbyfloat(
                redis_keys.METRICS,
                metrics.counter_field(metrics.JOBS_SUBMITTED, queue=queues.INTERACTIVE),
                1,
            )
            pipe.hincrbyfloat(
                redis_keys.METRICS,
                metrics.counter_field(
                    metrics.JOBS_BY_NAMESPACE, namespace=request.filters.namespace
                ),
                1,
            )
            await pipe.execute()
    except (RedisError, OSError) as exc:  # metrics must never fail a submitted job
        logger.warning("could not count the job", extra={"error": str(exc)})
