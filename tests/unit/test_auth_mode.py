"""When the API may start without keys (api.auth.check_auth_mode): only when asked for
explicitly and bound to loopback; a configured key file always decides."""

from __future__ import annotations

import pytest

from api.auth import check_auth_mode, is_loopback
from shared.errors import ConfigurationError
from shared.settings import Settings

DIGEST = "0" * 64


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.42.0.7", False),
        ("api.example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("settings", "bind_host"),
    [
        (Settings(api_keys=[DIGEST]), "0.0.0.0"),
        (Settings(api_keys=[DIGEST]), None),
        (Settings(api_keys_file="/run/keys/keys.json"), "0.0.0.0"),
        (Settings(api_no_auth=True), "127.0.0.1"),
        (Settings(api_no_auth=True), "::1"),
        (Settings(api_no_auth=True, api_keys=[DIGEST]), "localhost"),
    ],
)
def test_these_start(settings: Settings, bind_host: str | None) -> None:
    check_auth_mode(settings, bind_host)


@pytest.mark.parametrize(
    ("settings", "bind_host", "says"),
    [
        (Settings(), "127.0.0.1", "no API keys configured"),
        (Settings(), None, "no API keys configured"),
        (Settings(api_no_auth=True), "0.0.0.0", "binds 0.0.0.0, not a loopback"),
        (Settings(api_no_auth=True), "10.42.0.7", "not a loopback"),
        (Settings(api_no_auth=True), None, "python -m api"),
        (Settings(api_no_auth=True, api_keys=[DIGEST]), "0.0.0.0", "not a loopback"),
    ],
)
def test_these_are_refused_saying_what_to_set(
    settings: Settings, bind_host: str | None, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        check_auth_mode(settings, bind_host)
