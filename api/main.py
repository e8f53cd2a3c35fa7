"""Build the FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aredis
from fastapi import Depends, FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import Receive, Scope, Send

from api.auth import KeyRing, check_auth_mode
from api.deps import AppState
from api.errors import install_error_handlers
from api.hub import EventHub
from api.limits import StreamLimiter
from api.middleware import BodySizeLimit
from api.producer import Producer
from api.reaper import Rerun, run_reaper
from api.roles import data_access, metrics_access
from api.routes import analyze, backfills, docs, health, jobs, metrics, namespaces, ui
from api.transport import remember_transport
from shared import __version__, queues, telemetry
from shared.findings_store import migrate_legacy_findings
from shared.job_store import AsyncJobStore
from shared.settings import Settings, get_settings
from shared.tenancy import data_tenant

SERVICE_NAME = "log-analyzer-api"
logger = logging.getLogger(__name__)


async def check_eviction_policy(client: aredis.Redis) -> str | None:
    """Log an error unless Redis runs with `maxmemory-policy noeviction`.

    Evicting keys deletes queue bindings and job records: Celery then fails with
    InconsistencyError and jobs vanish. Managed Redis may forbid CONFIG: then we cannot know.
    """
    try:
        policy = (await asyncio.wait_for(client.config_get("maxmemory-policy"), 5)).get(
            "maxmemory-policy"
        )
    except (RedisError, OSError, TimeoutError):
        logger.warning("could not read Redis maxmemory-policy; it must be noeviction")
        return None
    value = policy.decode() if isinstance(policy, bytes) else str(policy)
    if value != "noeviction":
        logger.error(
            "Redis maxmemory-policy is %s: set it to noeviction, or queued tasks and "
            "job records can be evicted",
            value,
        )
    return value


async def move_legacy_findings(client: aredis.Redis, settings: Settings) -> None:
    """Findings stored before tenants move to the default tenant (reads do it too: a Redis
    away now only delays it)."""
    try:
        await migrate_legacy_findings(client, data_tenant(None, settings), settings.findings_ttl_s)
    except (RedisError, OSError, RuntimeError) as exc:
        logger.warning("findings stored before tenants not moved yet", extra={"error": str(exc)})


def create_app(
    settings: Settings | None = None,
    enqueue: Callable[[str], None] | None = None,
    *,
    bind_host: str | None = None,
) -> FastAPI:
    """The API app; `enqueue` defaults to publishing the Celery chain. `bind_host` is the
    address the server binds (None: unknown); raises ConfigurationError for settings that
    would serve without keys by accident (`api.auth.check_auth_mode`)."""
    settings = settings or get_settings()
    check_auth_mode(settings, bind_host)
    telemetry.setup_logging(settings.log_level)
    provider = telemetry.setup_tracing(SERVICE_NAME, settings)
    if provider is not None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        telemetry.instrument_clients()
        # The producer side: puts the trace context in the task headers.
        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]  # untyped upstream

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.redis_url.get_secret_value(),
            max_connections=settings.redis_max_connections,
            timeout=settings.enqueue_timeout_s,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        client = aredis.Redis(connection_pool=pool)
        store = AsyncJobStore(
            client, ttl_s=settings.job_ttl_s, backlog_max=settings.event_backlog_max
        )
        hub = EventHub(
            client, buffer=settings.sse_client_buffer, max_lag_s=settings.sse_slow_after_s
        )
        await hub.start()
        rerun: Rerun | None = None
        if enqueue is not None:
            interactive = enqueue

            def backfill(job_id: str, backfill_id: str) -> None:
                enqueue(job_id)
        else:
            producer = Producer(settings)
            interactive = producer.enqueue
            rerun = producer.rerun

            def backfill(job_id: str, backfill_id: str) -> None:
                producer.enqueue(job_id, queue=queues.BACKFILL, backfill_id=backfill_id)

        app.state.la = AppState(
            settings=settings,
            redis=client,
            store=store,
            hub=hub,
            enqueue=interactive,
            enqueue_backfill=backfill,
            keys=KeyRing(settings.api_keys, settings.api_keys_file, no_auth=settings.api_no_auth),
            streams=StreamLimiter(),
        )
        background = [
            asyncio.create_task(check_eviction_policy(client)),
            asyncio.create_task(move_legacy_findings(client, settings)),
            asyncio.create_task(
                run_reaper(
                    client,
                    store,
                    stuck_after_s=settings.stuck_job_timeout_s,
                    interval_s=settings.reaper_interval_s,
                    rerun=rerun,
                    lost_after_s=settings.job_liveness_timeout_s,
                    send_timeout_s=settings.enqueue_timeout_s,
                )
            ),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await hub.stop()
            await client.aclose()
            await pool.disconnect()
            telemetry.shutdown_tracing()

    # /docs is served from a package under the page's CSP (api.routes.docs); FastAPI's own
    # pages load Swagger UI and ReDoc from a CDN.
    app = Api(
        title="log-analyzer",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    install_error_handlers(app)
    protected = [Depends(data_access)]  # authenticated, and not a metrics-only key
    app.include_router(health.router)
    app.include_router(jobs.router, dependencies=protected)
    app.include_router(analyze.router, dependencies=protected)
    app.include_router(backfills.router, dependencies=protected)
    app.include_router(namespaces.router, dependencies=protected)
    app.include_router(ui.router)
    app.include_router(docs.router)
    app.include_router(metrics.router, dependencies=[Depends(metrics_access)])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=provider, excluded_urls="health,ready,metrics"
        )
    return app


class Api(FastAPI):
    """The FastAPI app, recording the connection's transport before middleware wraps `send`
    (api.transport: a stream can then drop a client that stopped reading)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            remember_transport(scope, send)
        await super().__call__(scope, receive, send)


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory api.main:app_factory` (keys required: started this
    way the app cannot know the address it binds; `python -m api` can)."""
    return create_app()
