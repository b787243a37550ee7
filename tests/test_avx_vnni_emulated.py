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

import platform
import shutil
import subprocess

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from matmul_harness import ROOT, build_harness, harness_matmul, run_harness
from test_cpu_levels import dequantize_act
from test_kernels import ALL_TYPES, BLOCK32, N, ROW_GROUP_TYPES, act_rows, reference_dequant, weight_rows
from test_precise_activations import random_code_rows, two_part_rounding

from edgellama import _cpu_features, _testing

COMPILER = shutil.which("g++")
LEVEL_FLAGS = ["-march=x86-64-v3", "-mtune=generic", "-include", str(ROOT / "tests/x86/emulated_avx_vnni.h")]

pytestmark = [
    pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree (csrc/) to build the harness"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                       or "x86_64_v3" not in _cpu_features.runnable_levels(), reason="needs an x86-64 CPU with AVX2"),
    pytest.mark.skipif(COMPILER is None, reason="needs g++ to build the harness"),
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    out = tmp_path_factory.mktemp("vnni") / "matmul_harness_vnni"
    return [str(build_harness(COMPILER, LEVEL_FLAGS, out, static=False))]


def expected_value(qtype, x, activations):
    """The float64 values the kernels dot for one token: its one or two rounded rows."""
    if activations == "precise":
        return two_part_rounding(_testing, qtype, x)[0]
    fmt = _testing.type_info(int(qtype))["act_format"]
    if fmt == 0:
        return x.astype(np.float64)  # float weights take the activations as they are
    return dequantize_act(_testing.quantize_act_row(fmt, x), fmt, x.size, {1: 32, 2: 256}[fmt])


def assert_float64_dots(got, qtype, rows, x, activations):
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    for t in range(x.shape[0]):
        value = expected_value(qtype, x[t], activations)
        scale = np.abs(w).max(axis=1) * np.abs(value).sum()
        assert np.all(np.abs(got[t] - w @ value) <= 1e-5 * scale + 1e-30), (qtype.name, activations, t)


def test_the_emulated_byte_dot_is_vpdpbusd(tmp_path):
    # Each int32 lane: its sum plus the four products of unsigned and signed bytes, wrapping.
    binary = tmp_path / "dpbusd_check"
    done = subprocess.run([COMPILER, "-std=gnu++17", "-O2", "-march=x86-64-v3", f"-I{ROOT}",
                           str(ROOT / "tests/x86/emulated_dpbusd_check.cpp"), "-o", str(binary)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
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
    rng = np.random.default_rng(9500 + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial group of 16
    x = np.stack(act_rows(rng, N) * 2)[:n_tokens]
    ran_row_groups, got = harness_matmul(harness, qtype, rows, x, activations)
    assert ran_row_groups == (qtype in ROW_GROUP_TYPES)
    assert_float64_dots(got, qtype, rows, x, activations)
    if ran_row_groups:
        here = _testing.PreparedMatmul(int(qtype), rows, N, True, 1, activations=activations).run(x)
        np.testing.assert_array_equal(got, here)


@pytest.mark.parametrize("qtype", BLOCK32, ids=lambda t: t.name)
def test_vnni_row_groups_dot_every_code(harness, qtype):
    rng = np.random.default_rng(9600 + int(qtype))
    rows, x = random_code_rows(rng, qtype, N, 19), np.stack(act_rows(rng, N))[:5]
    for activations in ("int8", "precise"):
        _, got = harness_matmul(harness, qtype, rows, x, activations)
        assert_float64_dots(got, qtype, rows, x, activations)
