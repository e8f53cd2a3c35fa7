"""Hostile inputs for the request filters and `log_filter`, with an independent oracle of
what is valid. Used by the LogQL unit tests and the HTTP fuzz test."""

from __future__ import annotations

import re

import re2

HOSTILE: list[str] = [
    '"',
    "\\",
    '\\"',
    'shop"',
    "shop\\",
    '"} or {',
    'shop"} or {namespace=~".*',
    'shop", pod=~".*',
    'shop"}|="',
    '|= "x" or 1=1',
    "shop\n",
    "shop\nfoo",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "shop\x00",
    "\x1b[31mred",
    "ünicode",
    "ßhop",
    "\u202eshop",
    "\u2028",
    "🙂",
    "`",
    "`shop`",
    '{namespace=~".*"}',
    "{",
    "}",
    'sum(rate({namespace="shop"}[5m]))',
    '| line_format "{{.x}}"',
    "| label_format a=b",
    "a" * 64,
    "a" * 5000,
    "-" * 300,
    ".*",
    ".+",
    "(a",
    "a{1001}",
    "(?=x)",
    "(a)\\1",
    "(a|b)*" * 100,
    "$(reboot)",
    "'; DROP TABLE logs; --",
    "' OR '1'='1",
    "%22%7D",
    "\\x22",
    "\\u0022",
    'shop" |= "',
    "=~",
    'shop,pod=~".*"',
    " shop",
    "shop ",
    "",
    "Shop",
    "-shop",
    "shop-",
    "a.b",
    "a..b",
    "a_b",
    "\ud800",
    'shop\u0000"}',
    "api-[0-9]+",
    "(?i)API",
    "api|web",
]


_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII
)


def is_label(value: str) -> bool:
    return len(value) <= 63 and _LABEL.fullmatch(value) is not None


def is_subdomain(value: str) -> bool:
    return len(value) <= 253 and _SUBDOMAIN.fullmatch(value) is not None


def is_re2(value: str) -> bool:
    if not value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return False
    try:
        re2.compile(value)
    except re2.error:
        return False
    return True


ORACLE = {
    "namespace": is_label,
    "container": is_label,
    "node": is_subdomain,
    "pod": is_re2,
}


LF = "|="
# (log_filter, expected stage kinds or None when it must be rejected)
LOG_FILTER_CORPUS: list[tuple[str, list[str] | None]] = [
    ('{namespace=~".*"}', None),
    ('{namespace="shop"}', None),
    ('|= "x" or 1=1', None),
    ('|= "x" } or {namespace=~".*"}', None),
    ('|= "x"} or {namespace=~".*"', None),
    ('sum(rate({namespace="shop"}[5m]))', None),
    ("count_over_time", None),
    ('| line_format "{{.foo}}"', None),
    ('| label_format x="y"', None),
    ("| drop foo", None),
    ("| keep foo", None),
    ("| unwrap latency", None),
    ('| pattern "<_> <x>"', None),
    ('| regexp "(?P<x>.*)"', None),
    ("| unpack", None),
    ("| decolorize", None),
    ('| json foo="bar"', None),
    ("| logfmt --strict", None),
    ('|= "unterminated', None),
    ("|= `unterminated", None),
    ('|= "x" trailing', None),
    ('|= "x" |', None),
    ("|=", None),
    ('|~ "(?i)(error"', None),
    ('|~ "a{1001}"', None),
    ('|~ "(?=x)"', None),
    ('|~ "(a)\\\\1"', None),
    ('| level =~ "("', None),
    ('!= "a" or "b"', None),
    ('|= "\\d"', None),
    ('|= "a\nb"', None),
    ('|= "\\xff"', None),
    ('|= "\\ud800"', None),
    ("| status > 10s", None),
    ("| size > 20MB", None),
    ('| status > "5"', None),
    ("| level = 5", None),
    ('| level="a" and status>5', None),
    ('| level="a" or status>5', None),
    ('| level="a", x="b"', None),
    ('| 5xx="a"', None),
    ('|= "x" # comment', None),
    ('|= "x";', None),
    ('|= "x" \x00', None),
    ('|= "x" or', None),
    ('|= ip("1.2.3.4")', None),
    ('|> "x"', None),
    ('||= "x"', None),
    ('|= "x" | json | | logfmt', None),
    ('|= "x" ' * 60, None),
    ('|= "' + "a" * 5000, None),
    ("\ud800", None),
    ('|= "x"\ud800', None),
    ("| json | by", None),
    ("offset 5m", None),
    ('|= "x" \\', None),
    ('"x"', None),
    ("`x`", None),
    ('|= "\\"} or {namespace=~\\".*\\"}"', [LF]),
    ('|= `"} or {namespace=~".*"}`', [LF]),
    ('|= "x" or "y"', [LF]),
    ('|~ "(?i)error" != "debug"', ["|~", "!="]),
    ('| json | level="error"', ["| json", "| label="]),
    ("| logfmt | status >= 500", ["| logfmt", "| label>="]),
    ('|= "sum(rate({x=\\"y\\"}[5m]))"', [LF]),
    ('|= "| line_format \\"{{.x}}\\""', [LF]),
    ('|= "\\n\\t\\u00e9"', [LF]),
    ('|= "ünïcödé 🙂"', [LF]),
    ('|= "\u202e"', [LF]),
    ('|= "a\\\\"', [LF]),
    ("|= ``", [LF]),
    ('|= ""', [LF]),
    ('  |= "x"  \n  |= "y"  ', [LF, LF]),
    ('| __error__ = ""', ["| label="]),
    ("|~ `\\d+ms`", ["|~"]),
    ('!~ "health"', ["!~"]),
    ('| json | detected_level != "info"', ["| json", "| label!="]),
    ("| logfmt | duration_ms > 100.5", ["| logfmt", "| label>"]),
    ('|= "\'; DROP TABLE logs; --"', [LF]),
    ('|= "$(reboot)"', [LF]),
    ('|= "' + "a" * 1900 + '"', [LF]),
    ('|~ "' + "(a|b)" * 300 + '"', ["|~"]),
    ('|~ "(a*)*"', ["|~"]),
    ('|= "\\x00\\x1b[31m"', [LF]),
    ('|= "x" | json | logfmt | a!~"b"', [LF, "| json", "| logfmt", "| label!~"]),
]
