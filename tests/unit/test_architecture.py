"""The rules between the parts (docs/architecture.md), checked on the code itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules_loaded_by(statement: str) -> set[str]:
    """The top-level packages in sys.modules after running `statement` in a fresh process."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def test_the_api_imports_no_worker_code() -> None:
    loaded = modules_loaded_by(
        "import api.main, shared.settings\n"
        "api.main.create_app(shared.settings.Settings(otel_sdk_disabled=True, api_keys=['0' * 64]))"
    )
    assert not {m for m in loaded if m == "workers" or m.startswith("workers.")}


def test_shared_imports_neither_side_nor_their_frameworks() -> None:
    packages = sorted(p.relative_to(ROOT).with_suffix("") for p in (ROOT / "shared").rglob("*.py"))
    imports = "; ".join(f"import {'.'.join(p.parts).removesuffix('.__init__')}" for p in packages)
    loaded = modules_loaded_by(imports)
    for forbidden in ("api", "workers", "cli", "fastapi", "celery", "starlette"):
        assert not {m for m in loaded if m == forbidden or m.startswith(forbidden + ".")}, forbidden


STAGE_MODULES = sorted((ROOT / "workers" / "stages").glob("*.py"))


@pytest.mark.parametrize("path", STAGE_MODULES, ids=[p.stem for p in STAGE_MODULES])
def test_stage_modules_hold_no_redis_celery_or_http(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"redis", "celery", "httpx", "fastapi", "kombu", "starlette"}
