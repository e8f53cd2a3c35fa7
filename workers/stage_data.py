"""Stage outputs between stages: compact chunks, stored as they come and read back lazily.

`query_loki` and `flatten` write their output as chunks, fields of one Redis hash per stage
named ``<part>/<group>/<seq>`` (`part`: the window or the one before) so that names sort in
time order within a group; the next stage reads them one chunk at a time, so a million lines
are never in memory at once. `normalize`'s evidence is one value. All of it expires with
the job and is deleted when the job ends. `MemoryChunks` keeps the same chunks in memory,
for the evaluation and tests that run the stages in process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.job_store import JobStore
from shared.schemas import Entry, Level, NormalizeResult, RawLine, Stage
from workers.sources import Chunk, merge_chunks, merge_groups


def encode_lines(lines: list[RawLine]) -> dict[str, Any]:
    """Label sets are stored once and referenced by index: most lines share a few streams."""
    index: dict[tuple[tuple[str, str], ...], int] = {}
    labels: list[dict[str, str]] = []
    rows: list[list[Any]] = []
    for raw in lines:
        key = tuple(sorted(raw.labels.items()))
        slot = index.get(key)
        if slot is None:
            slot = index[key] = len(labels)
            labels.append(raw.labels)
        row: list[Any] = [raw.ts_ns, slot, raw.line]
        if raw.weight != 1.0:
            row.append(raw.weight)
        rows.append(row)
    return {"labels": labels, "lines": rows}


def decode_lines(payload: dict[str, Any]) -> list[RawLine]:
    labels: list[dict[str, str]] = payload["labels"]
    return [RawLine(row[0], labels[row[1]], row[2], *row[3:]) for row in payload["lines"]]


def encode_entries(entries: list[Entry]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for e in entries:
        row = [
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
        if e.weight != 1.0:
            row.append(e.weight)
        rows.append(row)
    return rows


def decode_entries(rows: list[list[Any]]) -> list[Entry]:
    return [Entry(row[0], row[1], row[2], row[3], row[4], Level(row[5]), *row[6:]) for row in rows]


def _groups(names: list[str]) -> list[list[str]]:
    """Chunk names ``part/group/seq`` by group, each in order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("/")[1], []).append(name)
    return list(groups.values())


class RedisLines:
    """The query stage's chunks in Redis: written by the stage, read by flatten."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    def put(self, part: str, chunk: Chunk) -> None:
        name = f"{part}/{chunk.group}/{chunk.seq:09d}"
        self.store.put_chunk(self.job_id, Stage.QUERY_LOKI, name, encode_lines(chunk.lines))

    def drop(self, part: str) -> None:
        self.store.drop_chunks(self.job_id, Stage.QUERY_LOKI, f"{part}/")

    def clear(self) -> None:
        """Forget an earlier attempt's chunks."""
        self.store.drop_chunks(self.job_id, Stage.QUERY_LOKI)

    def lines(self, part: str) -> Iterator[RawLine]:
        """The lines of `part`, oldest first, loaded a chunk at a time."""
        names = self.store.chunk_names(self.job_id, Stage.QUERY_LOKI, f"{part}/")
        return merge_groups(self._load(group) for group in _groups(names))

    def _load(self, names: list[str]) -> Iterator[RawLine]:
        for name in names:
            yield from decode_lines(self.store.get_chunk(self.job_id, Stage.QUERY_LOKI, name))


class RedisEntries:
    """The flatten stage's chunks in Redis: written by flatten, read by normalize."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.written: dict[str, int] = {}

    def put_entries(self, part: str, entries: list[Entry]) -> None:
        seq = self.written.get(part, 0)
        self.written[part] = seq + 1
        name = f"{part}/entries/{seq:09d}"
        self.store.put_chunk(self.job_id, Stage.FLATTEN, name, encode_entries(entries))

    def clear(self) -> None:
        """Forget an earlier attempt's chunks."""
        self.store.drop_chunks(self.job_id, Stage.FLATTEN)

    def entries(self, part: str) -> Iterator[Entry]:
        """The entries of `part` in time order, loaded a chunk at a time."""
        for name in self.store.chunk_names(self.job_id, Stage.FLATTEN, f"{part}/"):
            yield from decode_entries(self.store.get_chunk(self.job_id, Stage.FLATTEN, name))


class MemoryChunks:
    """The same chunks in memory, for in-process runs (the evaluation, tests)."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[Chunk]] = {}
        self.batches: dict[str, list[list[Entry]]] = {}

    def put(self, part: str, chunk: Chunk) -> None:
        self.chunks.setdefault(part, []).append(chunk)

    def drop(self, part: str) -> None:
        self.chunks.pop(part, None)

    def lines(self, part: str) -> Iterator[RawLine]:
        return merge_chunks(self.chunks.get(part, []))

    def put_entries(self, part: str, entries: list[Entry]) -> None:
        self.batches.setdefault(part, []).append(entries)

    def entries(self, part: str) -> Iterator[Entry]:
        for batch in self.batches.get(part, []):
            yield from batch


def save_evidence(store: JobStore, job_id: str, result: NormalizeResult) -> None:
    store.put_stage_data(job_id, Stage.NORMALIZE, result.model_dump(mode="json"))


def load_evidence(store: JobStore, job_id: str) -> NormalizeResult:
    return NormalizeResult.model_validate(store.get_stage_data(job_id, Stage.NORMALIZE))
