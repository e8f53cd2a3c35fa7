"""The measured corpus (docs/redaction.md): recall on documented secret formats, false
positives on look-alikes, and the rule set's own bookkeeping."""

from __future__ import annotations

import re

from tests.support.secrets_corpus import DOCUMENTED_SECRETS, LOOK_ALIKES, score
from workers.evidence.redact import redact
from workers.evidence.redaction_rules import RULES


def test_the_corpus_is_large_enough_to_measure() -> None:
    assert len(DOCUMENTED_SECRETS) >= 100
    assert len(LOOK_ALIKES) >= 100
    assert all(secret and secret in line for _, line, secret in DOCUMENTED_SECRETS)


def test_recall_on_documented_secret_formats() -> None:
    result = score(redact)
    assert result.recall >= 0.98, f"recall {result.recall:.3f}, missed: {result.missed}"


def test_false_positives_on_look_alikes() -> None:
    result = score(redact)
    assert result.false_positive_rate <= 0.02, (
        f"false positives {result.false_positive_rate:.3f}: {result.changed}"
    )


def test_every_rule_names_its_source_and_compiles() -> None:
    assert len({rule.id for rule in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.source.strip(), rule.id
        assert rule.keywords and all(k == k.lower() for k in rule.keywords), rule.id
        re.compile(rule.pattern)
