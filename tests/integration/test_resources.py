"""Redis connections are closed by whoever opens them, not left to the garbage collector."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from shared.settings import get_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def connected_clients(url: str) -> int:
    """Connections the server holds, whoever opened them (the probe's own not counted)."""
    with redis.Redis.from_url(url) as probe:
        return len(probe.client_list()) - 1  # not the probe itself


def test_publishing_an_evaluation_closes_its_redis_client(redis_url: str) -> None:
    from eval.report import publish

    report = {"model": "stub", "summary": {"fulltext": {"findings_recall": 0.5}}}
    opened: list[redis.Redis] = []
    real_from_url = redis.Redis.from_url

    def recording_from_url(url: str, **kwargs: object) -> redis.Redis:
        client = real_from_url(url, **kwargs)
        opened.append(client)
        return client

    before = connected_clients(redis_url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.Redis, "from_url", recording_from_url)
        assert publish(report, redis_url) == 1
        # The client is still referenced here: only an explicit close frees its socket.
        assert opened
        assert connected_clients(redis_url) == before


def test_stopping_the_worker_heartbeat_closes_its_redis_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import celery_app

    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    before = connected_clients(redis_url)
    try:
        celery_app._start_heartbeat(sender=SimpleNamespace(hostname="leak-probe"))
        assert connected_clients(redis_url) == before + 1
        celery_app._stop_heartbeat()
        assert connected_clients(redis_url) == before
    finally:
        get_settings.cache_clear()


def test_the_test_suite_does_not_hide_resource_leaks() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    filters = config["tool"]["pytest"]["ini_options"]["filterwarnings"]
    assert "error" in filters
    hidden = [f for f in filters if "ResourceWarning" in f or "Unraisable" in f]
    assert not hidden, f"leaks would pass silently: {hidden}"
