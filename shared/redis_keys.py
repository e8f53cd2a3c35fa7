"""Every Redis key and channel name the service uses is built here, and only here."""

from __future__ import annotations

PREFIX = "la"

EVENTS_CHANNEL_PATTERN = f"{PREFIX}:events:*"
WORKER_HEARTBEAT_PATTERN = f"{PREFIX}:worker:*"
LLM_SLOTS = f"{PREFIX}:llm:slots"


def job(job_id: str) -> str:
    """Hash with the job record: status, stage, attempt, request, result, error, seq."""
    return f"{PREFIX}:job:{job_id}"


def job_events(job_id: str) -> str:
    """Stream holding the job's replayable event backlog; entry ids are `0-<seq>`."""
    return f"{PREFIX}:job:{job_id}:events"


def events_channel(job_id: str) -> str:
    """Pub/sub channel carrying the job's live events as `<seq>|<json>`."""
    return f"{PREFIX}:events:{job_id}"


def job_id_from_channel(channel: str) -> str:
    return channel.rsplit(":", 1)[-1]


def stage_data(job_id: str, stage: str) -> str:
    """Compressed output of one stage, read by the next stage."""
    return f"{PREFIX}:job:{job_id}:data:{stage}"


def worker_heartbeat(hostname: str) -> str:
    return f"{PREFIX}:worker:{hostname}"


METRICS = f"{PREFIX}:metrics"
ACTIVE_JOBS = f"{PREFIX}:jobs:active"
RUNNING_STAGES = f"{PREFIX}:jobs:running"
"""Jobs with a stage running now, scored by their last heartbeat: what job liveness watches."""
REAPER_LOCK = f"{PREFIX}:reaper:lock"


def rate_window(principal: str, minute: int) -> str:
    return f"{PREFIX}:rate:{principal}:{minute}"


def principal_jobs(principal: str) -> str:
    return f"{PREFIX}:principal:{principal}:jobs"


# Keys that hold a tenant's data name the tenant (`shared.tenancy`): a key of another tenant
# never reads them, whatever its role or namespace scope.


def _tenant(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}"


def principal_history(tenant: str, principal: str) -> str:
    """The key's latest submitted jobs (sorted set by submission time), for `GET /v1/jobs`."""
    return f"{_tenant(tenant)}:principal:{principal}:history"


def backfill(tenant: str, backfill_id: str) -> str:
    """Hash with the backfill record: owner, request, created_at, items (JSON)."""
    return f"{_tenant(tenant)}:backfill:{backfill_id}"


def backfill_idempotency(tenant: str, owner: str, key: str) -> str:
    """The backfill id an `Idempotency-Key` of this owner created."""
    return f"{_tenant(tenant)}:backfill-idem:{owner}:{key}"


def analysed_request(content_hash: str) -> str:
    """The job id that analyses a normalized request (`shared.backfill.request_hash`, which
    hashes the owner and tenant in: no tenant is served another's job)."""
    return f"{PREFIX}:analysed:{content_hash}"


def findings(tenant: str, namespace: str) -> str:
    """Hash of the namespace's findings: template fingerprint → Finding (JSON)."""
    return f"{_tenant(tenant)}:findings:{namespace}"


def findings_namespaces(tenant: str) -> str:
    """Set of the tenant's namespaces that have findings (their hashes may have expired)."""
    return f"{_tenant(tenant)}:findings-namespaces"


def webhook_deliveries(tenant: str) -> str:
    """List of the latest webhook deliveries of the tenant's findings (JSON: finding, job,
    attempts, outcome), newest first."""
    return f"{_tenant(tenant)}:webhook:deliveries"


# Before tenants: findings per namespace name only. `shared.findings_store` moves them into
# the default tenant's keys (and deletes them) on the API's start and before any read.
LEGACY_FINDINGS_NAMESPACES = f"{PREFIX}:findings:namespaces"


def legacy_findings(namespace: str) -> str:
    return f"{PREFIX}:findings:{namespace}"


# Before tenants too: a key's history and its backfills, which `api.legacy` moves into the
# tenant of the key that owns them when that key reads them.
def legacy_principal_history(principal: str) -> str:
    return f"{PREFIX}:principal:{principal}:history"


def legacy_backfill(backfill_id: str) -> str:
    return f"{PREFIX}:backfill:{backfill_id}"
