"""`/v1/backfills`: analyse many namespaces window by window; `/v1/findings`: what they found."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.audit import audit
from api.auth import PrincipalDep
from api.backfills import (
    cancel_backfill,
    create_backfill,
    load_record,
    retry_failed,
    view_backfill,
)
from api.deps import StateDep
from api.errors import ERROR_RESPONSES
from shared.errors import ForbiddenError
from shared.findings_store import known_namespaces, list_findings
from shared.schemas.backfills import BackfillAccepted, BackfillRequest, BackfillView, Finding

router = APIRouter(tags=["backfills"], responses=ERROR_RESPONSES)


@router.post("/v1/backfills", status_code=202, response_model=BackfillAccepted)
async def submit_backfill(
    body: BackfillRequest,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> BackfillAccepted:
    """Queue one analysis per (namespace, window) on the backfill queue; the same body with the
    same `Idempotency-Key` answers the same backfill."""
    backfill_id, items = await create_backfill(state, principal, body, idempotency_key)
    status_url = str(request.url_for("get_backfill", backfill_id=backfill_id))
    response.headers["Location"] = status_url
    return BackfillAccepted(backfill_id=backfill_id, items=items, status_url=status_url)


@router.get("/v1/backfills/{backfill_id}", response_model=BackfillView)
async def get_backfill(backfill_id: str, state: StateDep, principal: PrincipalDep) -> BackfillView:
    """Totals, per-item status and the roll-up (namespaces by new findings, then errors)."""
    record = await load_record(state, principal, backfill_id)
    return await view_backfill(state, record, backfill_id)


@router.delete("/v1/backfills/{backfill_id}", status_code=202, response_model=BackfillView)
async def cancel(backfill_id: str, state: StateDep, principal: PrincipalDep) -> BackfillView:
    """Cancel the items not yet ended; running ones stop at their next check."""
    record = await load_record(state, principal, backfill_id)
    await cancel_backfill(state, await view_backfill(state, record, backfill_id))
    await audit(state.redis, principal, "cancel", "accepted", job_id=backfill_id)
    return await view_backfill(state, record, backfill_id)


@router.post("/v1/backfills/{backfill_id}/retry", status_code=202, response_model=BackfillView)
async def retry(backfill_id: str, state: StateDep, principal: PrincipalDep) -> BackfillView:
    """Rerun the failed items only."""
    record = await load_record(state, principal, backfill_id)
    await retry_failed(state, principal, record, await view_backfill(state, record, backfill_id))
    return await view_backfill(state, await load_record(state, principal, backfill_id), backfill_id)


@router.get("/v1/findings", response_model=list[Finding])
async def findings(
    state: StateDep,
    principal: PrincipalDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    since: Annotated[datetime | None, Query(description="last seen at or after")] = None,
) -> list[Finding]:
    """Findings by (namespace, template fingerprint), most recently seen first."""
    if namespace is not None:
        if not principal.allows(namespace):
            raise ForbiddenError(
                "namespace", f"this key may not read namespace {namespace!r}", location="query"
            )
        namespaces = [namespace]
    else:
        namespaces = [n for n in await known_namespaces(state.redis) if principal.allows(n)]
    return await list_findings(state.redis, namespaces, since)
