"""`GET /metrics`: Prometheus text for the API and, through Redis, every worker."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from api.deps import StateDep
from shared import metrics, queues, redis_keys

router = APIRouter(tags=["observability"])


class _Snapshot(Collector):
    def __init__(self, families: Iterable[Metric]):
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: StateDep) -> Response:
    """Shared worker/API counters and histograms, queue depths and open streams."""
    raw = await state.redis.hgetall(redis_keys.METRICS)
    depths = {queue: int(await state.redis.llen(queue)) for queue in queues.QUEUES}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _Snapshot(
            [
                *metrics.collect_shared(raw),
                metrics.queue_depth_family(depths),
                metrics.sse_streams_family(state.hub.listener_count),
                metrics.hub_bad_messages_family(state.hub.bad_messages),
            ]
        )
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
