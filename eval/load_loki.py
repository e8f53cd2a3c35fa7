"""Push golden cases into a Loki through its push API.

    python -m eval.load_loki --url http://localhost:3100 --case db-disk-full
    python -m eval.load_loki --url http://localhost:3100 --all --end-at now

The pods are generated with `write_case` (into `--pods-root`, a temporary directory by
default) and read back from the kubelet-layout files: every CRI line becomes one entry of the
stream `{namespace, pod, container, node}`, in batches of at most `--batch` entries.

Loki rejects samples older than `reject_old_samples_max_age` (a week by default), so
`--end-at now` (or an RFC 3339 time) shifts every timestamp to make the case's window end
then; the shifted window is printed as one JSON line per case.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from eval.incidents import Case, all_cases, get_case, write_case
from eval.incidents.builder import rfc3339_ns, to_ns

MAX_BATCH = 5_000
_CRI = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z (stdout|stderr) [PF] ?(.*)",
    re.DOTALL,
)
_POD_DIR = re.compile(r"([^_]+)_([^_]+)_([^_]+)")

StreamKey = tuple[str, str, str]  # namespace, pod, container
Entry = tuple[int, str]  # ns timestamp, line


@dataclass(frozen=True)
class Loaded:
    """What was pushed for one case."""

    case: str
    entries: int
    batches: int
    start: str
    end: str


def parse_cri(line: str) -> Entry | None:
    """(ns since the epoch, message) of one CRI line; None if it is not one."""
    match = _CRI.fullmatch(line)
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, _stream, message = match.groups()
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
    )
    return to_ns(moment) + int((frac or "0").ljust(9, "0")), message


def read_streams(pods: Path) -> dict[StreamKey, list[Entry]]:
    """Every container's entries under a kubelet-layout `pods` dir, oldest first."""
    streams: dict[StreamKey, list[Entry]] = {}
    for pod_dir in sorted(p for p in pods.iterdir() if p.is_dir()):
        match = _POD_DIR.fullmatch(pod_dir.name)
        if match is None:
            continue
        namespace, pod, _uid = match.groups()
        for log in sorted(pod_dir.glob("*/*.log")):
            entries = streams.setdefault((namespace, pod, log.parent.name), [])
            for raw in log.read_text(encoding="utf-8").splitlines():
                entry = parse_cri(raw)
                if entry is not None:
                    entries.append(entry)
    for entries in streams.values():
        entries.sort(key=lambda e: e[0])
    return streams


def batches(
    streams: dict[StreamKey, list[Entry]], node: str, shift_ns: int, size: int = MAX_BATCH
) -> Iterator[dict[str, Any]]:
    """Push bodies of at most `size` entries in all, each stream's entries in time order."""
    body: list[dict[str, Any]] = []
    count = 0
    for (namespace, pod, container), entries in sorted(streams.items()):
        labels = {"namespace": namespace, "pod": pod, "container": container, "node": node}
        done = 0
        while done < len(entries):
            part = entries[done : done + size - count]
            done += len(part)
            body.append({"stream": labels, "values": [[str(ts + shift_ns), m] for ts, m in part]})
            count += len(part)
            if count == size:
                yield {"streams": body}
                body, count = [], 0
    if body:
        yield {"streams": body}


def push(client: httpx.Client, url: str, body: dict[str, Any], attempts: int = 6) -> None:
    """POST one batch; retry on 429 and 5xx (Loki's ingestion rate limit) with backoff."""
    delay = 1.0
    for attempt in range(attempts):
        response = client.post(f"{url.rstrip('/')}/loki/api/v1/push", json=body)
        if response.status_code < 300:
            return
        retryable = response.status_code == 429 or response.status_code >= 500
        if not retryable or attempt == attempts - 1:
            raise RuntimeError(f"push failed: {response.status_code} {response.text[:500]}")
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def shift_for(case: Case, end_at: str | None) -> int:
    """Nanoseconds to add so that the case's window ends at `end_at` (`now` or RFC 3339)."""
    if end_at is None:
        return 0
    target = (
        datetime.now(UTC)
        if end_at == "now"
        else datetime.fromisoformat(end_at.replace("Z", "+00:00"))
    )
    return to_ns(target.replace(microsecond=0)) - to_ns(case.end)


def load(
    client: httpx.Client, url: str, case: Case, root: Path, node: str, end_at: str | None
) -> Loaded:
    """Generate one case under `root`, read it back and push it."""
    pods = write_case(case, root)
    shift = shift_for(case, end_at)
    streams = read_streams(pods)
    pushed = 0
    total = 0
    for body in batches(streams, node, shift):
        push(client, url, body)
        pushed += 1
        total += sum(len(s["values"]) for s in body["streams"])
    return Loaded(
        case=case.name,
        entries=total,
        batches=pushed,
        start=rfc3339_ns(to_ns(case.start) + shift),
        end=rfc3339_ns(to_ns(case.end) + shift),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.load_loki", description=__doc__)
    parser.add_argument("--url", required=True, help="Loki base URL, e.g. http://localhost:3100")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", action="append", help="a case name (repeatable)")
    which.add_argument("--all", action="store_true", help="every case")
    parser.add_argument("--node", default="node-1", help="the `node` label of every stream")
    parser.add_argument("--end-at", help="shift the case so its window ends then: now | RFC 3339")
    parser.add_argument("--pods-root", type=Path, help="generate the pods here (kept)")
    args = parser.parse_args(argv)
    cases = all_cases() if args.all else [get_case(name) for name in args.case]
    with (
        tempfile.TemporaryDirectory(prefix="eval-pods-") as tmp,
        httpx.Client(timeout=60) as client,
    ):
        root = args.pods_root or Path(tmp)
        for case in cases:
            loaded = load(client, args.url, case, root, args.node, args.end_at)
            sys.stdout.write(json.dumps(loaded.__dict__) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
