"""The cross-cutting concerns of a stage, one module each, applied in `CHAIN` order.

Outermost first: the span (so it covers everything), the log context, metrics (they see
the mapped failure), the dispatch fence (messages of a run the reaper took over), admission
(poison jobs), the attempt fence (redeliveries), the job
heartbeat, error mapping (any exception becomes the job's failure), the findings a
successful job adds to its namespace's, and the stage events right around the work.
"""

from __future__ import annotations

from workers.middleware.admission import admit
from workers.middleware.attempts import attempt_fence
from workers.middleware.dispatch import dispatch_fence
from workers.middleware.errors import error_mapping
from workers.middleware.events import stage_events
from workers.middleware.findings import record_findings
from workers.middleware.heartbeat import job_heartbeat
from workers.middleware.log_context import job_log_context
from workers.middleware.metrics import stage_metrics
from workers.middleware.tracing import stage_span
from workers.runner import Middleware

CHAIN: tuple[Middleware, ...] = (
    stage_span,
    job_log_context,
    stage_metrics,
    dispatch_fence,
    admit,
    attempt_fence,
    job_heartbeat,
    error_mapping,
    record_findings,
    stage_events,
)

__all__ = ["CHAIN"]
