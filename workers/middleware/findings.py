"""After a job succeeds, its probable causes become sightings of findings with a stable
identity (namespace, template fingerprint): `shared.findings_store`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from shared.findings_store import record_sightings
from shared.schemas import JobStatus
from workers.runner import StageRun

logger = logging.getLogger(__name__)


def record_findings(run: StageRun, call_next: Callable[[], None]) -> None:
    call_next()
    if run.result is None:
        return
    if run.store.fields(run.job_id).get("status") != JobStatus.SUCCEEDED.value:
        return  # cancelled or fenced out: this run's result is not the job's
    try:
        new = record_sightings(
            run.store.redis, run.job_id, run.request, run.result, run.settings.findings_ttl_s
        )
    except (RedisError, RuntimeError) as exc:  # the job's own result is already safe
        logger.warning("findings not recorded", extra={"error": str(exc)})
        return
    if new:
        logger.info("new findings", extra={"new_findings": new})
