"""Secret and PII redaction for log messages, run before template mining.

Each secret becomes a fixed placeholder such as `<redacted:jwt>`. Placeholders hold no
digits, so the template miner sees them as constants and never splits a template on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_Replacement = str | Callable[[re.Match[str]], str]

# A key names a secret when it ends in one of these (case-insensitive); a bare `key` must
# start the word or follow a separator, so `monkey=` stays. Lookbehinds after a possessive
# `[\w.-]++` keep the scan linear.
_SECRET_KEY_END = (
    r"(?:(?<=[^a-z0-9]key)|(?<=^key)|(?<=apikey)|(?<=accesskey)|(?<=secretkey)"
    r"|(?<=token)|(?<=secret)|(?<=password)|(?<=passwd)|(?<=pwd))"
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
    (
        ("@",),
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        "<redacted:email>",
    ),
)

_TRIGGERS = tuple(sorted({t for triggers, _, _ in _RULES for t in triggers}))


def redact(text: str) -> tuple[str, int]:
    """Replace secrets and e-mail addresses in `text`; return the text and the count."""
    lowered = text.lower()
    for trigger in _TRIGGERS:
        if trigger in lowered:
            break
    else:
        return text, 0
    total = 0
    for triggers, pattern, replacement in _RULES:
        for trigger in triggers:
            if trigger in lowered:
                text, count = pattern.subn(replacement, text)
                total += count
                break
    return text, total
