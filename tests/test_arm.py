"""The core's Arm (aarch64) builds: the kernels an Apple-silicon or Graviton laptop/server runs.

tests/arm/matmul_harness.cpp wraps the core's matmul (PreparedMatmul, as the model runs it) in a
plain program; here it is built twice for aarch64, as the two Arm levels of CMakeLists.txt build
the core (`generic`: Armv8-A, portable kernels; `aarch64_dotprod`: Armv8.2-A + SDOT row groups),
and run: natively on an aarch64 machine, elsewhere with a cross compiler under qemu user-mode
emulation (.ci/run installs Debian's g++-aarch64-linux-gnu and qemu-user where it can). Without
either the tests skip, saying why.

Checks: each level's matmul against float64 dots of the dequantized weights, every weight type;
the dot-product row groups produce the same bits as this machine's own row-group kernels (the
same exact integer block sums and float sequence); CPU level detection with and without SDOT.
"""

from __future__ import annotations

import platform
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from matmul_harness import ROOT, build_harness, check_every_code, harness_matmul, run_harness
from test_cpu_levels import dequantize_act
from test_kernels import ALL_TYPES, BLOCK32, N, act_rows, reference_dequant, weight_rows
from test_precise_activations import two_part_rounding

from edgellama import _cpu_features, _testing

NATIVE = platform.machine() in ("aarch64", "arm64")
COMPILER = "g++" if NATIVE else shutil.which("aarch64-linux-gnu-g++")
QEMU = None if NATIVE else shutil.which("qemu-aarch64")
ROW_GROUP_TYPES = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K}  # aarch64_dotprod's
LEVEL_FLAGS = {"generic": "-march=armv8-a", "aarch64_dotprod": "-march=armv8.2-a+dotprod"}
# Levels this test can run: under qemu every one (its default CPU has SDOT); natively those the CPU has.
RUNNABLE = [lv for lv in sorted(LEVEL_FLAGS) if not NATIVE or lv in _cpu_features.runnable_levels()]

pytestmark = [
    pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree (csrc/) to build the Arm harness"),
    pytest.mark.skipif(not NATIVE and not (COMPILER and QEMU),
                       reason="no aarch64 machine, and no aarch64-linux-gnu-g++ + qemu-aarch64 to emulate one"),
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """level -> path of its harness binary."""
    folder = tmp_path_factory.mktemp("arm")

    def build(level):
        return level, build_harness(COMPILER, [LEVEL_FLAGS[level]], folder / f"matmul_harness_{level}")

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, LEVEL_FLAGS))


def arm_command(binary, cpu=None):
    """How to run an Arm binary here: natively, or under qemu (on its default CPU unless named)."""
    return ([] if NATIVE else [QEMU] + (["-cpu", cpu] if cpu else [])) + [str(binary)]


def arm_matmul(binary, qtype, rows, x, activations="int8"):
    """(whether row groups ran, y[t][r]) from the Arm build."""
    return harness_matmul(arm_command(binary), qtype, rows, x, activations)


def case(qtype, n_tokens):
    rng = np.random.default_rng(9000 + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial group of 16
    x = np.stack(act_rows(rng, N) * 4)[:n_tokens]
    return rows, x


# One token (decode), and 7: batches of 4 + 3 (32-element types), 2 + 2 + 2 + 1 (K-quants).
TOKEN_COUNTS = [1, 7]


@pytest.mark.skipif(NATIVE, reason="CPU models are chosen through qemu")
def test_levels_follow_the_dot_product_feature(harness):
    binary = harness["generic"]
    assert run_harness(arm_command(binary, cpu="max"), "levels").decode().strip() == "aarch64_dotprod,generic"
    # Armv8.0: no SDOT
    assert run_harness(arm_command(binary, cpu="cortex-a53"), "levels").decode().strip() == "generic"


@pytest.mark.parametrize("n_tokens", TOKEN_COUNTS)
@pytest.mark.parametrize("level", RUNNABLE)
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_arm_matmul_matches_float64_dots(harness, level, qtype, n_tokens):
    rows, x = case(qtype, n_tokens)
    ran_row_groups, got = arm_matmul(harness[level], qtype, rows, x)
    assert ran_row_groups == (level == "aarch64_dotprod" and qtype in ROW_GROUP_TYPES)
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    fmt = _testing.type_info(int(qtype))["act_format"]
    for t in range(x.shape[0]):
        # The activations as the core quantizes them (its quantizer is checked against an
        # independent numpy one in test_kernels); float weights take them as they are.
        xq = x[t].astype(np.float64) if fmt == 0 else dequantize_act(
            _testing.quantize_act_row(fmt, x[t]), fmt, N, {1: 32, 2: 256}[fmt])
        want = w @ xq
        scale = np.abs(w).max(axis=1) * np.abs(xq).sum()
        assert np.all(np.abs(got[t] - want) <= 1e-5 * scale + 1e-30), (level, qtype.name, t)


@pytest.mark.skipif(not any(_testing.has_row_group_kernel(int(t)) for t in ROW_GROUP_TYPES),
                    reason="this machine's core has no row-group kernels to compare with")
@pytest.mark.skipif("aarch64_dotprod" not in RUNNABLE, reason="this Arm CPU has no dot product (SDOT)")
@pytest.mark.parametrize("n_tokens", TOKEN_COUNTS)
@pytest.mark.parametrize("qtype", sorted(ROW_GROUP_TYPES), ids=lambda t: t.name)
def test_dot_product_row_groups_match_this_machines_bits(harness, qtype, n_tokens):
    rows, x = case(qtype, n_tokens)
    for activations in ("int8", "precise"):
        _, got = arm_matmul(harness["aarch64_dotprod"], qtype, rows, x, activations)
        here = _testing.PreparedMatmul(int(qtype), rows, N, True, 1, activations=activations).run(x)
        np.testing.assert_array_equal(got, here, err_msg=activations)


@pytest.mark.parametrize("n_tokens", TOKEN_COUNTS)
@pytest.mark.parametrize("level", RUNNABLE)
@pytest.mark.parametrize("qtype", sorted(ROW_GROUP_TYPES), ids=lambda t: t.name)
def test_arm_precise_matmul_matches_float64_dots(harness, level, qtype, n_tokens):
    # The two rounded rows of each token (test_precise_activations), dotted on the Arm levels.
    rows, x = case(qtype, n_tokens)
    _, got = arm_matmul(harness[level], qtype, rows, x, "precise")
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    for t in range(x.shape[0]):
        value, _ = two_part_rounding(_testing, qtype, x[t])
        scale = np.abs(w).max(axis=1) * np.abs(value).sum()
        assert np.all(np.abs(got[t] - w @ value) <= 1e-5 * scale + 1e-30), (level, qtype.name, t)


@pytest.mark.parametrize("level", RUNNABLE)
@pytest.mark.parametrize("qtype", BLOCK32, ids=lambda t: t.name)
def test_arm_matmul_dots_every_code_of_the_32_element_types(harness, level, qtype):
    # Random code bytes (Q8_0's -128 and 127 included), int8 and precise, against float64.
    check_every_code(arm_command(harness[level]), qtype, 9400)
