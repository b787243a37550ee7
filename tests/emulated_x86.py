"""What the emulated x86 levels' tests share (test_avx_vnni_emulated.py, test_avx512_emulated.py):
a level's kernels built into the matmul harness on an AVX2 machine, with an exact AVX2 stand-in
for the instructions it lacks (tests/x86/), checked like the package's own levels."""

from __future__ import annotations

import platform
import shutil

import numpy as np
import pytest

from matmul_harness import ROOT, harness_matmul
from test_cpu_levels import dequantize_act
from test_kernels import N, act_rows, reference_dequant, weight_rows
from test_precise_activations import random_code_rows, two_part_rounding

from edgellama import _cpu_features, _testing

COMPILER = shutil.which("g++")
AVX2_FLAGS = ["-march=x86-64-v3", "-mtune=generic"]

SKIPS = [
    pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree (csrc/) to build the harness"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                       or "x86_64_v3" not in _cpu_features.runnable_levels(), reason="needs an x86-64 CPU with AVX2"),
    pytest.mark.skipif(COMPILER is None, reason="needs g++ to build the harness"),
]


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


def check_matmul(harness, qtype, activations, n_tokens, seed, expect_row_groups):
    """The harness's matmul against float64 dots and, where its row groups ran, against this
    machine's own kernels' bits (exact integer block sums, one float sequence on every level)."""
    rng = np.random.default_rng(seed + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial group of 16
    x = np.stack(act_rows(rng, N) * 2)[:n_tokens]
    ran_row_groups, got = harness_matmul(harness, qtype, rows, x, activations)
    assert ran_row_groups == expect_row_groups
    assert_float64_dots(got, qtype, rows, x, activations)
    if ran_row_groups:
        here = _testing.PreparedMatmul(int(qtype), rows, N, True, 1, activations=activations).run(x)
        np.testing.assert_array_equal(got, here)


def check_every_code(harness, qtype, seed):
    """Random code bytes (the extremes included), int8 and precise, against float64 dots."""
    rng = np.random.default_rng(seed + int(qtype))
    rows, x = random_code_rows(rng, qtype, N, 19), np.stack(act_rows(rng, N))[:5]
    for activations in ("int8", "precise"):
        _, got = harness_matmul(harness, qtype, rows, x, activations)
        assert_float64_dots(got, qtype, rows, x, activations)
