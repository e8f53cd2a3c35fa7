"""The committed sample incident: reproducible from its generator, and realistic enough."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "scripts" / "gen_sample_incident.py"
SAMPLE = ROOT / "deploy" / "sample"
PODS = SAMPLE / "pods"
ROOT_CAUSE = b"No space left on device"
CRI_LINE = re.compile(
    rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (stdout|stderr) ([PF]) (.*)", re.DOTALL
)
START = datetime(2026, 11, 24, 10, tzinfo=UTC)
END = datetime(2026, 11, 24, 11, tzinfo=UTC)


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def committed() -> dict[str, bytes]:
    if not PODS.is_dir():
        pytest.fail(
            f"{PODS} is missing: run `python {GENERATOR.relative_to(ROOT)} --out "
            f"{PODS.relative_to(ROOT)}`"
        )
    return _files(PODS)


def test_generator_reproduces_the_committed_sample(
    tmp_path: Path, committed: dict[str, bytes]
) -> None:
    out = tmp_path / "sample" / "pods"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    generated = _files(out)
    assert sorted(generated) == sorted(committed)
    changed = [name for name in generated if generated[name] != committed[name]]
    assert changed == [], "re-run the generator and commit its output"
    assert (out.parent / "README.md").read_bytes() == (SAMPLE / "README.md").read_bytes()


def test_layout_is_kubelet_style(committed: dict[str, bytes]) -> None:
    namespaces = set()
    for name in committed:
        pod_dir, container, log = name.split("/")
        namespace, pod, uid = pod_dir.split("_")
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uid
        )
        assert re.fullmatch(r"\d+\.log", log)
        assert container and pod
        namespaces.add(namespace)
    assert namespaces == {"shop", "payments", "monitoring"}


def test_lines_are_cri_formatted_in_the_window_and_in_order(
    committed: dict[str, bytes],
) -> None:
    partial = 0
    for name, data in committed.items():
        assert data.endswith(b"\n"), name
        last = ""
        pending_partial = False
        for line in data[:-1].split(b"\n"):
            match = CRI_LINE.fullmatch(line)
            assert match is not None, (name, line[:120])
            stamp = match.group(1).decode() + "." + match.group(2).decode()
            moment = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%S").replace(
                tzinfo=UTC
            )
            assert START <= moment < END, (name, stamp)
            assert stamp > last, (name, stamp)  # fixed width: string order is time order
            last = stamp
            pending_partial = match.group(4) == b"P"
            if pending_partial:
                partial += 1
                assert len(match.group(5)) == 16 * 1024
        assert not pending_partial, f"{name} ends with a partial line"
    assert partial >= 2


def test_size_is_demo_sized(committed: dict[str, bytes]) -> None:
    lines = sum(data.count(b"\n") for data in committed.values())
    size = sum(len(data) for data in committed.values())
    assert 5_000 <= lines <= 15_000
    assert size < 3 * 1024 * 1024


def test_root_cause_is_present_but_rare(committed: dict[str, bytes]) -> None:
    lines = [line for data in committed.values() for line in data.split(b"\n") if line]
    root_cause = [line for line in lines if ROOT_CAUSE in line]
    assert 1 <= len(root_cause) < 0.01 * len(lines)
    where = {name.split("_")[1] for name, data in committed.items() if ROOT_CAUSE in data}
    assert where == {"postgres-0"}
    # ... and buried under its consequences.
    refused = [line for line in lines if b"connection refused" in line.lower()]
    assert len(refused) > 100 * len(root_cause)


def test_incident_signals_are_present(committed: dict[str, bytes]) -> None:
    everything = b"\n".join(committed.values())
    for needle in (
        b'PANIC:  could not write to file "pg_wal/',
        b"database system is shut down",
        b"FATAL:  the database system is in recovery mode",
        b"dial tcp 10.42.0.17:5432: connect: connection refused",
        b"Readiness probe failed: HTTP probe failed with statuscode: 503",
        b"java.lang.OutOfMemoryError: Java heap space",
        b"\tat com.example.shop.cart.PendingWriteQueue.add(",
        b"Traceback (most recent call last):",
        b"postgres://app:S3cr3t-pass@postgres:5432/shop",
        b"password=S3cr3t-pass",
        b"Authorization: Bearer ey",
    ):
        assert needle in everything, needle
