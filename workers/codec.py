"""Compact, JSON-safe encodings of stage outputs stored in Redis between stages."""

from __future__ import annotations

from typing import Any

from shared.schemas import Entry, FetchResult, Level, RawLine


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
