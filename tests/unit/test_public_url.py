"""PUBLIC_URL is an absolute http(s) base, checked at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings


@pytest.mark.parametrize("value", ["", "http://127.0.0.1:8000", "https://logs.example.org/a/"])
def test_a_public_url_is_an_absolute_base_or_nothing(value: str) -> None:
    assert Settings(public_url=value).public_url == value


@pytest.mark.parametrize(
    "value", ["logs.example.org", "/analyzer", "ftp://x", "https://x/?next=y", "https://x/#a"]
)
def test_anything_else_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        Settings(public_url=value)
