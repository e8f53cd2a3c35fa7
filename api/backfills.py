"""Backfills in Redis: fan a backfill out into jobs on the `backfill` queue, read its state,
cancel it, retry its failed items. The pure parts are in `shared.backfill`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from redis.typing import EncodableT

from api.access import Principal
from api.audit import audit
from api.deps import AppState
from api.legacy import adopt_backfill
from api.namespaces import known_namespaces
from shared import redis_keys
from shared.backfill import item_count, item_request, request_hash, rollup, windows
from shared.errors import (
    ForbiddenError,
    InvalidQueryError,
    JobNotFoundError,
    ServiceUnavailableError,
)
from shared.job_store import now_iso
from shared.logql.query import validate_filters
from shared.logql.regex import compile_re2
from shared.schemas import AnalysisRequest, Filters, JobStatus
from shared.schemas.backfills import BackfillItem, BackfillRequest, BackfillView, Totals
from shared.schemas.request import TimeRange
from shared.validation import validate_request

REUSABLE = {JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.SUCCEEDED.value}
IDEMPOTENCY_KEY_MAX = 200


def namespace_problem(name: str) -> str | None:
    """Why `name` cannot be queried as a namespace (not an RFC 1123 label), or None."""
    try:
        validate_filters(Filters(namespace=name))
    except InvalidQueryError as exc:
        return exc.message
    except ValidationError as exc:  # empty or too long for Filters itself
        return exc.errors()[0]["msg"]
    return None


def named(names: list[str], shown: int = 20) -> str:
    """`'a', 'b'` (and how many more): the offending names in a message."""
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


async def namespaces_of(state: AppState, principal: Principal, body: BackfillRequest) -> list[str]:
    """The namespaces a backfill covers: those named (every one a valid name, else 422, and
    within the key's scope, else 403; both name all the offending ones), or those the log
    source knows that match the regex (or all), within the scope."""
    if body.namespaces is not None:
        invalid = [n for n in body.namespaces if namespace_problem(n)]
        if invalid:
            raise InvalidQueryError(
                "namespaces",
                f"not namespace names: {named(invalid)}; each "
                + (namespace_problem(invalid[0]) or ""),
            )
        outside = [n for n in body.namespaces if not principal.allows(n)]
        if outside:
            await audit(
                state.redis,
                principal,
                "backfill",
                "denied",
                namespace=",".join(outside[:20]),
                reason="namespace_out_of_scope",
            )
            raise ForbiddenError("namespaces", f"this key may not analyse {named(outside)}")
        return body.namespaces
    pattern = None
    if body.namespace_regex is not None:
        try:
            pattern = compile_re2(body.namespace_regex)
        except ValueError as exc:
            raise InvalidQueryError("namespace_regex", f"invalid RE2 regex: {exc}") from None
    window = body.time_range
    found = await known_namespaces(state.settings, window.start, window.end, principal.tenant)
    chosen = [
        n
        for n in found
        if (pattern is None or pattern.fullmatch(n))
        and principal.allows(n)
        and namespace_problem(n) is None  # a label value no query can select
    ]
    if not chosen:
        field = "namespace_regex" if pattern is not None else "namespaces"
        raise InvalidQueryError(field, "no namespace with logs in the time range matches")
    return chosen


def idempotent_replay(
    idempotency_key: str,
    body: BackfillRequest,
    stored_request: bytes | str | None,
    stored_items: bytes | str | None,
) -> int | None:
    """How many items the backfill an `Idempotency-Key` made has, when `body` is the one it
    was made with; None when that backfill expired. Another body: InvalidQueryError (422)."""
    if stored_request is None or stored_items is None:
        return None
    if _text(stored_request) != body.model_dump_json():
        raise InvalidQueryError(
            "Idempotency-Key",
            f"Idempotency-Key {idempotency_key[:40]!r} was used with another body: "
            "send that body again, or a new key for a new backfill",
            location="header",
        )
    return len(json.loads(stored_items))


async def create_backfill(
    state: AppState, principal: Principal, body: BackfillRequest, idempotency_key: str | None
) -> tuple[str, int]:
    """(backfill id, items): a new backfill, or the one this key's `Idempotency-Key` made
    with the same body (another body: 422, after the scope check)."""
    settings = state.settings
    tenant = principal.data_tenant(settings)
    idem = None
    if idempotency_key and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidQueryError("Idempotency-Key", "Idempotency-Key is too long", location="header")
    # Scope first: an Idempotency-Key never answers for a body this key may not submit.
    namespaces = await namespaces_of(state, principal, body)
    if idempotency_key:
        idem = redis_keys.backfill_idempotency(tenant, principal.id, idempotency_key)
        earlier = await state.redis.get(idem)
        if earlier:
            backfill_id = _text(earlier)
            stored = await state.redis.hmget(
                redis_keys.backfill(tenant, backfill_id), ["request", "items"]
            )
            replay = idempotent_replay(idempotency_key, body, *stored)
            if replay is not None:
                return backfill_id, replay
            await state.redis.delete(idem)  # its backfill expired: the key is free again
    count = item_count(body, len(namespaces))
    if count > settings.max_backfill_items:
        raise InvalidQueryError(
            "window",
            f"{len(namespaces)} namespaces × {count // len(namespaces)} windows = {count} "
            f"analyses, more than MAX_BACKFILL_ITEMS ({settings.max_backfill_items}): "
            "use a longer window, a shorter time range or fewer namespaces",
        )
    spans = windows(body.time_range, body)
    requests = [(ns, item_request(body, ns, span)) for ns in namespaces for span in spans]
    # The same options for every item; each namespace was checked above.
    validate_request(requests[0][1], settings)
    backfill_id = uuid.uuid4().hex
    items = await _start_items(state, principal, backfill_id, [r for _, r in requests])
    record: dict[EncodableT, EncodableT] = {
        "owner": principal.id,
        "created_at": now_iso(),
        "request": body.model_dump_json(),
        "items": json.dumps(items),
    }
    key = redis_keys.backfill(tenant, backfill_id)
    async with state.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=record)
        pipe.expire(key, settings.job_ttl_s)
        if idem is not None:
            pipe.set(idem, backfill_id, ex=settings.job_ttl_s, nx=True)
        await pipe.execute()
    await audit(
        state.redis,
        principal,
        "backfill",
        "accepted",
        namespace=",".join(namespaces[:20]),
        job_id=backfill_id,
    )
    return backfill_id, len(items)


async def _start_items(
    state: AppState, principal: Principal, backfill_id: str, requests: list[AnalysisRequest]
) -> list[dict[str, Any]]:
    """One item per request: an earlier job with the same normalized request (queued,
    running or succeeded) is reused; else a new job is created and queued."""
    hashes = [request_hash(principal.id, principal.tenant, r) for r in requests]
    earlier = await state.redis.mget([redis_keys.analysed_request(h) for h in hashes])
    earlier_ids = [_text(e) if e else None for e in earlier]
    async with state.redis.pipeline(transaction=False) as pipe:
        for job_id in earlier_ids:
            pipe.hget(redis_keys.job(job_id or "-"), "status")
        statuses = await pipe.execute()
    items: list[dict[str, Any]] = []
    fresh: list[str] = []
    for request, digest, job_id, status in zip(
        requests, hashes, earlier_ids, statuses, strict=True
    ):
        reused = job_id is not None and status is not None and _text(status) in REUSABLE
        if not reused:
            job_id = uuid.uuid4().hex
            await state.store.create(
                job_id,
                request,
                owner=principal.id,
                tenant=principal.tenant,
                backfill_id=backfill_id,
            )
            await state.redis.set(
                redis_keys.analysed_request(digest), job_id, ex=state.settings.job_ttl_s
            )
            fresh.append(job_id)
        items.append(
            {
                "namespace": request.filters.namespace,
                "start": request.time_range.start.isoformat(),
                "end": request.time_range.end.isoformat(),
                "job_id": job_id,
                "reused": reused,
            }
        )
    await _enqueue(state, backfill_id, fresh)
    return items


async def _enqueue(state: AppState, backfill_id: str, job_ids: list[str]) -> None:
    def publish() -> None:
        for job_id in job_ids:
            state.enqueue_backfill(job_id, backfill_id)

    try:
        # Celery's publish blocks; a thousand of them take a second or two.
        await asyncio.wait_for(
            asyncio.to_thread(publish), state.settings.enqueue_timeout_s + len(job_ids) * 0.05
        )
    except Exception as exc:  # noqa: BLE001 - any broker failure: the items stay queued-but-lost
        for job_id in job_ids:
            await state.store.finish(job_id, JobStatus.FAILED)
        raise ServiceUnavailableError(f"queue unavailable: {exc or 'timeout'}") from exc


async def load_record(state: AppState, principal: Principal, backfill_id: str) -> dict[str, str]:
    """The backfill's record; 404 when it does not exist or belongs to another key (or
    tenant: the record is stored under its tenant)."""
    tenant = principal.data_tenant(state.settings)
    key = redis_keys.backfill(tenant, backfill_id)
    raw = await state.redis.hgetall(key)
    if not raw:  # perhaps stored before tenants: its own key may move it here
        await adopt_backfill(state.redis, tenant, principal.id, backfill_id)
        raw = await state.redis.hgetall(key)
    record = {_text(k): _text(v) for k, v in raw.items()}
    if not record or not principal.may_see(record.get("owner")):
        raise JobNotFoundError(f"backfill {backfill_id} not found", job_id=backfill_id)
    return record


async def view_backfill(state: AppState, record: dict[str, str], backfill_id: str) -> BackfillView:
    """Totals, per-item status and the roll-up, read from the items' job records."""
    stored = json.loads(record["items"])
    async with state.redis.pipeline(transaction=False) as pipe:
        for item in stored:
            pipe.hmget(redis_keys.job(item["job_id"]), ["status", "summary", "finished_at"])
        rows = await pipe.execute()
    items: list[BackfillItem] = []
    totals = Totals()
    for item, (status, summary, finished_at) in zip(stored, rows, strict=True):
        # An expired job record counts as failed: its result is gone, retry reruns it.
        state_ = JobStatus(_text(status)) if status else JobStatus.FAILED
        facts = json.loads(summary) if summary else {}
        items.append(
            BackfillItem(
                namespace=item["namespace"],
                start=datetime.fromisoformat(item["start"]),
                end=datetime.fromisoformat(item["end"]),
                job_id=item["job_id"],
                status=state_,
                reused=item["reused"],
                finished_at=datetime.fromisoformat(_text(finished_at)) if finished_at else None,
                **facts,
            )
        )
        setattr(totals, state_.value, getattr(totals, state_.value) + 1)
        totals.reused += bool(item["reused"])
    return BackfillView(
        backfill_id=backfill_id,
        created_at=datetime.fromisoformat(record["created_at"]),
        request=BackfillRequest.model_validate_json(record["request"]),
        done=all(i.status.terminal for i in items),
        totals=totals,
        rollup=rollup(items),
        items=items,
    )


async def cancel_backfill(state: AppState, view: BackfillView) -> int:
    """Cancel every item not yet ended (running ones stop at their next check)."""
    cancelled = 0
    for item in view.items:
        if not item.status.terminal and not item.reused:
            cancelled += await state.store.finish(item.job_id, JobStatus.CANCELLED)
    return cancelled


async def retry_failed(
    state: AppState, principal: Principal, record: dict[str, str], view: BackfillView
) -> int:
    """Rerun the failed items only, as new jobs; how many."""
    stored = json.loads(record["items"])
    failed = [n for n, item in enumerate(view.items) if item.status is JobStatus.FAILED]
    if not failed:
        return 0
    body = BackfillRequest.model_validate_json(record["request"])
    backfill_id = view.backfill_id
    fresh: list[str] = []
    for n in failed:
        item = view.items[n]
        request = item_request(body, item.namespace, TimeRange(start=item.start, end=item.end))
        job_id = uuid.uuid4().hex
        await state.store.create(
            job_id, request, owner=principal.id, tenant=principal.tenant, backfill_id=backfill_id
        )
        digest = request_hash(principal.id, principal.tenant, request)
        await state.redis.set(
            redis_keys.analysed_request(digest), job_id, ex=state.settings.job_ttl_s
        )
        stored[n] = {**stored[n], "job_id": job_id, "reused": False}
        fresh.append(job_id)
    key = redis_keys.backfill(principal.data_tenant(state.settings), backfill_id)
    await state.redis.hset(key, "items", json.dumps(stored))
    await _enqueue(state, backfill_id, fresh)
    return len(fresh)


def ended_in_order(view: BackfillView) -> list[BackfillItem]:
    """The items that ended, in the order they ended (ties by job id): event `n` of a
    backfill's stream is the n-th of them, so a client resumes with Last-Event-ID."""
    ended = [i for i in view.items if i.status.terminal]
    return sorted(ended, key=lambda i: (i.finished_at or view.created_at, i.job_id))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
