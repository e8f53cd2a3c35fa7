"""After a job succeeds, its probable causes become sightings of findings with a stable
identity (namespace, template fingerprint) in its tenant's findings: `shared.findings_store`;
a finding seen for the first time is sent to NOTIFY_WEBHOOK_URL, if set (`workers.notify`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from shared.findings_store import record_sightings
from shared.schemas import JobStatus
from shared.tenancy import data_tenant
from workers import context
from workers.notify import deliver
from workers.runner import StageRun

logger = logging.getLogger(__name__)


def record_findings(run: StageRun, call_next: Callable[[], None]) -> None:
    call_next()
    if run.result is None:
        return
    if run.store.fields(run.job_id).get("status") != JobStatus.SUCCEEDED.value:
        return  # cancelled or fenced out: this run's result is not the job's
    tenant = data_tenant(run.tenant, run.settings)
    try:
        new = record_sightings(
            run.store.redis,
            tenant,
            run.job_id,
            run.request,
            run.result,
            run.settings.findings_ttl_s,
            adopt_legacy=tenant == data_tenant(None, run.settings),
        )
    except (RedisError, RuntimeError) as exc:  # the job's own result is already safe
        logger.warning("findings not recorded", extra={"error": str(exc)})
        return
    if not new:
        return
    logger.info("new findings", extra={"new_findings": len(new)})
    settings = run.settings
    if settings.notify_webhook_url:
        delivered = deliver(
            context.http_client(),
            run.store.redis,
            settings.notify_webhook_url,
            settings.notify_webhook_secret.get_secret_value(),
            new,
            run.job_id,
            tenant=tenant,
        )
        logger.info("webhook notified", extra={"delivered": delivered, "new_findings": len(new)})
