"""Stage outputs in Redis between stages: compact, JSON-safe encodings, saved and loaded.

Each stage's output is one compressed value under `redis_keys.stage_data`; it expires with
the job and is deleted when the job ends.
"""

from __future__ import annotations

from typing import Any

from shared.job_store import JobStore
from shared.schemas import Entry, FetchResult, Level, NormalizeResult, RawLine, Stage
from workers.stages.query_loki import Fetched


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
        [
            e.ts_ns,
            e.namespace,
            e.pod,
            e.container,
            e.node,
            e.level.value,
            e.message,
            e.fields,
            e.keep,
            e.raw,
        ]
        for e in entries
    ]


def decode_entries(rows: list[list[Any]]) -> list[Entry]:
    return [
        Entry(ts, ns, pod, container, node, Level(level), message, fields, keep, raw)
        for ts, ns, pod, container, node, level, message, fields, keep, raw in rows
    ]


def save_lines(store: JobStore, job_id: str, fetched: Fetched) -> None:
    previous = None if fetched.previous is None else encode_fetch(fetched.previous)
    payload = {"current": encode_fetch(fetched.current), "previous": previous}
    store.put_stage_data(job_id, Stage.QUERY_LOKI, payload)


def load_lines(store: JobStore, job_id: str) -> tuple[list[RawLine], list[RawLine] | None]:
    """The window's lines and the window before's (None when it was not read)."""
    payload = store.get_stage_data(job_id, Stage.QUERY_LOKI)
    previous = payload["previous"]
    return decode_fetch(payload["current"]), None if previous is None else decode_fetch(previous)


def save_entries(
    store: JobStore, job_id: str, entries: list[Entry], previous: list[Entry] | None
) -> None:
    payload = {
        "current": encode_entries(entries),
        "previous": None if previous is None else encode_entries(previous),
    }
    store.put_stage_data(job_id, Stage.FLATTEN, payload)


def load_entries(store: JobStore, job_id: str) -> tuple[list[Entry], list[Entry] | None]:
    payload = store.get_stage_data(job_id, Stage.FLATTEN)
    previous = payload["previous"]
    return (
        decode_entries(payload["current"]),
        None if previous is None else decode_entries(previous),
    )


def save_evidence(store: JobStore, job_id: str, result: NormalizeResult) -> None:
    store.put_stage_data(job_id, Stage.NORMALIZE, result.model_dump(mode="json"))


def load_evidence(store: JobStore, job_id: str) -> NormalizeResult:
    return NormalizeResult.model_validate(store.get_stage_data(job_id, Stage.NORMALIZE))
