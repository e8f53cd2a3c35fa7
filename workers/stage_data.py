"""Stage outputs in Redis between stages: compact, JSON-safe encodings, saved and loaded.

Each stage's output is one compressed value under `redis_keys.stage_data`; it expires with
the job and is deleted when the job ends.
"""

from __future__ import annotations

from typing import Any

from shared.job_store import JobStore
from shared.schemas import Entry, FetchResult, Level, NormalizeResult, RawLine, Stage


def encode_fetch(result: FetchResult) -> dict[str, Any]:
    """Label sets are stored once and referenced by index: most lines share a few streams."""
    index: dict[tuple[tuple[str, str], ...], int] = {}
    labels: list[dict[str, str]] = []
    lines: list[list[Any]] = []
    for raw in result.lines:
        key = tuple(sorted(raw.labels.items()))
        slot = index.get(key)
        if slot is None:
            slot = index[key] = len(labels)
            labels.append(raw.labels)
        lines.append([raw.ts_ns, slot, raw.line])
    return {
        "query": result.query,
        "labels": labels,
        "lines": lines,
        "seen": result.seen,
        "kept": result.kept,
        "dropped": result.dropped,
        "pages": result.pages,
    }


def decode_fetch(payload: dict[str, Any]) -> list[RawLine]:
    labels: list[dict[str, str]] = payload["labels"]
    return [RawLine(ts, labels[slot], line) for ts, slot, line in payload["lines"]]


def encode_entries(entries: list[Entry]) -> list[list[Any]]:
    return [
        [e.ts_ns, e.namespace, e.pod, e.container, e.node, e.level.value, e.message, e.fields]
        for e in entries
    ]


def decode_entries(rows: list[list[Any]]) -> list[Entry]:
    return [
        Entry(ts, ns, pod, container, node, Level(level), message, fields)
        for ts, ns, pod, container, node, level, message, fields in rows
    ]


def save_lines(store: JobStore, job_id: str, result: FetchResult) -> None:
    store.put_stage_data(job_id, Stage.QUERY_LOKI, encode_fetch(result))


def load_lines(store: JobStore, job_id: str) -> list[RawLine]:
    return decode_fetch(store.get_stage_data(job_id, Stage.QUERY_LOKI))


def save_entries(store: JobStore, job_id: str, entries: list[Entry]) -> None:
    store.put_stage_data(job_id, Stage.FLATTEN, encode_entries(entries))


def load_entries(store: JobStore, job_id: str) -> list[Entry]:
    return decode_entries(store.get_stage_data(job_id, Stage.FLATTEN))


def save_evidence(store: JobStore, job_id: str, result: NormalizeResult) -> None:
    store.put_stage_data(job_id, Stage.NORMALIZE, result.model_dump(mode="json"))


def load_evidence(store: JobStore, job_id: str) -> NormalizeResult:
    return NormalizeResult.model_validate(store.get_stage_data(job_id, Stage.NORMALIZE))
