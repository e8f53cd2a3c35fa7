"""The worker's Celery application: configuration for long LLM tasks on a Redis broker, and
the process signals (logging, tracing per child, the worker heartbeat)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import redis
from celery import Celery
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from shared import queues, redis_keys, telemetry
from shared.settings import Settings, get_settings
from workers.llm.endpoint import RemoteLlmError, check_llm_url
from workers.periodic import Periodic

SERVICE_NAME = "log-analyzer-worker"


def configure(app: Celery, settings: Settings) -> None:
    """Apply the settings that make stages safe to redeliver and fair to long LLM calls."""
    app.conf.update(
        **queues.broker_settings(settings),
        # A killed child must hand its message back, and each process reserves one task only.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_soft_time_limit=settings.stage_soft_time_limit_s,
        task_time_limit=settings.stage_time_limit_s,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_timeout_s,
        worker_enable_soft_shutdown_on_idle=True,
    )


celery_app = Celery("log_analyzer", include=["workers.tasks"])
configure(celery_app, get_settings())

_heartbeat: Periodic | None = None
_heartbeat_client: redis.Redis | None = None


@worker_init.connect
def _check_llm_url(**_: Any) -> None:
    # Refuse to start with a model outside the cluster unless allowed (each request checks
    # again). SystemExit, because Celery logs and ignores a signal handler's exceptions.
    settings = get_settings()
    try:
        check_llm_url(settings.llama_url, allow_remote=settings.llm_allow_remote)
    except RemoteLlmError as exc:
        logging.getLogger(__name__).critical("%s", exc.message)
        raise SystemExit(f"log-analyzer worker: {exc.message}") from None


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    # `/ready` counts workers by these keys; they expire when the beats stop.
    global _heartbeat, _heartbeat_client
    settings = get_settings()
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=2
    )
    _heartbeat_client = client
    key = redis_keys.worker_heartbeat(hostname)
    ttl = max(int(settings.worker_heartbeat_s * 3), 2)
    _heartbeat = Periodic(
        "worker-heartbeat", settings.worker_heartbeat_s, lambda: client.set(key, "1", ex=ttl)
    )
    _heartbeat.start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    global _heartbeat, _heartbeat_client
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
    if _heartbeat_client is not None:
        _heartbeat_client.close()
        _heartbeat_client = None


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from installing its own plain-text handlers.
    telemetry.setup_logging(get_settings().log_level)


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    # Connection pools, the span exporter's thread and gRPC channels do not survive fork:
    # each child builds its own here, never the parent.
    from workers import context

    context.reset()
    if telemetry.setup_tracing(SERVICE_NAME, get_settings()) is not None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        telemetry.instrument_clients()
        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]  # untyped upstream


@worker_process_shutdown.connect
def _flush_child(**_: Any) -> None:
    telemetry.shutdown_tracing()
