"""Shared by the CUDA backend's tests (test_cuda_kernels, test_cuda_engine, test_cuda_gpu): the
module and GPU checks, the GEMV readers and their row layouts, engines on a device or the host,
the tiny model files, and the bound the GPU's logits are held to.

Tolerance of the GPU path, per row of logits (scale = max|reference logits|), the reference
keeping an fp16 KV cache as both engines do:
    max|GPU − reference| ≤ tol_cpu[row] + KV_MARGIN · max(kv_err[row], mean(kv_err))
where tol_cpu is logit_checks.expected_logits' bound (the CPU's int8 activation rounding for
quantized weights, FLOAT_REL·scale for float ones, plus its own fp16 KV term with
KV_FLIP_MARGIN = 1; the GPU quantizes activations exactly as the
CPU does) and kv_err[row] = max|reference(fp16 KV) − reference(exact KV)|,
the whole effect of the fp16 cache on the very file and tokens: it covers the GPU rounding a key
or value next to a half-way point the other way. Measured over the 22 forward cases × 3 seeds
× 12 positions, kv_err is at most 1.9e-3·scale (mean 2.7e-4·scale); KV_MARGIN = 2.5 as for the
int8 term, for summation order and exp differences. The CPU is within tol_cpu of the reference, so
GPU and CPU must agree within the sum of both bounds; both checks run.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from logit_checks import expected_logits
from reference import load_reference
from test_kernels import BLOCK32, KQUANTS, act_rows
from tiny_models import FORWARD_CASES, write_tiny_llama

from edgellama import Llama
from edgellama.cuda import cuda_status

KV_MARGIN = 2.5
PROMPT = [5, 17, 200, 3, 99, 42, 7]
DECODE = [261, 150, 2, 31, 64]

try:
    from edgellama import _cuda
except ImportError:  # built without nvcc: the module-only tests skip, the error tests run
    _cuda = None

GPU_OK, GPU_REASON = cuda_status()
needs_module = pytest.mark.skipif(_cuda is None, reason="edgellama._cuda not built (no nvcc at build time)")
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f"no usable CUDA GPU: {GPU_REASON}")


def gpu_tolerance(path, seq):
    """(reference logits, CPU bound, GPU bound) per row; see the module docstring."""
    ref, tol_cpu = expected_logits(path, seq)  # with the fp16 KV cache
    exact_kv = load_reference(path).logits(seq)
    kv_err = np.abs(ref - exact_kv).max(axis=1)
    return ref, tol_cpu, tol_cpu + KV_MARGIN * np.maximum(kv_err, kv_err.mean())



QUANTIZED = BLOCK32 + KQUANTS
# Types the GPU can keep in grouped rows (csrc/cuda/grouped_rows.h), and the row lengths those need.
GROUP_ELEMENTS = {T.Q4_0: 256, T.Q8_0: 256, T.Q6_K: 2048}
GROUPABLE = list(GROUP_ELEMENTS)
# (type, grouped) of every int8 GEMV reader: each quantized type as GGUF stores it, and grouped.
READERS = [(q, False) for q in QUANTIZED] + [(q, True) for q in GROUPABLE]


def reader_id(case):
    qtype, grouped = case
    return qtype.name + ("-grouped" if grouped else "")


def row_length(reader, n):
    """n, or for a grouped reader the next row length it can group (Q6_K: whole 2048-element groups)."""
    qtype, grouped = reader
    group = GROUP_ELEMENTS[qtype] if grouped else 1
    return -(-n // group) * group


def long_row(reader):
    """A row length that gives a lane several rounds of pieces in flight, then a ragged last round."""
    return 10240 if reader == (T.Q6_K, True) else 4352


def device_rows(qtype, rows, n, grouped):
    """(device type id, bytes) of GGUF rows of n elements as the GPU keeps them: unchanged, or
    regrouped (Q4_0 / Q8_0 / Q6_K with grouped_rows)."""
    raw = np.concatenate(rows)
    if not grouped:
        return int(qtype), raw
    type_id, regrouped = _cuda.group_rows_host(int(qtype), raw, len(rows), n)
    assert type_id != int(qtype)
    return type_id, regrouped


def device_row(qtype, row, n, grouped):
    return device_rows(qtype, [row], n, grouped)


def token_rows(rng, n, n_tokens):
    """n_tokens activation rows of n elements, of different magnitudes."""
    rows = act_rows(rng, n)
    return np.stack([rows[t % len(rows)] * np.float32(1 + t) for t in range(n_tokens)])


FUSIONS = ("fused_attention", "fused_swiglu_quant", "fused_rope")
# The engine options that change no operation, only where or when it runs: the fusions, and the
# GEMV's prefetch of its weight rows (a hint to the L2; the host execution has no L2 to warm).
SAME_BITS_OPTIONS = FUSIONS + ("prefetch_weights",)


def cuda_engine(path, n_ctx, device, options=(), n_threads=1, activations=None):
    """The CUDA engine (edgellama._cuda.CudaLlamaModel) on `device` with the CudaOptions named in
    `options` on ("grouped_rows", "fused_attention"); -1 executes its forward step on the host
    (host memory, the kernels' warp and block code on host fibers; csrc/cuda/host_backend.cu).
    activations: "int8" or "precise" (None: the engine's default, int8)."""
    model = Llama(str(path), n_ctx=n_ctx, device="cpu").model
    chosen = {} if activations is None else {"activations": activations}
    return _cuda.CudaLlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads, device,
                                **{name: True for name in options}, **chosen)


def host_engine(path, n_ctx, options=()):
    return cuda_engine(path, n_ctx, -1, options)


def case_and_options(case):
    """("mixed-Q4_K_M-2048", ("grouped_rows", "fused_attention")) for "mixed-Q4_K_M-2048+grouped_rows+fused_attention"."""
    name, *options = case.split("+")
    return name, tuple(options)


# Every weight type and shape the CPU engine is tested with, and files whose Q8_0 and Q6_K rows can
# be grouped (Q6_K: 2048 elements; the Q4_K_M-like mix of llama.cpp's files at that width).
GPU_CASES = {**FORWARD_CASES, "Q8_0-256": dict(weight_type="Q8_0", n_embd=256, n_head=4, n_head_kv=2, n_ff=512),
             "mixed-Q4_K_M-2048": dict(weight_type="Q4_K", output_type="Q6_K", tied_output=False, n_embd=2048,
                                       n_head=16, n_head_kv=4, n_ff=2048, overrides={
                                           "blk.0.attn_v.weight": {"type": "Q6_K"},
                                           "blk.0.ffn_down.weight": {"type": "Q6_K"}})}


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_forward")
    return {name: write_tiny_llama(folder / f"{name}.gguf", **kw) for name, kw in GPU_CASES.items()}
