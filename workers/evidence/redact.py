"""Secret and PII redaction for log messages, run before template mining.

A value is redacted for what it is: a documented token format (the rules in
`redaction_rules.py`, each with its provider's documentation), credentials in a URL or a
Go DSN, a private key, an e-mail address, or a long generated-looking string standing alone;
or for the field that holds it when the field's name says secret (`password`, `token`,
`sessionid`, …). A field merely called `key` or `*_key` (`key=DATABASE_URL`,
`cache_key=user:42`) is redacted only when its value looks random. Ids with a known shape
(UUIDs, hex digests, path segments) are not secrets, and `rabbit@host` or `git@host` are not
e-mail addresses. Each secret becomes a fixed placeholder such as `<redacted:jwt>`;
placeholders hold no digits, so the template miner sees them as constants.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from workers.evidence.redaction_rules import RULES, Rule

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_-]+")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _judge_without_uuids(value: str, judge: Callable[[str], bool]) -> bool | None:
    """`judge` on each stretch around the UUIDs in `value`; None when it holds none.

    A UUID is an id whatever else sits beside it (`Containers/<uuid>/Data`, `tenant-<uuid>`),
    and its 32 hex digits alone score as random: only the rest of the value can be a secret.
    """
    if len(value) < 36 or _UUID.search(value) is None:
        return None
    # The separators that joined a part to a UUID belong to neither.
    return any(judge(rest) for part in _UUID.split(value) if (rest := part.strip("/_-")))


def looks_random(value: str, *, min_length: int = 12, min_entropy: float = 3.0) -> bool:
    """A generated credential rather than a name, a path or an id with a known shape."""
    if len(value) < min_length or not _TOKEN_CHARS.fullmatch(value):
        return False
    rest = _judge_without_uuids(
        value, lambda part: looks_random(part, min_length=min_length, min_entropy=min_entropy)
    )
    if rest is not None:
        return rest
    digits = sum(c.isdigit() for c in value)
    letters = sum(c.isalpha() for c in value)
    if digits < 2 or letters < 2:
        return False
    # Generated strings mix letters and digits throughout; `order-1029384756` does not.
    switches = sum(a.isdigit() != b.isdigit() for a, b in zip(value, value[1:], strict=False))
    if switches < 3:
        return False
    cases = any(c.islower() for c in value) + any(c.isupper() for c in value)
    if "/" in value and cases < 2:  # a path (`uploads/2026/11/x`), not base64
        return False
    return _entropy(value) >= min_entropy


# A path segment that names or numbers something: `v1`, `orders`, `8080`, a UUID, a digest.
_PATH_WORD = re.compile(r"[a-z]+\d*|\d+|[0-9a-f]{8,}|[0-9A-F]{8,}|" + _UUID.pattern)
# Word separators of identifiers (`DFSClient_NONMAPREDUCE_1537864556_1`, `Win7-SRV08R2`).
_SEPARATORS = re.compile(r"[-_]")


# A digest names its algorithm (`sha512-…` in Subresource Integrity, `sha256:…`); a value
# after one of these labels is a digest or an id, whatever its entropy.
_DIGEST_PREFIX = re.compile(r"(?i)(?:sha\d*|md5)[-:=]")
_ID_LABEL = re.compile(
    r"(?i)(?:hash|digest|checksum|etag|integrity|fingerprint|nonce|salt|trace|span"
    r"|request[-_]?id|id-2|correlation[-_]?id)\W{0,3}$"
)


def looks_like_standalone_secret(value: str, before: str = "") -> bool:
    """A long generated string with no label: an API key, not a path or an identifier.

    A digest (it names its algorithm, or `before`, the text in front of it, calls it a hash,
    an etag, a request id, ...) is not a secret. A path (it starts or ends with `/`, or a
    segment is a word, a number or an id) is judged by what its parts are, and ids are not
    secrets. An identifier made of short parts joined
    by `-` or `_` is a name. What is left must mix upper case, lower case and digits at
    random, as generated keys do. UUIDs in it are ids: only what is around them is judged.
    """
    if "/" in value and (value.startswith("/") or value.endswith("/") or "//" in value):
        return False
    rest = _judge_without_uuids(value, lambda part: looks_like_standalone_secret(part, before))
    if rest is not None:
        return rest
    if "/" in value:
        if any(_PATH_WORD.fullmatch(part) for part in value.split("/")):
            return False
    if max(len(part) for part in _SEPARATORS.split(value)) < 20:
        return False
    classes = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
    )
    if classes < 3 or not looks_random(value, min_length=32, min_entropy=4.0):
        return False
    return not (_DIGEST_PREFIX.match(value) or _ID_LABEL.search(before))


# Domains that are never a mailbox's (RFC 6761, 6762, 8375, ICANN's `.internal`), and local
# parts of service accounts and Erlang node names (`git@github.com`, `rabbit@node-1.svc`).
_PRIVATE_TLDS = frozenset(
    "local localhost internal localdomain lan home intranet private test invalid arpa".split()
)
_SERVICE_USERS = frozenset(
    "git hg svn rabbit rabbitmq ejabberd emqx couchdb riak vernemq mongooseim".split()
)


def is_email(match: re.Match[str]) -> bool:
    """An e-mail address, not an Erlang node name, an SSH remote or a name on a private TLD."""
    local, _, domain = match.group(0).rpartition("@")
    if local.lower() in _SERVICE_USERS or domain.rpartition(".")[2].lower() in _PRIVATE_TLDS:
        return False
    rest = match.string[match.end() : match.end() + 2]
    # `user@host:path` is an scp/SSH remote, not a mailbox.
    return not (rest[:1] == ":" and rest[1:2] not in ("", " "))


def plainly_no_standalone_secret(value: str) -> bool:
    """Tests that make `looks_like_standalone_secret` false and see no digit's value.

    An absolute or slash-ended path, an identifier of short parts, fewer than three kinds
    of character: true here means false there, for this value and for any other with
    digits in the same places (`Redactor` relies on that).
    """
    if "/" in value and (value.startswith("/") or value.endswith("/") or "//" in value):
        return True
    if max(len(part) for part in _SEPARATORS.split(value)) < 20:
        return True
    classes = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
    )
    return classes < 3


_CHECKS: dict[str, Callable[[str], bool]] = {"random": looks_random}

_EMAIL = Rule(
    id="email",
    kind="email",
    keywords=("@",),
    pattern=r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    source="RFC 5322 §3.4.1 (addr-spec), dot-atom local parts only",
)
_HIGH_ENTROPY = Rule(
    id="high-entropy",
    kind="high_entropy",
    keywords=(),
    pattern=r"(?<![\w+/=.@-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w+/=@-])",
    source="no provider: a last resort for unlabelled generated keys",
)
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_-]{32}").search


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re.Pattern[str]
    secret_groups: tuple[str, ...]
    keep: Callable[[re.Match[str]], bool] | None
    digit_blind: bool  # whether it matches is the same for any digits (see `Redactor`)


# What may hold a digit in a pattern that treats every digit alike: `\d`, the range 0-9,
# a repeat count, a group's name. Any other digit (`ya29`, `[2-9]`) tells digits apart.
_ALIKE_DIGITS = re.compile(r"\\d|0-9|\{\d+(?:,\d*)?\}|\(\?P<\w+>|\(\?P=\w+\)")


def _digit_blind(pattern: str) -> bool:
    return not any(c.isdigit() for c in _ALIKE_DIGITS.sub("", pattern))


def _compile(rule: Rule, keep: Callable[[re.Match[str]], bool] | None = None) -> _Compiled:
    regex = re.compile(rule.pattern)
    groups = tuple(sorted(g for g in regex.groupindex if g.startswith("secret")))
    if rule.check:
        check = _CHECKS[rule.check]
        group_names = groups

        def keep_unless_checked(match: re.Match[str]) -> bool:
            value = next((match.group(g) for g in group_names if match.group(g) is not None), "")
            return not check(value)

        keep = keep_unless_checked
    return _Compiled(rule, regex, groups, keep, _digit_blind(rule.pattern))


_COMPILED = tuple(_compile(rule) for rule in RULES)


def _index(unbroken: bool) -> tuple[tuple[str, frozenset[int]], ...]:
    # Each distinct keyword is looked for once per line; it names the rules it wakes (by
    # index, so they still run in the rule set's order).
    rules = [(i, c.rule) for i, c in enumerate(_COMPILED) if c.rule.unbroken == unbroken]
    keywords = sorted({k for _, rule in rules for k in rule.keywords})
    return tuple((k, frozenset(i for i, rule in rules if k in rule.keywords)) for k in keywords)


_ANY_LINE_KEYWORDS = _index(unbroken=False)
_UNBROKEN_KEYWORDS = _index(unbroken=True)
_UNBROKEN_RUN = re.compile(r"[A-Za-z0-9_-]{16}").search
_EMAIL_RULE = _compile(_EMAIL, keep=lambda m: not is_email(m))
_ENTROPY_RULE = _compile(
    _HIGH_ENTROPY,
    keep=lambda m: (
        not looks_like_standalone_secret(m.group(0), m.string[max(0, m.start() - 24) : m.start()])
    ),
)


def _matches(compiled: _Compiled, text: str) -> bool:
    """Whether the rule finds a candidate at all (judged or not)."""
    return compiled.regex.search(text) is not None


def _apply(compiled: _Compiled, text: str) -> tuple[str, int]:
    keep = compiled.keep
    if keep is None:
        if compiled.regex.search(text) is None:
            return text, 0
    elif all(keep(match) for match in compiled.regex.finditer(text)):
        # Judged rules mostly find look-alikes (paths, ids, node names): no rewrite then.
        return text, 0
    count = 0
    placeholder = f"<redacted:{compiled.rule.kind}>"

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if compiled.keep is not None and compiled.keep(match):
            return match.group(0)
        count += 1
        for group in compiled.secret_groups:
            start, end = match.span(group)
            if start != -1:
                whole = match.group(0)
                offset = match.start()
                return whole[: start - offset] + placeholder + whole[end - offset :]
        return placeholder

    return compiled.regex.sub(replace, text), count


def redact(text: str) -> tuple[str, int]:
    """Replace secrets and e-mail addresses in `text`; return the text and the count."""
    text, total, _ = _redact(text)
    return text, total


def _redact(text: str) -> tuple[str, int, bool]:
    """`redact`, and whether the line is left alone for reasons blind to its digits.

    That is: every rule its keywords woke found nothing and treats all digits alike, the
    e-mail rule had no candidate, and the high-entropy rule none but plain non-secrets.
    """
    lowered = text.lower()
    total = 0
    woken = [rules for k, rules in _ANY_LINE_KEYWORDS if k in lowered]
    unbroken = _UNBROKEN_RUN(text) is not None
    if unbroken:
        woken += [rules for k, rules in _UNBROKEN_KEYWORDS if k in lowered]
    shut = True
    if woken:
        for index in sorted(frozenset().union(*woken)):
            compiled = _COMPILED[index]
            if not _matches(compiled, text):
                shut = shut and compiled.digit_blind
                continue
            shut = False
            text, found = _apply(compiled, text)
            total += found
    if "@" in text:
        shut = False
        text, found = _apply(_EMAIL_RULE, text)
        total += found
    # Without a run of 16 word characters or `-`, a run of 32 needs a `/` or a `+`
    # (placeholders never lengthen a run).
    if (unbroken or "/" in text or "+" in text) and _LONG_RUN(text) is not None:
        candidates = _ENTROPY_RULE.regex.finditer(text)
        if not all(plainly_no_standalone_secret(m.group(0)) for m in candidates):
            shut = False
            text, found = _apply(_ENTROPY_RULE, text)
            total += found
    return text, total, shut


# Every gate of `_redact` (keywords without a digit, `@`, runs of letters, digits, `_`, `-`,
# `+`, `/`) and every digit-blind rule sees a line the same whatever its digits are;
# keywords with a digit are checked apart. So a line left alone for such reasons vouches
# for every line of its digit shape.
_DIGITS_ALIKE = bytes.maketrans(b"0123456789", b"0000000000")
_DIGIT_KEYWORDS = tuple(
    k
    for k in sorted({k for k, _ in (*_ANY_LINE_KEYWORDS, *_UNBROKEN_KEYWORDS)})
    if any(c.isdigit() for c in k)
)


class Redactor:
    """`redact` that remembers the lines it has seen: a repeated line costs one look-up.

    It also remembers the digit shapes of lines left alone for reasons blind to digits
    (see `_redact`): another line of that shape is left as it is after a check of the few
    keywords that hold a digit. Meant for one job's lines (the memory holds them, secrets
    included, so it must not outlive the job); at most `max_lines` lines of up to
    `max_chars` each, and as many shapes, are kept.
    """

    def __init__(self, *, max_lines: int = 20_000, max_chars: int = 512) -> None:
        self.max_lines = max_lines
        self.max_chars = max_chars
        self._seen: dict[str, tuple[str, int]] = {}
        self._shut: set[bytes] = set()

    def __call__(self, text: str) -> tuple[str, int]:
        """The same as `redact(text)`."""
        done = self._seen.get(text)
        if done is not None:
            return done
        if len(text) > self.max_chars:
            return redact(text)
        shape = text.encode().translate(_DIGITS_ALIKE)
        if shape in self._shut:
            lowered = text.lower()
            if not any(k in lowered for k in _DIGIT_KEYWORDS):
                return text, 0
        redacted, total, shut = _redact(text)
        done = redacted, total
        if len(self._seen) >= self.max_lines:
            self._seen.clear()
            self._shut.clear()
        self._seen[text] = done
        if shut:
            self._shut.add(shape)
        return done
