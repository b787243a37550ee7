"""Run-time choice of the core's instruction-set level (edgellama/_core.py).

The core is built once per level (x86_64, x86_64_v3 with AVX2, x86_64_v3_vnni adding AVX-VNNI,
x86_64_v4 with AVX-512 VNNI, or `generic`/`native`); the package imports the best one this CPU
runs. Every level this machine can run is checked here against the same independent references as
the default one, so the portable kernels a CPU without AVX-512 would use are tested on every run,
not only where they are the default."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from logit_checks import assert_logits_close, expected_logits
from test_kernels import ALL_TYPES, N, act_rows, reference_dequant, weight_rows
from tiny_models import FORWARD_CASES, write_tiny_llama

from edgellama import _core, _cpu_features, _testing
from edgellama.gguf_loader import load_gguf

LEVELS = _core.runnable_levels()
BASELINES = {"x86_64", "generic", "native"}
FORWARD_SUBSET = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16", "gqa3-Q4_1"]


def run_python(code, **env):
    # From the tests folder, so `edgellama` is the installed package (or PYTHONPATH's), never an
    # unbuilt source tree in the working directory.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, cwd=os.path.dirname(os.path.abspath(__file__)))


def test_levels_are_ordered_best_first_and_end_at_a_baseline():
    assert LEVELS, "no runnable core level"
    assert LEVELS[-1] in BASELINES
    assert _core.LEVEL == LEVELS[0] or os.environ.get(_core.ENV_VAR)
    assert set(LEVELS) <= set(_cpu_features.BUILT_LEVELS.split(","))
    cpu_order = _cpu_features.runnable_levels()
    assert [lv for lv in cpu_order if lv in LEVELS] == [lv for lv in LEVELS if lv != "native"]


@pytest.mark.parametrize("level", LEVELS)
def test_environment_variable_picks_a_level(level):
    out = run_python("from edgellama import _core, _testing; print(_core.LEVEL, _testing._module.__name__)",
                     EDGELLAMA_CPU=level)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [level, f"edgellama._testing_{level}"]  # the test hooks follow the core's level


def test_the_shipped_core_has_no_test_hooks():
    # The single-kernel, codec and reader hooks live in edgellama._testing_<level> only.
    for name in ("dequantize_row", "vec_dot", "matmul", "PreparedMatmul", "exp_approx", "swiglu", "type_info",
                 "quantize_act_row", "dequantize_any", "read_gguf"):
        assert not hasattr(_core, name) and hasattr(_testing, name), name
    with pytest.raises(ImportError, match="choices"):
        _testing.load_level("x86_64_v9")


def test_unknown_level_is_a_clear_import_error():
    out = run_python("from edgellama import _core", EDGELLAMA_CPU="x86_64_v9")
    assert out.returncode != 0
    assert "EDGELLAMA_CPU='x86_64_v9'" in out.stderr and "choices:" in out.stderr


def test_each_level_has_the_kernels_its_instructions_allow():
    for level in LEVELS:
        core = _testing.load_level(level)
        row_groups = {q for q in ALL_TYPES if core.has_row_group_kernel(int(q))}
        if level in ("x86_64_v4", "x86_64_v3_vnni", "x86_64_v3", "aarch64_dotprod"):  # VNNI, AVX2 or SDOT row groups
            assert row_groups == {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K}
        elif level in ("x86_64", "generic"):
            assert not row_groups


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_level_matmul_matches_float64_dots(level, qtype):
    # Each level's matmul (its own dots or row groups) against float64 dots of the
    # dequantized weights with the activations as that level quantizes them.
    core = _testing.load_level(level)
    rng = np.random.default_rng(8000 + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial group
    x = np.stack(act_rows(rng, N) * 2)[:6]
    got = core.matmul(int(qtype), rows, x, row_groups=core.has_row_group_kernel(int(qtype)))
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    fmt = core.type_info(int(qtype))["act_format"]
    block = {0: 1, 1: 32, 2: 256}[fmt]
    for t in range(x.shape[0]):
        if fmt == 0:
            xq = x[t].astype(np.float64)
        else:
            raw = core.quantize_act_row(fmt, x[t])
            xq = dequantize_act(raw, fmt, N, block)
        want = w @ xq
        scale = np.abs(w).max(axis=1) * np.abs(xq).sum()
        assert np.all(np.abs(got[t] - want) <= 1e-5 * scale + 1e-30), (level, qtype, t)


def act_blocks(raw, fmt, n, block):
    """(float32 scale per block, int8 codes [blocks][block]) of a quantized activation row
    (BlockQ8Act32: d, sum, 32 int8; BlockQ8Act256: d, 16 int16 sums, 256 int8)."""
    header = 8 if fmt == 1 else 4 + 32
    blocks = raw.reshape(n // block, header + block)
    return blocks[:, 0:4].copy().view(np.float32).reshape(-1), blocks[:, header:].copy().view(np.int8)


def dequantize_act(raw, fmt, n, block):
    """float64 values of a quantized activation row."""
    d, q = act_blocks(raw, fmt, n, block)
    return (d.astype(np.float64)[:, None] * q).reshape(-1)


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("levels")
    return {name: write_tiny_llama(folder / f"{name}.gguf", **FORWARD_CASES[name]) for name in FORWARD_SUBSET}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", FORWARD_SUBSET)
def test_level_forward_matches_reference(case_files, level, case):
    core = _core.load_level(level)
    model = load_gguf(case_files[case])
    engine = core.LlamaModel(model.config.core_dict(), model.core_tensors(), 64, 2)
    prompt = [int(t) for t in np.random.default_rng(7).integers(0, 300, size=40)]  # 2.5 key blocks of 16
    got = engine.forward(np.asarray(prompt, np.int32), True)
    ref, tol = expected_logits(case_files[case], prompt)
    assert_logits_close(got, ref, tol, f"{level} {case}")
