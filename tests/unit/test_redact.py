"""Secrets must vanish from log text; ordinary log text must stay as it was."""

from __future__ import annotations

import pytest

from tests.support.secrets_corpus import JWT, KEEP, PEM, SECRETS
from workers.evidence.redact import redact
from workers.evidence.templates import mask


@pytest.mark.parametrize(("line", "secret", "kind"), SECRETS, ids=[s[2] for s in SECRETS])
def test_secret_is_redacted(line: str, secret: str, kind: str) -> None:
    text, count = redact(line)
    assert secret not in text
    assert count >= 1
    assert f"<redacted:{kind}" in text


def test_url_credentials_keep_scheme_and_host() -> None:
    text, count = redact("dial postgres://app:S3cr3t@db.prod.svc:5432/app failed")
    assert text == "dial postgres://<redacted:credentials>@db.prod.svc:5432/app failed"
    assert count == 1


def test_json_keeps_key_and_quotes() -> None:
    text, _ = redact('{"password": "hunter2", "user": "bob"}')
    assert text == '{"password": "<redacted:secret>", "user": "bob"}'


def test_counts_every_secret() -> None:
    text, count = redact(f"password=a token={JWT} mail a@b.io key AKIAIOSFODNN7EXAMPLE")
    assert count == 4
    assert "<redacted:jwt>" in text


def test_multiline_pem_block_is_one_redaction() -> None:
    text, count = redact(f"start\n{PEM}\nend")
    assert text == "start\n<redacted:private_key>\nend"
    assert count == 1


def test_redaction_is_idempotent() -> None:
    once, _ = redact(f"password=hunter2 Authorization: Bearer abc token={JWT}")
    twice, count = redact(once)
    assert twice == once
    assert count == 0


@pytest.mark.parametrize("line", KEEP)
def test_non_secrets_stay_intact(line: str) -> None:
    assert redact(line) == (line, 0)


@pytest.mark.parametrize(("line", "secret", "kind"), SECRETS[:12])
def test_placeholders_do_not_split_templates(line: str, secret: str, kind: str) -> None:
    text, _ = redact(line)
    # Placeholders hold no digits, so masking leaves them alone as constants.
    for placeholder in ("<redacted:jwt>", "<redacted:secret>", "<redacted:token>"):
        assert mask(placeholder) == placeholder
    assert "<redacted:" in mask(text)
