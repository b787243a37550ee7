"""The AVX-512 row-group kernels (the x86_64_v4 level's: Zen 4 and later, Xeon) on an AVX2 CPU.

row_groups_avx512.cpp and row_groups_k_avx512.cpp are compiled with -march=x86-64-v3 and
tests/x86/emulated_avx512.h force-included, which declares the AVX-512 feature macros and maps each
AVX-512 intrinsic they use to an exact AVX2 equivalent (its byte dot is the one
test_avx_vnni_emulated checks against numpy; tests/x86/avx512_shim stands in for the one
inline-assembly helper). Linked into the matmul
harness (tests/arm/matmul_harness.cpp) with the rest of the core built for AVX2, they are the
harness's row groups. On an AVX-512 CPU the package's own x86_64_v4 level runs the real instructions
in test_kernels and test_cpu_levels as well.

Checks: every row-group type, int8 and precise activations, one token and a batch, against float64
dots and against this machine's own kernels' bits (the same exact integer block sums and float
sequence); random code bytes, the extreme codes included.
"""

from __future__ import annotations

import platform
import shutil

import numpy as np
import pytest

from matmul_harness import ROOT, build_harness, compile_sources, harness_matmul, harness_sources
from test_avx_vnni_emulated import assert_float64_dots
from test_kernels import BLOCK32, N, ROW_GROUP_TYPES, act_rows, weight_rows
from test_precise_activations import random_code_rows

from edgellama import _cpu_features, _testing

COMPILER = shutil.which("g++")
AVX2_FLAGS = ["-march=x86-64-v3", "-mtune=generic"]
EMULATED = [str(ROOT / "csrc/kernels/row_groups_avx512.cpp"), str(ROOT / "csrc/kernels/row_groups_k_avx512.cpp")]

pytestmark = [
    pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree (csrc/) to build the harness"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                       or "x86_64_v3" not in _cpu_features.runnable_levels(), reason="needs an x86-64 CPU with AVX2"),
    pytest.mark.skipif(COMPILER is None, reason="needs g++ to build the harness"),
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avx512")
    emulation = ["-Wno-psabi", "-include", str(ROOT / "tests/x86/emulated_avx512.h"),
                 f"-I{ROOT / 'tests/x86/avx512_shim'}"]  # ahead of the source tree: the shim wins
    objects = [str(compile_sources(COMPILER, [*AVX2_FLAGS, *emulation], [src], folder / f"{i}.o", link=False))
               for i, src in enumerate(EMULATED)]
    sources = [s for s in harness_sources() if s not in EMULATED] + objects
    return [str(build_harness(COMPILER, AVX2_FLAGS, folder / "matmul_harness_avx512", static=False, sources=sources))]


@pytest.mark.parametrize("n_tokens", [1, 7])
@pytest.mark.parametrize("activations", ["int8", "precise"])
@pytest.mark.parametrize("qtype", sorted(ROW_GROUP_TYPES), ids=lambda t: t.name)
def test_avx512_row_groups_match_float64_and_this_machines_bits(harness, qtype, activations, n_tokens):
    rng = np.random.default_rng(9800 + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial group of 16
    x = np.stack(act_rows(rng, N) * 2)[:n_tokens]
    ran_row_groups, got = harness_matmul(harness, qtype, rows, x, activations)
    assert ran_row_groups
    assert_float64_dots(got, qtype, rows, x, activations)
    here = _testing.PreparedMatmul(int(qtype), rows, N, True, 1, activations=activations).run(x)
    np.testing.assert_array_equal(got, here)


@pytest.mark.parametrize("qtype", BLOCK32, ids=lambda t: t.name)
def test_avx512_row_groups_dot_every_code(harness, qtype):
    rng = np.random.default_rng(9900 + int(qtype))
    rows, x = random_code_rows(rng, qtype, N, 19), np.stack(act_rows(rng, N))[:5]
    for activations in ("int8", "precise"):
        _, got = harness_matmul(harness, qtype, rows, x, activations)
        assert_float64_dots(got, qtype, rows, x, activations)
