"""The AVX-VNNI level (x86_64_v3_vnni: Intel Core 12th generation and later, which lack AVX-512)
on an AVX2 CPU without AVX-VNNI, where the package never selects it.

tests/arm/matmul_harness.cpp (the core's matmul as a plain program) is built natively with the
level's flags and tests/x86/emulated_avx_vnni.h force-included: the kernels then compile their
EDGELLAMA_VNNI_256 code, and the one VNNI instruction they use, VPDPBUSD, becomes an exact AVX2
equivalent (checked here against numpy first). On a CPU with AVX-VNNI the package's own
x86_64_v3_vnni level runs the real instruction in test_kernels and test_cpu_levels as well.

Checks: every weight type, int8 and precise activations, one token and a batch, against float64
dots; the row groups give the same bits as this machine's own kernels (exact integer block sums,
one float sequence); random code bytes, the extreme codes included.
"""

from __future__ import annotations

import numpy as np
import pytest

from emulated_x86 import AVX2_FLAGS, COMPILER, SKIPS
from matmul_harness import ROOT, build_harness, check_every_code, check_matmul, compile_sources, run_harness
from test_kernels import ALL_TYPES, BLOCK32, ROW_GROUP_TYPES

LEVEL_FLAGS = [*AVX2_FLAGS, "-include", str(ROOT / "tests/x86/emulated_avx_vnni.h")]

pytestmark = SKIPS


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    out = tmp_path_factory.mktemp("vnni") / "matmul_harness_vnni"
    return [str(build_harness(COMPILER, LEVEL_FLAGS, out, static=False))]


def test_the_emulated_byte_dot_is_vpdpbusd(tmp_path):
    # Each int32 lane: its sum plus the four products of unsigned and signed bytes, wrapping.
    binary = compile_sources(COMPILER, AVX2_FLAGS, [str(ROOT / "tests/x86/emulated_dpbusd_check.cpp")],
                             tmp_path / "dpbusd_check")
    rng = np.random.default_rng(9700)
    n = 2000
    u = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    s = rng.integers(-128, 128, (n, 32), dtype=np.int8)
    sums = rng.integers(-2**31, 2**31, (n, 8), dtype=np.int64).astype(np.int32)
    u[0], s[0], sums[0] = 255, -128, np.iinfo(np.int32).min  # the most negative products, wrapping
    u[1], s[1], sums[1] = 255, 127, np.iinfo(np.int32).max   # the most positive, wrapping
    cases = b"".join(u[i].tobytes() + s[i].tobytes() + sums[i].tobytes() for i in range(n))
    got = np.frombuffer(run_harness([str(binary)], stdin=cases), np.int32).reshape(n, 8)
    products = (u.astype(np.int64) * s.astype(np.int64)).reshape(n, 8, 4).sum(axis=2)
    want = ((sums.astype(np.int64) + products + 2**31) % 2**32 - 2**31).astype(np.int32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n_tokens", [1, 7])
@pytest.mark.parametrize("activations", ["int8", "precise"])
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_vnni_matmul_matches_float64_dots(harness, qtype, activations, n_tokens):
    if activations == "precise" and qtype not in ROW_GROUP_TYPES:
        pytest.skip("float weights have no activation rounding")
    check_matmul(harness, qtype, activations, n_tokens, 9500, expect_row_groups=qtype in ROW_GROUP_TYPES)


@pytest.mark.parametrize("qtype", BLOCK32, ids=lambda t: t.name)
def test_vnni_row_groups_dot_every_code(harness, qtype):
    check_every_code(harness, qtype, 9600)
