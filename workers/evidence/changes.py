"""Change events: lines announcing that something about the system changed.

An operator's first question after "what broke?" is "what changed?". Programs log most changes
at INFO, so a level alone never shows them. These patterns are general English of change, not
the phrases of one product: a process starting with a version, a deploy or rollout, a feature
flag, a configuration reload, a schema migration, scaling, a leader election or failover.
They are matched against mined templates (variables masked as `<*>`), with word boundaries.
"""

from __future__ import annotations

import re

_VERSION = r"(?:v?<\*>|v?\d+(?:\.\d+)+\S*)"
CHANGE_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "deploy",
        re.compile(
            r"(?i)\b(?:deploy(?:ing|ed|ment (?:started|finished|complete[d]?))"
            r"|roll(?:ing|ed)?[- ]?(?:out|back)|rollout|rollback"
            r"|upgrad(?:ing|ed)\b(?! failed)|new (?:release|version|image|revision)"
            r"|(?:running|starting|applying|performing) (?:upgrade|migration|rollout))\b"
        ),
    ),
    (
        "start",
        re.compile(
            r"(?i)\b(?:start(?:ing|ed)|launch(?:ing|ed)|boot(?:ing|ed)|initializ(?:ing|ed))\b"
            rf"[^.]*?\b(?:version|release|build|v)[\s:=\[(]*{_VERSION}"
            rf"|\bversion[\s:=\[(]+{_VERSION}[^.]*\bstart"
        ),
    ),
    (
        "feature flag",
        re.compile(
            r"(?i)\b(?:feature[- _]?(?:flag|toggle|gate)s?|flags?)\b[^.]{0,60}?"
            r"\b(?:enabled|disabled|turned (?:on|off)|toggled|flipped|updated|changed|set to)\b"
        ),
    ),
    (
        "config",
        re.compile(
            r"(?i)\b(?:config(?:uration)?|settings|rules)\b[^.]{0,40}?"
            r"\b(?:reload(?:ed|ing)?|re-?read|updated|changed|applied|pushed|hot[- ]?swapped)\b"
            r"|\breload(?:ed|ing)\b[^.]{0,40}?\b(?:config(?:uration)?|settings|rules)\b"
        ),
    ),
    (
        "migration",
        re.compile(
            r"(?i)\b(?:migrat(?:ing|ions?|ed)|schema (?:change|upgrade|update)"
            r"|(?:alter|drop|truncate)\s+(?:table|index|column|schema)"
            r"|create\s+(?:unique\s+)?index)\b"
        ),
    ),
    (
        "scaling",
        re.compile(
            r"(?i)\b(?:scal(?:ed|ing) (?:up|down|out|in|to)|replicas? (?:changed|set|scaled)"
            r"|autoscal\w+ (?:to|set)|resized? (?:to|from))\b"
        ),
    ),
    (
        "failover",
        re.compile(
            r"(?i)\b(?:fail(?:ing|ed)?[- ]?over|switch(?:ing|ed)?[- ](?:master|primary|leader)"
            r"|(?:became|becoming|elected|promot(?:ed|ing))\b[^.]{0,30}?\b(?:leader|master|primary)"
            r"|(?:leader|master|primary)\b[^.]{0,30}?\b(?:elect(?:ed|ion)|changed|lost|switch\w*)"
            r"|new (?:leader|master|primary))\b"
        ),
    ),
)


_IDENTIFIER = re.compile(r"(?:[A-Za-z_][\w-]*)?(?:[./][A-Za-z_][\w-]*)+")


def change_kind(template: str) -> str | None:
    """The kind of change a template announces (`deploy`, `start`, `feature flag`, `config`,
    `migration`, `scaling`, `failover`), or None.

    Dotted names and paths are blanked first: a logger called `db.migration` or a file
    `/etc/rollout.d` announces nothing.
    """
    text = _IDENTIFIER.sub("x", template)
    for kind, pattern in CHANGE_KINDS:
        if pattern.search(text):
            return kind
    return None
