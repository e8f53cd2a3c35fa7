"""When a process the harness started dies, the user learns which, how, and what to try."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import harness, main
from cli.harness import Harness, ProcessDiedError, describe_exit


@pytest.mark.parametrize(
    ("code", "how", "hint"),
    [
        (-signal.SIGILL, "killed by SIGILL", "instruction this CPU cannot run"),
        (-signal.SIGSEGV, "killed by SIGSEGV", "crashed"),
        (-signal.SIGKILL, "killed by SIGKILL", "OOM killer"),
        (3, "exited with code 3", "log"),
    ],
)
def test_exit_descriptions_name_the_signal(code: int, how: str, hint: str) -> None:
    described, advice = describe_exit(code)
    assert described == how
    assert hint in advice


def dying_binary(tmp_path: Path, sig: str = "ILL") -> Path:
    script = tmp_path / "llama-server"
    script.write_text(f"#!/bin/sh\necho 'load_tensors: warming up the model'\nkill -{sig} $$\n")
    script.chmod(0o755)
    return script


def test_check_reports_the_signal_and_the_log_tail(tmp_path: Path) -> None:
    stack = Harness(tmp_path)
    process = stack.spawn("llama-server", [str(dying_binary(tmp_path))])
    assert process.proc is not None
    process.proc.wait(10)
    with pytest.raises(ProcessDiedError) as caught:
        stack.check()
    message = str(caught.value)
    assert "llama-server killed by SIGILL" in message
    assert "make setup" in message
    assert "warming up the model" in message
    stack.stop()


def test_demo_exits_non_zero_and_says_why_when_llama_server_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "llama_server_binary", lambda: dying_binary(tmp_path))
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    monkeypatch.setattr(main, "ROOT", tmp_path)
    # Redis is whatever answers (or one the stack starts); the fake llama-server dies first.
    result = CliRunner().invoke(main.app, ["demo", "--exit"])
    assert result.exit_code == 4, result.output
    assert "llama-server killed by SIGILL" in result.output
    assert "warming up the model" in result.output
