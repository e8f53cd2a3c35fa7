"""Tenants: whose logs a key reads, and so whose stored data (findings, job history,
backfills, webhook deliveries) it writes and may read. One rule, for the API and the workers.

A key's tenant is its entry's `tenant`, else `LOKI_TENANT`, else `default` (a single-tenant
Loki): the tenant of the logs a job reads is the tenant its results belong to. Every Redis key
that holds such data names the tenant (`shared.redis_keys`), so a key of one tenant never
reads another's, whatever its role or namespace scope.
"""

from __future__ import annotations

from shared.settings import Settings

DEFAULT_TENANT = "default"


def loki_tenant(tenant: str | None, settings: Settings) -> str | None:
    """The `X-Scope-OrgID` a key's queries are sent as: its own tenant, else LOKI_TENANT,
    else none (a single-tenant Loki)."""
    return tenant or settings.loki_tenant or None


def data_tenant(tenant: str | None, settings: Settings) -> str:
    """The tenant the data of a key (or of its jobs) belongs to; `tenant` is the key's own
    (None or "" for a key whose entry names none)."""
    return loki_tenant(tenant, settings) or DEFAULT_TENANT
