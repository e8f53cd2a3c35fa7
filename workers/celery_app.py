"""The Celery application: configuration for long LLM tasks on a Redis broker, and signals."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import redis
from celery import Celery
from celery.signals import (
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from shared import redis_keys, telemetry
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

INTERACTIVE_QUEUE = redis_keys.INTERACTIVE_QUEUE
BACKFILL_QUEUE = redis_keys.BACKFILL_QUEUE
SERVICE_NAME = "log-analyzer-worker"


def configure(app: Celery, settings: Settings) -> None:
    """Apply the settings that make stages safe to redeliver and fair to long LLM calls."""
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        # Sweep for messages of dead workers every few seconds; kombu's default (10 s x a
        # throttle of 10) brings a killed worker's task back ~100 s after its timeout.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport_options=transport,
        visibility_timeout=settings.visibility_timeout_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Our job record in Redis is the source of truth; Celery results would only add keys.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        # A killed child must hand its message back, and each process reserves one task only.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_soft_time_limit=settings.stage_soft_time_limit_s,
        task_time_limit=settings.stage_time_limit_s,
        task_default_queue=INTERACTIVE_QUEUE,
        task_create_missing_queues=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_timeout_s,
        worker_enable_soft_shutdown_on_idle=True,
    )


celery_app = Celery("log_analyzer", include=["workers.tasks"])
configure(celery_app, get_settings())


def _heartbeat_loop(client: redis.Redis, key: str, interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            client.set(key, "1", ex=max(int(interval * 3), 2))
        except redis.RedisError as exc:
            logger.warning("worker heartbeat failed", extra={"error": str(exc)})
        stop.wait(interval)


_heartbeat_stop = threading.Event()


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    thread = threading.Thread(
        target=_heartbeat_loop,
        args=(
            client,
            redis_keys.worker_heartbeat(hostname),
            settings.worker_heartbeat_s,
            _heartbeat_stop,
        ),
        name="worker-heartbeat",
        daemon=True,
    )
    thread.start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _heartbeat_stop.set()


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
