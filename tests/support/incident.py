"""The small incident the integration tests and benchmarks analyse, and the request for it."""

from __future__ import annotations

from typing import Any

import httpx

INCIDENT_START_NS = 1_795_500_000_000_000_000  # 2026-11-24T06:00:00Z


def job_request(**overrides: Any) -> dict[str, Any]:
    """A `POST /v1/jobs` body for the incident's hour in namespace `shop`."""
    body: dict[str, Any] = {
        "time_range": {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"},
        "filters": {"namespace": "shop"},
        "limit": 15,
    }
    body.update(overrides)
    return body


def push_incident(loki_url: str) -> None:
    """Push the incident into the Loki stub through Loki's own push API: a disk-full PANIC,
    then 400 `connection refused` from the API pods, and 200 health checks."""
    streams: dict[tuple[str, str], list[list[str]]] = {}

    def add(pod: str, container: str, offset_ms: int, line: str) -> None:
        ts = INCIDENT_START_NS + offset_ms * 1_000_000
        streams.setdefault((pod, container), []).append([str(ts), line])

    for i in range(3):
        add(
            "postgres-0",
            "postgres",
            i * 1000,
            f'PANIC: could not write to file "pg_wal/xlogtemp.{40 + i}": No space left on device',
        )
    for i in range(400):
        add(
            f"api-7d9f8c6b5-{'abcde'[i % 5]}x2x4",
            "api",
            5000 + i * 50,
            f"ERROR dial tcp 10.42.0.{i % 7}:5432: connect: connection refused (attempt {i})",
        )
    for i in range(200):
        add("api-7d9f8c6b5-ax2x4", "api", 5000 + i * 77, f"INFO GET /healthz 200 {i % 9}ms")
    body = {
        "streams": [
            {
                "stream": {"namespace": "shop", "pod": pod, "container": c, "node": "node-1"},
                "values": values,
            }
            for (pod, c), values in streams.items()
        ]
    }
    response = httpx.post(f"{loki_url}/loki/api/v1/push", json=body, timeout=10)
    assert response.status_code == 204, response.text
