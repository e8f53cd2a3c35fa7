"""What each role may call, as route dependencies (`api.access` says who has which role).

`/metrics` names the namespaces of every tenant (`log_analyzer_jobs_by_namespace`), so it
takes an `admin` key or a `metrics` key (a Prometheus scraper), never an analyst's; a
`metrics` key calls nothing else. Both refusals are a 403 naming the key header, audited.
"""

from __future__ import annotations

from api.access import Principal
from api.audit import audit
from api.auth import PrincipalDep
from api.deps import StateDep
from shared.errors import ForbiddenError

KEY_HEADER = "X-API-Key"


async def data_access(principal: PrincipalDep, state: StateDep) -> Principal:
    """The caller of a job, backfill, findings or namespace route; 403 for a metrics key."""
    if not principal.may_use_data:
        await audit(state.redis, principal, "data", "denied", reason="metrics_key")
        raise ForbiddenError(KEY_HEADER, "a metrics key may read /metrics only", location="header")
    return principal


async def metrics_access(principal: PrincipalDep, state: StateDep) -> Principal:
    """The caller of `/metrics`; 403 unless an admin or a metrics key."""
    if not principal.may_read_metrics:
        await audit(state.redis, principal, "metrics", "denied", reason="role")
        raise ForbiddenError(
            KEY_HEADER,
            f"/metrics needs an admin key or a metrics key, not an {principal.role.value} key",
            location="header",
        )
    return principal
