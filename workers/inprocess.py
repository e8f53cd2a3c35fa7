"""A job's stages run in process, one after the other, their outputs in memory: what the
evaluation and tests use to see what a job finds, without Redis or Celery."""

from __future__ import annotations

from dataclasses import dataclass

from shared.schemas import AnalysisRequest, FlattenCounts, NormalizeResult, QueryCounts
from workers.sources import LogSource
from workers.stage_data import MemoryChunks
from workers.stages import flatten, normalize, query_loki


@dataclass
class Analysis:
    """What the first three stages produced: counts, then evidence and findings."""

    query: QueryCounts
    flatten: FlattenCounts
    normalized: NormalizeResult


def analyze(request: AnalysisRequest, source: LogSource, *, previous_budget: int) -> Analysis:
    """query_loki, flatten and normalize for `request`, as a worker would run them."""
    memory = MemoryChunks()
    query = query_loki.run(
        request,
        source,
        memory,
        previous_budget=min(previous_budget, request.scan_limit),
        context=flatten.may_be_multiline,
    )
    available = query.previous_seen is not None
    previous_lines = memory.lines(query_loki.PREVIOUS) if available else None
    flattened = flatten.run(memory.lines(query_loki.CURRENT), previous_lines, memory)
    memory.chunks.clear()
    normalized, _ = normalize.run(
        memory.entries(query_loki.CURRENT),
        limit=request.limit,
        previous=memory.entries(query_loki.PREVIOUS) if available else None,
        window=normalize.window_info(request, query),
    )
    return Analysis(query, flattened, normalized)
