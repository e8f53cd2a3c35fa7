"""The namespaces the log source knows, for backfills over a regex or over everything:
Loki's `namespace` label values in the range (as the key's tenant), or the namespaces of the
pod log directories (`LOG_SOURCE=files`)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path

import httpx

from shared.errors import ServiceUnavailableError
from shared.settings import Settings
from shared.tenancy import loki_tenant

LABEL_VALUES_PATH = "/loki/api/v1/label/namespace/values"
# kubelet's pod log directories: <namespace>_<pod>_<uid>
_POD_DIR = re.compile(r"^(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)_[^_]+_[0-9a-f-]+$")


async def known_namespaces(
    settings: Settings, start: datetime, end: datetime, tenant: str | None
) -> list[str]:
    """Every namespace with logs in [start, end); ServiceUnavailableError when the source
    does not answer."""
    if settings.log_source == "files":
        return await asyncio.to_thread(_on_disk, Path(settings.log_files_root))
    params = {"start": str(_ns(start)), "end": str(_ns(end))}
    org = loki_tenant(tenant, settings)
    headers = {"X-Scope-OrgID": org} if org else None
    url = settings.loki_url.rstrip("/") + LABEL_VALUES_PATH
    try:
        async with httpx.AsyncClient(timeout=settings.loki_timeout_s) as client:
            response = await client.get(url, params=params, headers=headers)
        response.raise_for_status()
        values = response.json().get("data") or []
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailableError(f"Loki did not list namespaces: {exc}") from exc
    return sorted({str(v) for v in values})


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _on_disk(root: Path) -> list[str]:
    try:
        names = [entry.name for entry in root.iterdir() if entry.is_dir()]
    except OSError as exc:
        raise ServiceUnavailableError(f"cannot list {root}: {exc}") from exc
    return sorted({m["namespace"] for n in names if (m := _POD_DIR.match(n))})
