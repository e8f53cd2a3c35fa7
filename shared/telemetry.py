"""Tracing (OTLP → Tempo) and JSON logging, set up once per process.

The API calls `setup_logging` and `setup_tracing("log-analyzer-api", ...)` when it builds its
app; each Celery worker child calls `setup_tracing("log-analyzer-worker", ...)` in
`worker_process_init` (never in the prefork parent: the batch exporter's thread and gRPC
channels do not survive fork) and `shutdown_tracing()` in `worker_process_shutdown`, so a
child that exits still exports its spans.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from pythonjsonlogger.json import JsonFormatter

from shared import __version__
from shared.settings import Settings

_job_fields: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_job_fields", default=None
)
_provider: TracerProvider | None = None

# Per-message spans of streamed responses: one per SSE frame or token, noise in Tempo.
NOISY_SPAN_SUFFIXES = ("http send", "http receive")


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach job_id / stage / namespace to every log line written inside the block."""
    merged = {**(_job_fields.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _job_fields.set(merged)
    try:
        yield
    finally:
        _job_fields.reset(token)


class ContextFilter(logging.Filter):
    """Adds the current trace ids and job fields to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
            record.trace_flags = format(span_context.trace_flags, "02x")
        for key, value in (_job_fields.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the root logger (Celery and uvicorn loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


class DropNoisySpans(SpanProcessor):
    """Forwards every span to `inner` except the per-chunk spans of streaming responses."""

    def __init__(self, inner: SpanProcessor):
        self.inner = inner

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if not span.name.endswith(NOISY_SPAN_SUFFIXES):
            self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _exporter(settings: Settings) -> SpanExporter:
    if settings.otel_exporter_otlp_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        return OTLPSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter(
        endpoint=settings.otel_exporter_otlp_endpoint,
        insecure=settings.otel_exporter_otlp_endpoint.startswith("http://"),
    )


def setup_tracing(
    service_name: str, settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Install this process's tracer provider; None when OTEL_SDK_DISABLED is set."""
    global _provider
    if settings.otel_sdk_disabled:
        return None
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": __version__,
            "deployment.environment": settings.deployment_environment,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(DropNoisySpans(BatchSpanProcessor(exporter or _exporter(settings))))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the exporter (process exit, worker child shutdown)."""
    if _provider is not None:
        _provider.force_flush(5000)
        _provider.shutdown()


def instrument_clients() -> None:
    """Instrument outgoing HTTP and Redis calls (both processes)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    HTTPXClientInstrumentor().instrument()
    RedisInstrumentor().instrument()


def tracer() -> trace.Tracer:
    return trace.get_tracer("log_analyzer", __version__)
