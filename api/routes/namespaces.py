"""`/v1/namespaces`: what the log source knows, within the caller's scope (for pickers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import PrincipalDep
from api.deps import StateDep
from api.errors import ERROR_RESPONSES
from api.namespaces import known_namespaces
from shared.errors import InvalidQueryError

router = APIRouter(tags=["namespaces"], responses=ERROR_RESPONSES)
DEFAULT_LOOKBACK = timedelta(hours=24)


@router.get("/v1/namespaces", response_model=list[str])
async def namespaces(
    state: StateDep,
    principal: PrincipalDep,
    start: Annotated[datetime | None, Query(description="default: 24 h before end")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
) -> list[str]:
    """Namespaces with logs between start and end that this key may analyse."""
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_LOOKBACK
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise InvalidQueryError(name, f"{name} needs a time zone", location="query")
    if end <= start:
        raise InvalidQueryError("end", "end must be after start", location="query")
    found = await known_namespaces(state.settings, start, end, principal.tenant)
    return [n for n in found if principal.allows(n)]
