"""The README stays true: every setting is documented, every documented setting exists."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def documented_variables() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.MULTILINE))


def test_every_setting_is_in_the_configuration_table() -> None:
    names = {name.upper() for name in Settings.model_fields}
    assert names - documented_variables() == set(), "settings missing from the README"
    assert documented_variables() - names == set(), "README documents unknown settings"


def test_quick_start_has_exactly_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "exec make test" in (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
