"""Secrets must vanish from log text; ordinary log text must stay as it was."""

from __future__ import annotations

import pytest

from tests.support.secrets_corpus import JWT, KEEP, ORDINARY, PEM, SECRETS
from workers.evidence.redact import (
    Redactor,
    looks_like_standalone_secret,
    plainly_no_standalone_secret,
    redact,
)
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


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_key_values_are_not_redacted(line: str) -> None:
    """A config key's name, a cache or object key, an id with a known shape: no secret."""
    assert redact(line) == (line, 0)


def test_a_random_value_under_an_ordinary_key_name_is_redacted() -> None:
    text, count = redact("signing with key=q8Z2xT9vL4mN7pR1sK6w")
    assert text == "signing with key=<redacted:secret>" and count == 1


def test_a_long_unlabelled_token_is_redacted() -> None:
    token = "Zk9wT3hLmQ2vX8rN5pJ7sD1fG4hK6jL0aB3cE9uY"
    text, count = redact(f"calling upstream with {token} as credential")
    assert token not in text and count == 1 and "<redacted:high_entropy>" in text


@pytest.mark.parametrize("line", [line for line, _, _ in SECRETS] + ORDINARY)
def test_redaction_of_the_corpus_is_idempotent(line: str) -> None:
    # normalize does not redact a plain one-line message again: it is the line the query
    # stage already redacted, and redacting that once more must change nothing.
    once, _ = redact(line)
    assert redact(once) == (once, 0)


@pytest.mark.parametrize(
    ("line", "secret", "kind"),
    [
        (
            "open db: Error 1045: app:G0dsnS3cret@tcp(mysql.prod:3306)/shop?parseTime=true",
            "G0dsnS3cret",
            "credentials",
        ),
        ("Set-Cookie: sessionid=q8x2kd93jslq0v1z; HttpOnly", "q8x2kd93jslq0v1z", "secret"),
        (
            "vault login with hvs.CAESIPx0aVr4m2bQ9tY7kLzW1nHfE3jGsD6u token",
            "hvs.CAESIP",
            "vault_token",
        ),
        ('{"user": "app", "pass": "hunter2", "db": "shop"}', "hunter2", "secret"),
        ("Authorization: ApiKey QWxhZGRpbjpvcGVuIHNlc2FtZQ", "QWxhZGRpbjpvcGVu", "token"),
    ],
    ids=["go_dsn", "sessionid", "vault_hvs", "json_pass", "authorization_apikey"],
)
def test_formerly_missed_secret_is_redacted(line: str, secret: str, kind: str) -> None:
    text, count = redact(line)
    assert secret not in text
    assert count >= 1
    assert f"<redacted:{kind}>" in text


@pytest.mark.parametrize(
    "line",
    [
        "node rabbit@rabbitmq-0.rabbitmq.default.svc.cluster.local down",
        "Cloning from git@github.com:org/payments.git failed: timeout",
        (
            "GET /v1/orders/3f2a9c1e-7b4d-4e8a-9c6f-2d5e8a1b3c7f"
            "/items/Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56 404"
        ),
        (
            "com.apple.ical.sync.x-coredata://DB05755C-483D-44B7-B93B-ED06E57FF420"
            "/CalDAVPrincipal/p11: scheduler_evaluate_activity told me to run this job"
        ),
    ],
    ids=["erlang_node", "git_ssh_remote", "url_path_ids", "uuid_path"],
)
def test_look_alike_is_not_redacted(line: str) -> None:
    assert redact(line) == (line, 0)


@pytest.mark.parametrize(
    "line",
    ['{"test": "login", "pass": true, "fail": 0}', '{"token": null}', 'password="" user=bob'],
    ids=["json_true", "json_null", "empty"],
)
def test_a_literal_or_empty_value_is_no_secret(line: str) -> None:
    assert redact(line) == (line, 0)


UUID = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"


@pytest.mark.parametrize(
    "line",
    [
        f"cache miss key=Library/Containers/{UUID}/Data",
        f"cache_key=/var/folders/{UUID.lower()}/T evicted",
        f"object key=tenant-{UUID} stored",
        f"open Caches/{UUID}Cache/Ab failed",
        f"open Data/{UUID}_1/Snapshots/Ab12Cd34 failed",
    ],
    ids=["key_path", "key_abs_path", "key_prefixed", "glued_segment", "suffixed_segment"],
)
def test_a_value_holding_a_uuid_is_judged_by_the_rest(line: str) -> None:
    # 32 random-looking hex digits are an id when they have a UUID's shape (issue 23).
    assert redact(line) == (line, 0)


@pytest.mark.parametrize(
    ("line", "secret", "kind"),
    [
        (f"signing with key=q8Z2xT9vL4mN7pR1sK6w-{UUID}", "q8Z2xT9vL4mN7pR1sK6w", "secret"),
        (
            f"calling upstream with Zk9wT3hLmQ2vX8rN5pJ7sD1fG4hK6jL0aB3cE9uY/{UUID} as credential",
            "Zk9wT3hLmQ2vX8rN5pJ7sD1fG4hK6jL0aB3cE9uY",
            "high_entropy",
        ),
    ],
    ids=["random_key_value", "standalone_token"],
)
def test_a_secret_beside_a_uuid_is_still_redacted(line: str, secret: str, kind: str) -> None:
    text, count = redact(line)
    assert secret not in text and count == 1 and f"<redacted:{kind}>" in text


def test_a_redactor_answers_as_redact_does() -> None:
    lines = [line for line, _, _ in SECRETS[:5]] + ORDINARY[:5]
    redactor = Redactor(max_lines=3)  # small: the memory is emptied and refilled
    assert [redactor(line) for line in lines * 2] == [redact(line) for line in lines * 2]


def test_a_line_of_a_known_shape_is_still_checked_for_keywords_with_a_digit() -> None:
    # Same digit shape; `sq1atp-` wakes no rule, `sq0atp-` is a Square token.
    token = "a" * 22
    redactor = Redactor()
    assert redactor(f"using sq1atp-{token} now") == (f"using sq1atp-{token} now", 0)
    assert redactor(f"using sq0atp-{token} now") == ("using <redacted:api_key> now", 1)


@pytest.mark.parametrize("line", [line for line, _, _ in SECRETS] + ORDINARY)
def test_plainly_no_secret_implies_no_standalone_secret(line: str) -> None:
    for word in line.split():
        if plainly_no_standalone_secret(word):
            assert not looks_like_standalone_secret(word)
