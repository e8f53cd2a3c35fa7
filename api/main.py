"""Build the FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aredis
from fastapi import FastAPI

from api.deps import AppState
from api.errors import install_error_handlers
from api.hub import EventHub
from api.routes import analyze, health, jobs, metrics
from shared import __version__, telemetry
from shared.job_store import AsyncJobStore
from shared.settings import Settings, get_settings

SERVICE_NAME = "log-analyzer-api"


def _celery_enqueue(settings: Settings) -> Callable[[str], None]:
    from workers.pipeline import enqueue_pipeline

    return lambda job_id: enqueue_pipeline(job_id, settings)


def create_app(
    settings: Settings | None = None, enqueue: Callable[[str], None] | None = None
) -> FastAPI:
    """The API app; `enqueue` defaults to publishing the Celery chain."""
    settings = settings or get_settings()
    telemetry.setup_logging(settings.log_level)
    provider = telemetry.setup_tracing(SERVICE_NAME, settings)
    if provider is not None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        telemetry.instrument_clients()
        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]  # untyped upstream  # producer side: puts trace context in task headers

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=15,
        )
        hub = EventHub(client, buffer=settings.sse_client_buffer)
        await hub.start()
        app.state.la = AppState(
            settings=settings,
            redis=client,
            store=AsyncJobStore(
                client, ttl_s=settings.job_ttl_s, backlog_max=settings.event_backlog_max
            ),
            hub=hub,
            enqueue=enqueue or _celery_enqueue(settings),
        )
        try:
            yield
        finally:
            await hub.stop()
            await client.aclose()
            telemetry.shutdown_tracing()

    app = FastAPI(title="log-analyzer", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(analyze.router)
    app.include_router(metrics.router)
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=provider, excluded_urls="health,ready,metrics"
        )
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory api.main:app_factory`."""
    return create_app()
