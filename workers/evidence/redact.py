"""Secret and PII redaction for log messages, run before template mining.

A value is redacted for what it is (known token formats, URL credentials, private keys,
e-mail addresses, long high-entropy strings) or for the field that holds it when the field's
name says secret (`password`, `secret`, `token`, `api_key`, `authorization`, …). A field
merely called `key` or `*_key` (`key=DATABASE_URL`, `cache_key=user:42`, `object_key=a/b.pdf`)
is redacted only when its value looks random. Each secret becomes a fixed placeholder such
as `<redacted:jwt>`; placeholders hold no digits, so the template miner sees them as
constants and never splits a template on them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

_Replacement = str | Callable[[re.Match[str]], str]

# A field names a secret when its name ends in one of these (case-insensitive): secret words,
# and the `*key` names that hold credentials. Lookbehinds after a possessive `[\w.-]++` keep
# the scan linear.
_SECRET_KEY_END = (
    r"(?:(?<=token)|(?<=secret)|(?<=password)|(?<=passwd)|(?<=pwd)"
    r"|(?<=apikey)|(?<=api_key)|(?<=api-key)|(?<=accesskey)|(?<=access_key)"
    r"|(?<=secretkey)|(?<=secret_key)|(?<=privatekey)|(?<=private_key)|(?<=signing_key)"
    r"|(?<=encryption_key)|(?<=master_key)|(?<=session_key)|(?<=client_key))"
)
# Only these keys are trusted without `=` or quotes (`password: x`); `token: expired` stays.
_STRONG_KEY_END = (
    r"(?:(?<=password)|(?<=passwd)|(?<=pwd)|(?<=apikey)|(?<=api_key)|(?<=api-key)"
    r"|(?<=secretkey)|(?<=secret_key)|(?<=client_secret))"
)
_KEY_VALUE = re.compile(
    r"(?i)(?<![\w.-])(?P<lead>"
    + r"""(?P<q>["'])[\w.-]++"""  # JSON or dict: "password": "x"
    + _SECRET_KEY_END
    + r"(?P=q)\s*:\s*"
    + r"|[\w.-]++"  # logfmt, URL query, ini: password=x
    + _SECRET_KEY_END
    + r"\s*=\s*"
    + r"|[\w.-]++"  # YAML-ish: password: x
    + _STRONG_KEY_END
    + r":\s*"
    + r")(?!<redacted)"
    + r"""(?:(?P<vq>["'])(?:\\.|(?!(?P=vq)).)*+(?P=vq)|[^\s&,;"'}\]]++)"""
)


def _keep_key(match: re.Match[str]) -> str:
    quote = match.group("vq") or ""
    return f"{match.group('lead')}{quote}<redacted:secret>{quote}"


# Fields called `key` or `*_key` that are not secret by name: `key=DATABASE_URL` names a
# config key, `cache_key=user:42:profile` a cache entry. Their value goes only if it looks
# random (see `looks_random`).
_ANY_KEY_VALUE = re.compile(
    r"""(?i)(?<![\w.-])(?P<lead>(?P<q>["']?)[\w.-]*+(?<=key)(?P=q)\s*[:=]\s*)(?!<redacted)"""
    r"""(?:(?P<vq>["'])(?P<qv>[^"'\s]*)(?P=vq)|(?P<v>[^\s&,;"'}\]]++))"""
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_-]+")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str, *, min_length: int = 12, min_entropy: float = 3.0) -> bool:
    """A generated credential rather than a name, a path or an id with a known shape."""
    if len(value) < min_length or _UUID.fullmatch(value) or not _TOKEN_CHARS.fullmatch(value):
        return False
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


def _random_key_value(match: re.Match[str]) -> str:
    quote = match.group("vq") or ""
    value = match.group("qv") if quote else match.group("v")
    if not looks_random(value):
        return match.group(0)
    return f"{match.group('lead')}{quote}<redacted:secret>{quote}"


# Long strings of mixed case and digits anywhere (an API key with no label).
_HIGH_ENTROPY = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w+/=-])")


def _high_entropy(match: re.Match[str]) -> str:
    value = match.group(0)
    classes = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
    )
    if classes < 3 or not looks_random(value, min_length=32, min_entropy=4.0):
        return value
    return "<redacted:high_entropy>"


# (triggers, pattern, replacement). A rule runs only when one of its lower-case trigger
# strings occurs in the lower-cased text, so lines with no candidate cost a few `in` checks.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str], _Replacement], ...] = (
    (
        ("-----begin",),
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*)"
        ),
        "<redacted:private_key>",
    ),
    (
        ("hooks.slack",),
        re.compile(r"https?://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+"),
        "<redacted:slack_webhook>",
    ),
    (
        ("://",),
        re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/:@]*:[^\s/@]*@"),
        r"\g<scheme><redacted:credentials>@",
    ),
    (
        ("bearer",),
        re.compile(r"(?i)\b(?P<kind>bearer)\s+[A-Za-z0-9._~+/-]+=*"),
        r"\g<kind> <redacted:token>",
    ),
    (
        ("authorization",),
        re.compile(
            r"(?i)(?P<lead>authorization\s*[:=]\s*(?:basic|token|digest)\s+)(?!<redacted)\S+"
        ),
        r"\g<lead><redacted:token>",
    ),
    (
        ("eyj",),
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        "<redacted:jwt>",
    ),
    (
        ("akia", "asia"),
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        "<redacted:aws_key_id>",
    ),
    (
        ("ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_"),
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255})\b"),
        "<redacted:github_token>",
    ),
    (
        ("xox",),
        re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        "<redacted:slack_token>",
    ),
    (
        ("sk_live_", "sk_test_", "rk_live_", "npm_", "glpat-", "sg."),
        re.compile(
            r"\b(?:[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|npm_[A-Za-z0-9]{30,}"
            r"|glpat-[A-Za-z0-9_-]{20,}|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,})"
        ),
        "<redacted:api_key>",
    ),
    (
        ("accountkey", "sharedaccesskey", "security-token"),
        re.compile(
            r"(?i)(?P<lead>(?:AccountKey|SharedAccessKey)\s*=\s*|x-amz-security-token\s*[:=]\s*)"
            r"(?!<redacted)[^\s;&\"']+"
        ),
        r"\g<lead><redacted:secret>",
    ),
    (
        ("--password", "-u "),
        re.compile(r"(?P<lead>--password[= ]|\s-u\s+[^\s:]+:)(?!<redacted)[^\s]+"),
        r"\g<lead><redacted:secret>",
    ),
    (("key", "token", "secret", "passw", "pwd"), _KEY_VALUE, _keep_key),
    (("key",), _ANY_KEY_VALUE, _random_key_value),
    (
        ("@",),
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        "<redacted:email>",
    ),
)

_TRIGGERS = tuple(sorted({t for triggers, _, _ in _RULES for t in triggers}))
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_-]{32}").search


def redact(text: str) -> tuple[str, int]:
    """Replace secrets and e-mail addresses in `text`; return the text and the count."""
    lowered = text.lower()
    long_run = _LONG_RUN(text) is not None
    for trigger in _TRIGGERS:
        if trigger in lowered:
            break
    else:
        if not long_run:
            return text, 0
    total = 0
    for triggers, pattern, replacement in _RULES:
        for trigger in triggers:
            if trigger in lowered:
                redacted = pattern.sub(replacement, text)
                total += _count_placeholders(redacted) - _count_placeholders(text)
                text = redacted
                break
    if long_run:
        redacted = _HIGH_ENTROPY.sub(_high_entropy, text)
        total += _count_placeholders(redacted) - _count_placeholders(text)
        text = redacted
    return text, total


def _count_placeholders(text: str) -> int:
    # Replacement functions may keep a match as it is: count what was really replaced.
    return text.count("<redacted:")
