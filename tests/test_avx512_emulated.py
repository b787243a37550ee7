"""The AVX-512 matmul code (the x86_64_v4 level's: Zen 4 and later, Xeon) on an AVX2 CPU.

row_groups_avx512.cpp, row_groups_k_avx512.cpp and activations.cpp (its AVX-512 activation
quantizer) are compiled with -march=x86-64-v3 and tests/x86/emulated_avx512.h force-included,
which declares the AVX-512 feature macros and maps each AVX-512 intrinsic they use to an exact AVX2
equivalent (its byte dot is the one test_avx_vnni_emulated checks against numpy;
tests/x86/avx512_shim stands in for the one inline-assembly helper). Linked into the matmul harness
(tests/arm/matmul_harness.cpp) with the rest of the core built for AVX2, they quantize the
harness's activations and run its row groups. On an AVX-512 CPU the package's own x86_64_v4 level
runs the real instructions in test_kernels and test_cpu_levels as well.

Checks: every row-group type, int8 and precise activations, one token and a batch, against float64
dots and against this machine's own kernels' bits (the same activation codes, exact integer block
sums and float sequence); random code bytes, the extreme codes included.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulated_x86 import AVX2_FLAGS, COMPILER, SKIPS
from matmul_harness import ROOT, build_harness, check_every_code, check_matmul, compile_sources, harness_sources
from test_kernels import BLOCK32, ROW_GROUP_TYPES

EMULATED = [str(ROOT / "csrc/kernels" / name) for name in ("row_groups_avx512.cpp", "row_groups_k_avx512.cpp",
                                                            "activations.cpp")]

pytestmark = SKIPS


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avx512")
    emulation = ["-Wno-psabi", "-include", str(ROOT / "tests/x86/emulated_avx512.h"),
                 f"-I{ROOT / 'tests/x86/avx512_shim'}"]  # ahead of the source tree: the shim wins
    with ThreadPoolExecutor(len(EMULATED)) as pool:
        objects = list(pool.map(lambda src: str(compile_sources(
            COMPILER, [*AVX2_FLAGS, *emulation], [src], folder / f"{Path(src).stem}.emulated.o", link=False)), EMULATED))
    sources = [s for s in harness_sources() if s not in EMULATED] + objects
    return [str(build_harness(COMPILER, AVX2_FLAGS, folder / "matmul_harness_avx512", static=False, sources=sources))]


@pytest.mark.parametrize("n_tokens", [1, 7])
@pytest.mark.parametrize("activations", ["int8", "precise"])
@pytest.mark.parametrize("qtype", sorted(ROW_GROUP_TYPES), ids=lambda t: t.name)
def test_avx512_row_groups_match_float64_and_this_machines_bits(harness, qtype, activations, n_tokens):
    check_matmul(harness, qtype, activations, n_tokens, 9800, expect_row_groups=True)


@pytest.mark.parametrize("qtype", BLOCK32, ids=lambda t: t.name)
def test_avx512_row_groups_dot_every_code(harness, qtype):
    check_every_code(harness, qtype, 9900)
