"""Queue names, task names and the broker settings that producers and workers must share.

The API publishes tasks by name (it imports no worker code) and the workers register them
under the same names: a task is named after its stage, `log_analyzer.<stage>`. The broker
settings are plain data here, so that both Celery apps apply exactly the same ones (a
visibility timeout set on one side only is silently 3600 s on the other).
"""

from __future__ import annotations

from typing import Any, Final

from shared.schemas import Stage
from shared.settings import Settings

# On the Redis broker each queue is a list under exactly this key.
INTERACTIVE: Final = "interactive"
BACKFILL: Final = "backfill"
QUEUES: Final = (INTERACTIVE, BACKFILL)

TASK_PREFIX: Final = "log_analyzer."


def task_name(stage: Stage) -> str:
    """The Celery task that runs `stage`."""
    return f"{TASK_PREFIX}{stage.value}"


def broker_settings(settings: Settings) -> dict[str, Any]:
    """Celery configuration both the producer (API) and the workers apply."""
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        # Sweep for messages of dead workers every few seconds; kombu's default (10 s x a
        # throttle of 10) brings a killed worker's task back ~100 s after its timeout.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.redis_url.get_secret_value(),
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout_s,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # Our job record in Redis is the source of truth; Celery results would only add keys.
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": INTERACTIVE,
        "task_create_missing_queues": True,
        "task_send_sent_event": True,
    }
