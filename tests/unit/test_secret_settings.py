"""Secrets in settings are `SecretStr`: a repr, a log line or an error never shows them."""

from __future__ import annotations

from shared.settings import Settings


def test_secrets_in_settings_are_never_shown() -> None:
    settings = Settings(
        notify_webhook_secret="hmac-key-Zq81",
        redis_url="redis://:redis-pass-Zq81@redis.example:6379/0",
        llm_api_key="sk-llm-key-Zq81",
    )
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hmac-key-Zq81" not in shown and "redis-pass-Zq81" not in shown
        assert "sk-llm-key-Zq81" not in shown
    assert settings.llm_api_key.get_secret_value() == "sk-llm-key-Zq81"
    assert settings.notify_webhook_secret.get_secret_value() == "hmac-key-Zq81"
    assert settings.redis_url.get_secret_value().endswith("@redis.example:6379/0")
