"""Scan compiled binaries for instructions beyond the portable x86-64-v3 baseline.

Used by tests/unit/test_llama_binary.py and bench/llama_build.py. `objdump` comes with the
C++ toolchain the README asks for; anything it cannot decode counts as a finding.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from cli.harness import llama_server_binary

# Legacy prefixes that may precede an instruction's opcode bytes (operand/address size,
# repeat, segment): what follows them decides the encoding.
_LEGACY_PREFIXES = frozenset({"66", "67", "f2", "f3", "2e", "3e", "26", "64", "65", "36"})
# Operands that exist only with AVX-512 (EVEX): 512-bit and upper-16 vector registers, mask
# registers, embedded broadcast.
_AVX512_OPERANDS = re.compile(r"%zmm|%k[0-7]\b|\{%k[0-7]\}|%[xy]mm(?:1[6-9]|2\d|3[01])\b|\{1to")
# Families outside x86-64-v3 that do not need EVEX: AMX, AVX-VNNI, AVX-IFMA, AVX-NE-CONVERT,
# GFNI, SHA.
_BEYOND_V3_MNEMONICS = re.compile(
    r"^(?:\{vex\} )?(?:tile\w+|ldtilecfg|sttilecfg|tdp\w+|vpdpbusds?|vpdpwssds?|vpmadd52\w+"
    r"|vcvtne\w*bf16\w*|vbcstne\w+|gf2p8\w+|sha(?:1|256)\w+)\b"
)
_INSTRUCTION = re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t(.*)$")


def shipped_files() -> list[Path]:
    """llama-server and the shared libraries installed beside it."""
    directory = llama_server_binary().parent
    files = [p for p in sorted(directory.iterdir()) if p.is_file() and not p.is_symlink()]
    return [p for p in files if is_elf(p)]


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def beyond_baseline(disassembly: str) -> tuple[list[str], int]:
    """Instructions (as `objdump -d` prints them) beyond x86-64-v3, and undecodable ones."""
    found: list[str] = []
    bad = 0
    for line in disassembly.splitlines():
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        raw, text = match.group(1).split(), match.group(2).strip()
        if text == "(bad)":
            bad += 1
            continue
        opcode = next((byte for byte in raw if byte not in _LEGACY_PREFIXES), "")
        if opcode == "62" or _AVX512_OPERANDS.search(text) or _BEYOND_V3_MNEMONICS.match(text):
            found.append(text)
    return found, bad


def disassemble(path: Path) -> str:
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils, part of the C++ toolchain the README asks for) is needed"
    completed = subprocess.run(
        [objdump, "-d", "-w", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return completed.stdout
