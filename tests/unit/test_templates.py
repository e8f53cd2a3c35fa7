"""Masking rules and template mining, including a grouping-accuracy floor on Loghub data."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from workers.evidence.templates import WILDCARD, TemplateMiner, mask

LOGHUB_SMALL = Path(__file__).resolve().parent.parent / "data" / "loghub_small"

MASKS = [
    ("took 150ms", "took <*>"),
    ("retry in 2.5s", "retry in <*>"),
    ("uptime 1h2m3s", "uptime <*>"),
    ("x -17 y +3.5", "x <*> y <*>"),
    ("count=42 status=500", "count=<*> status=<*>"),
    ('"id":123,"ok":true', '"id":<*>,"ok":true'),
    ("val 0x7f3a2b", "val <*>"),
    ("sha deadbeef1234abcd", "sha <*>"),
    ("req 3f2b8c1e-9a7d-4e21-b3c4-5d6e7f8a9b0c done", "req <*> done"),
    ("connect 10.0.0.12:5432 failed", "connect <*> failed"),
    ("from 192.168.1.1 port 22", "from <*> port <*>"),
    ("listen [::1]:8080 ok", "listen <*> ok"),
    ("addr fe80::1ff:fe23:4567:890a up", "addr <*> up"),
    ("addr 2001:db8:85a3:0:0:8a2e:370:7334 up", "addr <*> up"),
    ("ts=2024-05-01T12:34:56.789Z level=info", "ts=<*> level=info"),
    ("2024-05-01 12:34:56,123 INFO start", "<*> INFO start"),
    ("at 2024-05-01T12:34:56+02:00 done", "at <*> done"),
    (
        '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200',
        '<*> - - [<*>] "GET / <*>" <*>',
    ),
    ("Jun  9 06:06:20 combo sshd", "<*> combo sshd"),
    ("Sun Dec 04 04:47:44 2005 restart", "<*> restart"),
    ("at 12:00:01 tick", "at <*> tick"),
    ("pod api-7d9f8c6b5-x2x4k ready", "pod api-<*> ready"),
    ("pod fluentd-x2x4k ready", "pod fluentd-<*> ready"),
    ("statefulset web-0 ready", "statefulset web-<*> ready"),
    ("open /var/lib/kubelet/pods/1234/volumes failed", "open <*> failed"),
    ("onExtend:1514038530000 x", "onExtend:<*> x"),
    # Kept: no digits, or one trailing digit that names a constant.
    ("user bob logged in", "user bob logged in"),
    ("eth0 up ssh2 SOCKS5", "eth0 up ssh2 SOCKS5"),
    ('FATAL: password authentication failed for user "app"', None),
    ("<redacted:jwt> <redacted:private_key>", None),
    ("node ip-10-0-1-23.eu-west-1.compute.internal", "node <*>"),
]


@pytest.mark.parametrize(("text", "expected"), MASKS)
def test_mask(text: str, expected: str | None) -> None:
    assert mask(text) == (text if expected is None else expected)


def test_same_template_for_varying_values() -> None:
    miner = TemplateMiner()
    a = miner.add("Started container api in 150ms on node-12")
    b = miner.add("Started container api in 3.2s on node-7")
    c = miner.add("Stopped container api")
    assert miner.resolve(a) == miner.resolve(b) != miner.resolve(c)
    assert len(miner.templates) == 2
    started = miner.templates[miner.resolve(a)]
    assert started.count == 2
    assert started.text == "Started container api in <*> on node-<*>"


def test_variable_words_generalize() -> None:
    miner = TemplateMiner()
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    ids = [miner.add(f"Invalid user {u} from 10.0.0.{i} port 22") for i, u in enumerate(users)]
    assert len({miner.resolve(i) for i in ids}) == 1
    assert (
        miner.templates[miner.resolve(ids[0])].text == f"Invalid user {WILDCARD} from <*> port <*>"
    )


def test_repeated_constants_split() -> None:
    miner = TemplateMiner()
    ids = {}
    for verb in ("Started", "Stopped", "Paused"):
        ids[verb] = [
            miner.add(f"[instance: {i:08x}-1] VM {verb} (Lifecycle Event)") for i in range(5)
        ]
    groups = {verb: {miner.resolve(i) for i in got} for verb, got in ids.items()}
    assert all(len(g) == 1 for g in groups.values())
    assert len(set().union(*groups.values())) == 3


def test_variable_gap_merges_across_lengths() -> None:
    miner = TemplateMiner()
    a = [miner.add(f"conn {i} close, {i * 7} bytes sent, lifetime 00:0{i}") for i in range(1, 6)]
    b = [
        miner.add(f"conn {i} close, {i * 7} bytes ({i}.5 KB) sent, lifetime 00:0{i}")
        for i in range(1, 6)
    ]
    assert len({miner.resolve(i) for i in a + b}) == 1


def test_merged_template_text_covers_every_member() -> None:
    miner = TemplateMiner()
    for _ in range(6):
        miner.add("alice logged in from 10.0.0.1")
    for i in range(3):
        miner.add(f"{i}x{i} logged in from 10.0.0.{i}")
    (template,) = miner.templates
    assert template.text == "<*> logged in from <*>"
    assert template.count == 9


def test_ids_survive_more_adds() -> None:
    miner = TemplateMiner()
    first = miner.add("job 1 done")
    assert miner.templates[miner.resolve(first)].count == 1
    miner.add("job 2 done")
    assert miner.templates[miner.resolve(first)].count == 2


def test_signature_cap_bounds_state() -> None:
    miner = TemplateMiner(max_signatures=10)
    ids = [
        miner.add(f"user u{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}x logged in")
        for i in range(500)
    ]
    assert len(set(ids)) <= 11
    assert sum(t.count for t in miner.templates) == 500


def grouping_accuracy(truth: list[str], predicted: list[int]) -> float:
    sizes = Counter(truth)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, group in enumerate(predicted):
        groups[group].append(i)
    correct = sum(
        len(lines)
        for lines in groups.values()
        if len({truth[i] for i in lines}) == 1 and sizes[truth[lines[0]]] == len(lines)
    )
    return correct / len(truth)


def load(system: str) -> tuple[list[str], list[str]]:
    with (LOGHUB_SMALL / f"{system}_300.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def mine(lines: list[str], miner: TemplateMiner) -> list[int]:
    ids = [miner.add(line) for line in lines]
    return [miner.resolve(i) for i in ids]


# Measured 1.00 / 1.00 / 0.99; plain Drain-style clustering (no split, no gap merge) scores
# 0.37 / 0.51 / 0.88 on the same lines, so the floor catches a broken split or merge step.
@pytest.mark.parametrize("system", ["OpenStack", "Proxifier", "OpenSSH"])
def test_loghub_grouping_accuracy_floor(system: str) -> None:
    lines, truth = load(system)
    assert grouping_accuracy(truth, mine(lines, TemplateMiner())) >= 0.95


def test_floor_has_teeth() -> None:
    lines, truth = load("OpenStack")
    degraded = TemplateMiner(split_max_values=0, max_gap=0)
    assert grouping_accuracy(truth, mine(lines, degraded)) < 0.95


# Pairs of lines of one shape (the same digit classes at the same places) and lines that
# differ from it in a way the masks see: a kept digit, or 1 (outside a pod hash's alphabet).
SHAPE_SEQUENCE = [
    "pod api-7d9f8c6b5-x2x4k ready",
    "pod api-7d9f8c6b5-x3x4k ready",
    "pod api-7d9f8c6b5-x1x4k ready",
    "eth0 up 10.0.0.1",
    "eth1 up 10.0.0.2",
    "eth1 up 10.0.0.2",
    "took 150ms",
    "took 250ms",
]


def test_masking_by_shape_equals_mask() -> None:
    miner = TemplateMiner()
    assert [miner.mask(line) for line in SHAPE_SEQUENCE] == [mask(s) for s in SHAPE_SEQUENCE]
    assert miner.mask("eth7 up 10.0.0.9") == "eth7 up <*>"


def test_remembered_messages_mine_as_masked_ones() -> None:
    cached, plain = TemplateMiner(), TemplateMiner()
    ids = [cached.add(line) for line in SHAPE_SEQUENCE * 2]
    plain_ids = [plain.add_masked(mask(line)) for line in SHAPE_SEQUENCE * 2]
    assert ids == plain_ids
    assert [(t.text, t.count) for t in cached.templates] == [
        (t.text, t.count) for t in plain.templates
    ]
