"""Template mining: mask variable parts of log messages, then group them Drain-style.

One fixed configuration for every system. `mask` turns obvious variables (numbers, ids,
addresses, timestamps, pod hashes) into `<*>`; `TemplateMiner` then groups masked messages
in buckets keyed by token count and first token, merging a message into the most similar
template of its bucket (positions that differ become `<*>`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

WILDCARD = "<*>"

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
_TZ = r"(?:\s?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?"
# Timestamps that span several tokens become one `<*>`, so the token count stays stable.
# Patterns begin with a digit or `-` where they can, so the regex engine skips ahead fast;
# a lookbehind after that first character stands in for `\b`.
_NAMED_TIME = re.compile(
    r"\b(?:" + _DAY + r"\s+)?" + _MONTH + r"\s+\d{1,2}(?:,?\s+\d{4})?"
    r"(?:\s+" + _CLOCK + _TZ + r")?(?:\s+\d{4}\b)?"
)
_MONTH_HINT = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec").search
_NUMERIC_TIME = re.compile(
    r"\d(?<!\w\d)(?:"
    r"\d{3}-\d{2}-\d{2}(?:[T ]" + _CLOCK + r")?" + _TZ + r"(?![\w:])"
    r"|\d?/" + _MONTH + r"/\d{4}:\d{2}:\d{2}:\d{2}(?:\s[+-]\d{4})?"
    r"|\d?:\d{2}(?::\d{2})?(?:[.,]\d+)?\b)"
)
_IPV6_ADDR = r"(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}"
_IPV6 = re.compile(r"\[" + _IPV6_ADDR + r"\](?::\d+)?|(?<![\w:.])" + _IPV6_ADDR + r"(?![\w:])")
# Kubernetes pod names: `<name>-<replicaset hash>-<5 chars>`, `<name>-<5 chars>` or
# `<name>-<ordinal>`; the hash alphabet has no vowels, so ordinary words rarely match.
_POD_SUFFIX = re.compile(
    r"-(?<=[a-z0-9]-)(?:(?:[bcdfghjklmnpqrstvwxz2-9]{6,10}-)?[bcdfghjklmnpqrstvwxz2-9]{5}"
    r"(?![\w-])|\d+(?![\w.-]))"
)
_POD_MASK = "-" + WILDCARD
# Words that start with a digit or hold two or more (numbers, hex, ids, IPv4 addresses,
# versions, durations, numbered paths). Names with one trailing digit (`eth0`, `ssh2`,
# `SOCKS5`) stay: they are usually constants that tell templates apart.
# (Possessive ASCII classes in the lookahead keep it from backtracking: 1.5x faster.)
_DIGIT_WORD = re.compile(
    r"(?<![\w.\-/+])(?:[-+]?\d|(?=[a-zA-Z_.\-/+]*+\d[a-zA-Z_.\-/+]*+\d)[\w.\-/+])"
    r"[\w.\-/+]*+(?::\d+(?![\w.]))?"  # a port: host:port is one variable
)
_HAS_DIGIT = re.compile(r"\d").search


def fingerprint(template: str) -> str:
    """A stable identity for a template: a digest of its constant tokens, in order.

    Two runs that mine the same kind of line may generalise it differently (one more `<*>`);
    the constant words stay, so the same problem keeps its fingerprint across windows.
    """
    constants = " ".join(token for token in template.split() if WILDCARD not in token)
    return hashlib.sha1(constants.encode(), usedforsecurity=False).hexdigest()[:16]


# A line's shape: its UTF-8 bytes with each ASCII digit replaced by a stand-in of the same
# classes in every mask pattern (`\d`, `\w`, hex; 0 and 1 are outside the pod-hash
# alphabet, 2-9 inside). Lines of one shape are masked at the same spans, so when the masked
# text keeps no digit, every line of that shape masks to the same text.
_SHAPE = bytes.maketrans(b"0123456789", b"0022222222")
# Only a pod suffix (after `-` that follows a letter or digit) tells 0 and 1 from 2-9;
# a line without such a `-` has a coarser shape, every digit alike.
_SHAPE_ALIKE = bytes.maketrans(b"0123456789", b"0000000000")
_POD_DASH = re.compile(r"[a-z0-9]-").search


def mask(text: str) -> str:
    """Replace variable parts of a message (numbers, ids, addresses, times, ...) by `<*>`."""
    if _HAS_DIGIT(text) is None:
        return _POD_SUFFIX.sub(_POD_MASK, text) if "-" in text else text
    if _MONTH_HINT(text) is not None:
        text = _NAMED_TIME.sub(WILDCARD, text)
    text = _NUMERIC_TIME.sub(WILDCARD, text)
    if "-" in text:
        text = _POD_SUFFIX.sub(_POD_MASK, text)
    if "::" in text or text.count(":") >= 7:  # an IPv6 address has one or the other
        text = _IPV6.sub(WILDCARD, text)
    return _DIGIT_WORD.sub(WILDCARD, text)


@dataclass(slots=True)
class Template:
    """One mined template: its tokens (`<*>` for variables) and how many messages matched."""

    id: int
    tokens: list[str]
    count: int

    @property
    def text(self) -> str:
        """The template as one string, tokens joined by single spaces."""
        return " ".join(self.tokens)


def _similarity(template: list[str], tokens: list[str]) -> tuple[float, int]:
    """Share of informative positions where the tokens agree, and the template's wildcards."""
    same = 0
    informative = 0
    wildcards = 0
    for a, b in zip(template, tokens, strict=True):
        if a == b:
            if a == WILDCARD:
                wildcards += 1
                continue
            same += 1
        elif a == WILDCARD:
            wildcards += 1
        informative += 1
    if informative == 0:
        return 1.0, wildcards
    return same / informative, wildcards


def _generalize(a: list[str], b: list[str]) -> list[str]:
    return [x if x == y else WILDCARD for x, y in zip(a, b, strict=True)]


def _variable_gap(gap_a: list[str], gap_b: list[str], interior: bool) -> bool:
    """A gap is variable if one side is all variables, or it inserts a variable mid-line.

    An insertion must be interior: a trailing `user=<*>` makes a different template, an
    inserted `(<*> KB)` mid-line does not.
    """
    if gap_a and gap_b:
        return all(WILDCARD in t for t in gap_a) or all(WILDCARD in t for t in gap_b)
    return interior and any(WILDCARD in t for t in gap_a or gap_b)


_Segment = tuple[list[str], list[str], str | None]


def _align(a: list[str], b: list[str]) -> list[_Segment]:
    """Align two token lists by longest common subsequence.

    Returns segments `(gap in a, gap in b, shared token)`; the last one has no shared token.
    """
    # A shared head is matched token by token whatever follows, so only the rest needs the
    # quadratic table (templates of one bucket share their first tokens).
    head = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        head += 1
    segments: list[_Segment] = [([], [], token) for token in a[:head]]
    if head:
        a, b = a[head:], b[head:]
    n, m = len(a), len(b)
    lcs = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = lcs[i], lcs[i + 1]
        ai = a[i]
        right = 0  # row[j + 1]; `max` as a call costs more than this whole cell
        for j in range(m - 1, -1, -1):
            if ai == b[j]:
                right = below[j + 1] + 1
            else:
                down = below[j]
                if down > right:
                    right = down
            row[j] = right
    i = j = 0
    gap_a: list[str] = []
    gap_b: list[str] = []
    while i < n or j < m:
        if i < n and j < m and a[i] == b[j]:
            segments.append((gap_a, gap_b, a[i]))
            gap_a, gap_b = [], []
            i += 1
            j += 1
        elif j == m or (i < n and lcs[i + 1][j] >= lcs[i][j + 1]):
            gap_a.append(a[i])
            i += 1
        else:
            gap_b.append(b[j])
            j += 1
    segments.append((gap_a, gap_b, None))
    return segments


def _gaps_are_variable(a: list[str], b: list[str], max_gap: int) -> bool:
    """True when `a` and `b` align except for short gaps that each hold a variable.

    Every stretch left unaligned must pass `_variable_gap`, and the aligned constants must be
    at least half of either side's. That lets `<*> bytes sent` absorb
    `<*> bytes (<*> KB) sent` but keeps `Accepted ...`/`Failed ...` apart.
    """
    constants = max(sum(WILDCARD not in t for t in a), sum(WILDCARD not in t for t in b))
    anchors = 0
    for gap_a, gap_b, shared in _align(a, b):
        if len(gap_a) > max_gap or len(gap_b) > max_gap:
            return False
        interior = anchors > 0 and shared is not None
        if (gap_a or gap_b) and not _variable_gap(gap_a, gap_b, interior):
            return False
        if shared is not None:
            anchors += WILDCARD not in shared
    return anchors > 0 and 2 * anchors >= constants


def _merge_tokens(a: list[str], b: list[str]) -> list[str]:
    """A template covering both: shared tokens kept, each unaligned stretch one `<*>`."""
    if len(a) == len(b):
        return _generalize(a, b)
    merged: list[str] = []
    for gap_a, gap_b, shared in _align(a, b):
        if gap_a or gap_b:
            merged.append(WILDCARD)
        if shared is not None:
            merged.append(shared)
    return merged


class TemplateMiner:
    """Online template miner with bounded state.

    `add` masks a message and returns a signature id (one per distinct masked message, up to
    `max_signatures`); new signatures join the most similar cluster of their bucket (token
    count + first token), Drain-style. `finalize` then turns clusters into templates: it
    splits a cluster on positions that take a few values, each seen repeatedly (constants
    such as `GET`/`POST`), and merges templates whose differences are only variable gaps.
    `resolve(id)` maps an id from `add` to its final template.
    """

    def __init__(
        self,
        *,
        similarity: float = 0.7,
        max_signatures: int = 200_000,
        max_clusters: int = 20_000,
        max_bucket: int = 100,
        split_max_values: int = 5,
        split_min_count: int = 2,
        max_gap: int = 3,
        merge_candidates: int = 50,
        max_remembered: int = 20_000,
    ) -> None:
        self.similarity = similarity
        self.max_signatures = max_signatures
        self.max_clusters = max_clusters
        self.max_bucket = max_bucket  # clusters per (length, first token): bounds each search
        self.split_max_values = split_max_values
        self.split_min_count = split_min_count
        self.max_gap = max_gap
        self.merge_candidates = merge_candidates
        self.max_remembered = max_remembered  # entries of each memory of `mask` and `add`
        self._sig_ids: dict[str, int] = {}
        self._by_shape: dict[bytes, str] = {}  # see `mask`
        self._by_text: dict[str, int] = {}  # message -> its signature id, for `add`
        self._sig_text: list[str | None] = []  # None: overflow signature of a cluster
        self._sig_count: list[int] = []
        self._sig_cluster: list[int] = []
        self._overflow: dict[int, int] = {}
        self._clusters: list[list[str]] = []
        self._buckets: dict[tuple[int, str], list[int]] = {}
        self._final: list[int] = []
        self._templates: list[Template] = []
        self._dirty = False

    def mask(self, message: str) -> str:
        """`mask(message)`, remembered by the message's shape (up to `max_remembered`).

        Most lines differ from an earlier one only in their digits (`blk_-160…` vs
        `blk_-742…`); those cost one translation and one look-up instead of the regexes.
        """
        shape = message.encode().translate(_SHAPE if _POD_DASH(message) else _SHAPE_ALIKE)
        masked = self._by_shape.get(shape)
        if masked is not None:
            return masked
        masked = mask(message)
        if _HAS_DIGIT(masked) is None:  # a kept digit (`eth0`) is this line's, not its shape's
            if len(self._by_shape) >= self.max_remembered:
                self._by_shape.clear()
            self._by_shape[shape] = masked
        return masked

    def add(self, message: str) -> int:
        """Mask and mine one message; return its id (see `resolve`)."""
        sid = self._by_text.get(message)
        if sid is None:
            sid = self.add_masked(self.mask(message))
            # An overflow id stands for its cluster, which each new message still widens.
            if self._sig_text[sid] is not None:
                if len(self._by_text) >= self.max_remembered:
                    self._by_text.clear()
                self._by_text[message] = sid
            return sid
        self._sig_count[sid] += 1
        self._dirty = True
        return sid

    def add_masked(self, masked: str) -> int:
        """Mine one already-masked message; return its id (see `resolve`)."""
        sid = self._sig_ids.get(masked)
        if sid is None:
            sid = self._new_signature(masked)
        self._sig_count[sid] += 1
        self._dirty = True
        return sid

    def resolve(self, sid: int) -> int:
        """The index in `templates` of the template that id `sid` ended up in."""
        if self._dirty:
            self.finalize()
        return self._final[sid]

    @property
    def templates(self) -> list[Template]:
        """The final templates; `Template.id` is the index in this list."""
        if self._dirty:
            self.finalize()
        return self._templates

    @property
    def signatures(self) -> int:
        """How many distinct masked messages are held (at most `max_signatures`)."""
        return len(self._sig_ids)

    def _new_signature(self, masked: str) -> int:
        tokens = masked.split()
        cid = self._cluster_for(tokens)
        if len(self._sig_ids) < self.max_signatures:
            sid = len(self._sig_text)
            self._sig_ids[masked] = sid
            self._sig_text.append(masked)
        else:
            # Past the cap, unseen messages share one id per cluster (no per-message state).
            found = self._overflow.get(cid)
            if found is not None:
                return found
            sid = len(self._sig_text)
            self._overflow[cid] = sid
            self._sig_text.append(None)
        self._sig_count.append(0)
        self._sig_cluster.append(cid)
        return sid

    def _cluster_for(self, tokens: list[str]) -> int:
        first = tokens[0] if tokens else ""
        if WILDCARD in first:
            first = WILDCARD
        bucket = self._buckets.setdefault((len(tokens), first), [])
        best = -1
        best_sim = -1.0
        best_wild = -1
        for cid in bucket:
            sim, wild = _similarity(self._clusters[cid], tokens)
            if sim > best_sim or (sim == best_sim and wild > best_wild):
                best, best_sim, best_wild = cid, sim, wild
        full = len(bucket) >= self.max_bucket or len(self._clusters) >= self.max_clusters
        if best >= 0 and (best_sim >= self.similarity or full):
            self._clusters[best] = _generalize(self._clusters[best], tokens)
            return best
        self._clusters.append(tokens)
        bucket.append(len(self._clusters) - 1)
        return len(self._clusters) - 1

    def finalize(self) -> None:
        """Build the final templates from the clusters (runs again after later `add`s)."""
        parts, sig_part = self._split_clusters()
        parent = self._merge_gaps(parts)
        roots: dict[int, int] = {}
        templates: list[Template] = []
        for pid in sorted(range(len(parts)), key=lambda p: (parent[p] != p, p)):
            tokens, count = parts[pid]
            root = parent[pid]
            index = roots.get(root)
            if index is None:
                index = len(templates)
                roots[root] = index
                templates.append(Template(id=index, tokens=list(tokens), count=0))
            elif pid != root:
                template = templates[index]
                template.tokens = _merge_tokens(template.tokens, tokens)
            templates[index].count += count
        self._templates = templates
        self._final = [roots[parent[pid]] for pid in sig_part]
        self._dirty = False

    def _split_clusters(self) -> tuple[list[tuple[list[str], int]], list[int]]:
        """Split each cluster on its constant-like positions; return parts and sid -> part."""
        members: dict[int, list[int]] = {}
        for sid, cid in enumerate(self._sig_cluster):
            members.setdefault(cid, []).append(sid)
        parts: list[tuple[list[str], int]] = []
        sig_part = [0] * len(self._sig_cluster)
        for cid, sids in members.items():
            rows = [
                (sid, text.split()) for sid in sids if (text := self._sig_text[sid]) is not None
            ]
            positions = self._split_positions(rows) if len(rows) > 1 else []
            groups: dict[tuple[str, ...], int] = {}
            for sid, tokens in rows:
                key = tuple(tokens[i] for i in positions)
                pid = groups.get(key)
                count = self._sig_count[sid]
                if pid is None:
                    pid = len(parts)
                    groups[key] = pid
                    parts.append((tokens, count))
                else:
                    old, total = parts[pid]
                    parts[pid] = (_generalize(old, tokens), total + count)
                sig_part[sid] = pid
            overflow = self._overflow.get(cid)
            if overflow is not None:
                if groups:
                    pid = max(groups.values(), key=lambda p: parts[p][1])
                    tokens, total = parts[pid]
                    parts[pid] = (_generalize(tokens, self._clusters[cid]), total)
                else:
                    pid = len(parts)
                    parts.append((self._clusters[cid], 0))
                old, total = parts[pid]
                parts[pid] = (old, total + self._sig_count[overflow])
                sig_part[overflow] = pid
        return parts, sig_part

    def _split_positions(self, rows: list[tuple[int, list[str]]]) -> list[int]:
        """Positions whose values look like constants: few, repeated, none masked."""
        width = len(rows[0][1])
        positions = []
        for i in range(width):
            counts: dict[str, int] = {}
            for sid, tokens in rows:
                value = tokens[i]
                counts[value] = counts.get(value, 0) + self._sig_count[sid]
                if len(counts) > self.split_max_values:
                    break
            if not 2 <= len(counts) <= self.split_max_values:
                continue
            if min(counts.values()) < self.split_min_count:
                continue
            if any(WILDCARD in value for value in counts):
                continue
            positions.append(i)
        return positions

    def _merge_gaps(self, parts: list[tuple[list[str], int]]) -> list[int]:
        """Union parts that differ only by short variable gaps; return each part's root."""
        parent = list(range(len(parts)))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        constants = [frozenset(t for t in tokens if WILDCARD not in t) for tokens, _ in parts]
        sizes = [len(c) for c in constants]
        index: dict[tuple[str, int], list[int]] = {}
        for pid, (tokens, _) in enumerate(parts):
            first = WILDCARD if not tokens or WILDCARD in tokens[0] else tokens[0]
            index.setdefault((first, len(tokens)), []).append(pid)
        # Larger parts first, so a smaller part is folded into the one most lines share; each
        # part is compared with at most `merge_candidates` of the largest parts per index key,
        # which keeps this linear when rare one-off templates pile up.
        order = sorted(range(len(parts)), key=lambda p: -parts[p][1])
        for pids in index.values():
            pids.sort(key=lambda p: -parts[p][1])
            del pids[self.merge_candidates :]
        for pid in order:
            tokens = parts[pid][0]
            if not tokens or len(tokens) > 64:
                continue
            first = WILDCARD if WILDCARD in tokens[0] else tokens[0]
            firsts = {first, WILDCARD}
            mine, size = constants[pid], sizes[pid]
            for length in range(len(tokens) - self.max_gap, len(tokens) + self.max_gap + 1):
                for f in firsts:
                    for other in index.get((f, length), ()):
                        # Cheap necessary-ish tests before the quadratic alignment: half the
                        # constants of the larger side must be shared (so twice the smaller
                        # side's count must reach the larger's).
                        theirs = sizes[other]
                        if 2 * size < theirs or 2 * theirs < size or other == pid:
                            continue
                        if 2 * len(mine & constants[other]) < max(size, theirs):
                            continue
                        if find(other) == find(pid):
                            continue
                        if _gaps_are_variable(tokens, parts[other][0], self.max_gap):
                            ra, rb = find(pid), find(other)
                            if parts[ra][1] >= parts[rb][1]:
                                parent[rb] = ra
                            else:
                                parent[ra] = rb
        return [find(p) for p in range(len(parts))]
