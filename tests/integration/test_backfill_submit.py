"""What `POST /v1/backfills` checks before anything is queued, against the real app and a
real Redis: every namespace of a list, and what an `Idempotency-Key` may answer."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.auth
from api.main import create_app
from shared.settings import Settings

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
SHOP, ANYWHERE = f"shop-only-{RUN}", f"anywhere-{RUN}"
RANGE = {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"}


def entry(key: str, name: str, namespaces: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return {"name": name, "sha256": digest, "namespaces": namespaces}


@pytest.fixture
def queued() -> list[str]:
    return []


@pytest.fixture
def client(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queued: list[str]
) -> Iterator[TestClient]:
    monkeypatch.setattr(api.auth, "FILE_RECHECK_S", 0.0)
    keys = tmp_path / "keys.json"
    entries = [entry(SHOP, "shop-team", ["shop", "shop-[a-z]+"]), entry(ANYWHERE, "ops", [".*"])]
    keys.write_text(json.dumps({"keys": entries}))
    settings = Settings(redis_url=redis_url, otel_sdk_disabled=True, api_keys_file=str(keys))
    with TestClient(create_app(settings, enqueue=queued.append)) as test_client:
        yield test_client


def post(client: TestClient, key: str, namespaces: list[str], **headers: str) -> Any:
    body = {"namespaces": namespaces, "time_range": RANGE, "window": "30m"}
    return client.post("/v1/backfills", json=body, headers={"X-API-Key": key, **headers})


def test_every_namespace_of_a_list_is_checked_before_anything_is_queued(
    client: TestClient, queued: list[str]
) -> None:
    invalid = post(client, ANYWHERE, ["shop", "Not_A_Name", "payments", "-dash"])
    assert invalid.status_code == 422, invalid.text
    (detail,) = invalid.json()["detail"]
    assert detail["loc"] == ["body", "namespaces"]
    assert "'Not_A_Name'" in detail["msg"] and "'-dash'" in detail["msg"]
    assert "'shop'" not in detail["msg"] and "'payments'" not in detail["msg"]
    outside = post(client, SHOP, ["shop", "search", "shop-eu", "billing"])
    assert outside.status_code == 403, outside.text
    (detail,) = outside.json()["detail"]
    assert detail["loc"] == ["body", "namespaces"]
    assert "'search'" in detail["msg"] and "'billing'" in detail["msg"]
    assert "'shop-eu'" not in detail["msg"]
    assert queued == []
    accepted = post(client, SHOP, ["shop", "shop-eu"])
    assert accepted.status_code == 202 and accepted.json()["items"] == 4
    assert len(queued) == 4


def test_an_idempotency_key_answers_only_its_own_body_and_scope_comes_first(
    client: TestClient, queued: list[str]
) -> None:
    key = {"Idempotency-Key": f"nightly-{RUN}"}
    first = post(client, SHOP, ["shop"], **key)
    assert first.status_code == 202, first.text
    again = post(client, SHOP, ["shop"], **key)
    assert again.status_code == 202 and again.json() == first.json()
    assert len(queued) == 2  # the retry queued nothing
    # Out of the key's scope: 403, whatever the Idempotency-Key answered before.
    outside = post(client, SHOP, ["search"], **key)
    assert outside.status_code == 403, outside.text
    assert outside.json()["detail"][0]["loc"] == ["body", "namespaces"]
    # In scope but another body: 422 naming the header, not the earlier backfill.
    other = post(client, SHOP, ["shop-eu"], **key)
    assert other.status_code == 422, other.text
    (detail,) = other.json()["detail"]
    assert detail["loc"] == ["header", "Idempotency-Key"]
    assert first.json()["backfill_id"] not in other.text
    assert len(queued) == 2
    # The same Idempotency-Key of another API key is that key's own.
    theirs = post(client, ANYWHERE, ["shop-eu"], **key)
    assert theirs.status_code == 202 and theirs.json()["backfill_id"] != first.json()["backfill_id"]
