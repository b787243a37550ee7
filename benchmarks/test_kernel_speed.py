"""Kernel microbenchmarks: each weight type's matmul exactly as the model runs it (repacked into
row groups where the CPU level has them), in GB/s of weight bytes streamed, at every CPU level this
machine can run, for a decode step (1 token) and a prefill batch (64 tokens, where the figure is
the weight bytes once per batch: how well the kernel reuses each weight across tokens).

Not part of the test suite (speed is not asserted). Run with:

    pip install ".[bench]"
    pytest benchmarks/test_kernel_speed.py --benchmark-columns=median,iqr,rounds

The matrix is 4096 x 4096 (8 to 32 MiB: larger than the caches, so decode streams from memory
as it does in a model); each case's GB/s is in its extra info (--benchmark-json) and listed before
the timing tables. Compare with `edgellama bench`'s read-bandwidth probe for the roofline.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from edgellama import _core, _testing

ROWS = COLS = 4096
TYPES = [T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K, T.Q5_0, T.F16]
LEVELS = _core.runnable_levels()
RESULTS = []


def weight_bytes(qtype, rng):
    """N(0, 0.02²) weights quantized by edgellama's own codecs (gguf cannot write K-quants)."""
    w = (rng.standard_normal((ROWS, COLS)) * 0.02).astype(np.float32)
    data, _ = _core.quantize_rows(int(qtype), w, 2)
    return np.asarray(data, dtype=np.uint8).reshape(ROWS, -1)


@pytest.fixture(scope="module", params=TYPES, ids=lambda t: t.name)
def matrix(request):
    return request.param, weight_bytes(request.param, np.random.default_rng(0))


@pytest.mark.parametrize("n_tokens", [1, 64], ids=["decode", "prefill64"])
@pytest.mark.parametrize("level", LEVELS)
def test_matmul_speed(benchmark, matrix, level, n_tokens):
    qtype, rows = matrix
    core = _testing.load_level(level)
    prepared = core.PreparedMatmul(int(qtype), rows, COLS, core.has_row_group_kernel(int(qtype)), 1)
    x = np.random.default_rng(1).standard_normal((n_tokens, COLS)).astype(np.float32)
    benchmark.group = f"{qtype.name} {'decode' if n_tokens == 1 else f'prefill {n_tokens} tokens'}"
    benchmark(prepared.run, x)
    if benchmark.disabled:  # --benchmark-disable: ran once as a smoke test
        return
    gb_s = rows.nbytes / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["weight GB/s"] = round(gb_s, 2)
    benchmark.extra_info["token GMAC/s"] = round(ROWS * COLS * n_tokens / benchmark.stats.stats.median / 1e9, 1)
    RESULTS.append((qtype.name, level, n_tokens, gb_s))


def teardown_module(module):
    print("\nweight GB/s (median), 1 thread")
    for name, level, n_tokens, gb_s in sorted(RESULTS):
        print(f"  {name:<5} {level:<10} {n_tokens:>3} tok  {gb_s:7.2f}")
