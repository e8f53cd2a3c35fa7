"""`/v1/backfills`: analyse many namespaces window by window; `/v1/findings`: what they found."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.audit import audit
from api.auth import PrincipalDep
from api.backfills import (
    cancel_backfill,
    create_backfill,
    ended_in_order,
    load_record,
    namespace_problem,
    retry_failed,
    view_backfill,
)
from api.deps import StateDep
from api.errors import ERROR_RESPONSES
from api.key_watch import access_lost
from api.routes.jobs import parse_last_event_id, stream_error
from api.urls import public_url
from shared.errors import ForbiddenError, InvalidQueryError
from shared.findings_store import known_namespaces, list_findings, migrate_legacy_findings
from shared.schemas.backfills import BackfillAccepted, BackfillRequest, BackfillView, Finding
from shared.tenancy import data_tenant

router = APIRouter(tags=["backfills"], responses=ERROR_RESPONSES)
BACKFILL_POLL_S = 1.0  # items end seconds apart; their job records are the source of truth


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
    status_url = public_url(request, state.settings, "get_backfill", backfill_id=backfill_id)
    response.headers["Location"] = status_url
    return BackfillAccepted(backfill_id=backfill_id, items=items, status_url=status_url)


@router.get("/v1/backfills/{backfill_id}", response_model=BackfillView)
async def get_backfill(backfill_id: str, state: StateDep, principal: PrincipalDep) -> BackfillView:
    """Totals, per-item status and the roll-up (namespaces by new findings, then errors)."""
    record = await load_record(state, principal, backfill_id)
    return await view_backfill(state, record, backfill_id)


@router.get(
    "/v1/backfills/{backfill_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "`item` (id n: the n-th item to end), `progress` (totals), `done`.",
            "content": {"text/event-stream": {"schema": {"type": "object"}}},
        }
    },
)
async def backfill_events(
    backfill_id: str,
    state: StateDep,
    principal: PrincipalDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events: each item as it ends, progress totals, then `done`; resumable."""
    after = parse_last_event_id(last_event_id)
    record = await load_record(state, principal, backfill_id)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        sent = after
        last_totals = None
        while True:
            lost = access_lost(state.keys, principal)  # checked every BACKFILL_POLL_S
            if lost is not None:
                await audit(state.redis, principal, "stream", "revoked", job_id=backfill_id)
                yield stream_error(*lost)
                return
            view = await view_backfill(state, record, backfill_id)
            ended = ended_in_order(view)
            for n, item in enumerate(ended[sent:], start=sent + 1):
                yield ServerSentEvent(data=item.model_dump_json(), event="item", id=str(n))
            sent = max(sent, len(ended))
            totals = view.totals.model_dump()
            if totals != last_totals:
                progress = {"done": len(ended), "total": len(view.items), "totals": totals}
                yield ServerSentEvent(data=json.dumps(progress), event="progress")
                last_totals = totals
            if view.done:
                done = {"backfill_id": backfill_id, "totals": totals}
                yield ServerSentEvent(data=json.dumps(done), event="done", id=str(sent + 1))
                return
            await asyncio.sleep(BACKFILL_POLL_S)

    return EventSourceResponse(frames(), ping=int(state.settings.sse_ping_s))


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
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    since: Annotated[
        str | None,
        Query(
            description="last seen at or after; RFC 3339 with a time zone (e.g. ...Z)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
) -> list[Finding]:
    """Findings of the key's tenant by (namespace, template fingerprint), most recently seen
    first."""
    since_at = _rfc3339(since) if since is not None else None
    for name in ("namespace", "since"):
        if len(request.query_params.getlist(name)) > 1:
            raise InvalidQueryError(name, f"{name} may be given once", location="query")
    if namespace is not None and (problem := namespace_problem(namespace)):
        raise InvalidQueryError("namespace", problem, location="query")
    settings = state.settings
    # Findings stored before tenants belong to the default tenant: move them before reading.
    await migrate_legacy_findings(state.redis, data_tenant(None, settings), settings.findings_ttl_s)
    tenant = principal.data_tenant(settings)
    if namespace is not None:
        if not principal.allows(namespace):
            raise ForbiddenError(
                "namespace", f"this key may not read namespace {namespace!r}", location="query"
            )
        namespaces = [namespace]
    else:
        known = await known_namespaces(state.redis, tenant)
        namespaces = [n for n in known if principal.allows(n)]
    return await list_findings(state.redis, tenant, namespaces, since_at)


def _rfc3339(value: str) -> datetime:
    """`since` as RFC 3339 with a time zone: a bare number (read by pydantic as epoch seconds)
    or a naive time is refused, never guessed, like every time the API takes."""
    try:
        parsed = datetime.fromisoformat(value) if "T" in value or " " in value else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidQueryError(
            "since",
            "since needs RFC 3339 with a time zone (e.g. 2026-11-24T06:00:00Z)",
            location="query",
        )
    return parsed
