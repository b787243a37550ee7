"""The CUDA backend (edgellama._cuda, Llama(device="cuda")).

Runs everywhere (needs only the _cuda module, no GPU), the device code executed on the CPU:
  * the GPU's block decoders (csrc/cuda/formats.cuh) equal the CPU dequantizers bit for bit for
    every weight type;
  * its activation quantization equals the CPU's int8 blocks byte for byte (rearranged from the
    device's layout), and its integer dots (csrc/cuda/int8_dot.cuh, split over a warp's lanes as
    the kernel splits them) match numpy and the CPU engine within float32 rounding, for every
    quantized type;
  * the block code of the decode GEMV and of attention and RMSNorm, the warp code of activation
    quantization and of the tensor-core prefill tiles, and RoPE's thread code, run on host
    threads (csrc/cuda/host_warp.h, the MMA rebuilt from the PTX fragment layout), against those
    dots, the CPU's bytes, the CPU's scalar vec_dot and numpy;
  * the grouped weight layouts (csrc/cuda/grouped_rows.h) through every reader above, and the
    fused forms of attention's merge, of the activation quantizations and of RoPE (each block
    that finishes last doing the merge, the quantization or the head's rotation) against the
    unfused code's bits, down to whole engine steps;
  * the engine's whole forward step (llama_cuda_model.cu) on the host backend against the
    reference, with and without the engine options (CudaOptions), and its greedy step (the choice
    made where the logits are) against numpy's argmax and log-softmax of its logits;
  * device="cuda" without the module or without a GPU raises DeviceUnavailableError, not a crash.

Needs a GPU (skipped with the reason otherwise): GPU logits against the float64 reference and the
CPU engine for the tiny models of every type, and for SmolLM2, also with the engine options; the
device kernels against their host execution bit for bit (every GEMV reader, grouped ones too; the
captured decode step, with fused attention too, against kernel-by-kernel launches).

Tolerance of the GPU path, per row of logits (scale = max|reference logits|), the reference
keeping an fp16 KV cache as both engines do:
    max|GPU − reference| ≤ tol_cpu[row] + KV_MARGIN · max(kv_err[row], mean(kv_err))
where tol_cpu is logit_checks.expected_logits' bound (the CPU's int8 activation rounding for
quantized weights, FLOAT_REL·scale for float ones; the GPU quantizes activations exactly as the
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

from logit_checks import assert_logits_close, expected_logits
from reference import load_reference
from test_kernels import (ACT_OF, ALL_TYPES, BLOCK32, KQUANTS, N, act_rows, dot_with_quantized_act, reference_dequant,
                          weight_rows)
from tiny_models import FORWARD_CASES, write_tiny_llama

from edgellama import Llama, _core
from edgellama.cuda import cuda_status
from edgellama.errors import DeviceUnavailableError, EdgellamaError

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


# ---------------------------------------------------------------- without a GPU

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


@needs_module
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_gpu_block_decoders_equal_cpu_dequantize_bitwise(qtype):
    rng = np.random.default_rng(2000 + int(qtype))
    for i, row in enumerate(weight_rows(rng, qtype)):
        gpu_path = _cuda.decode_row_host(int(qtype), row, N)
        cpu = _core.dequantize_row(int(qtype), row, N)
        bad = np.flatnonzero(gpu_path.view(np.uint32) != cpu.view(np.uint32))
        assert bad.size == 0, f"{qtype.name} row {i}: first mismatches at {bad[:5]}: {gpu_path[bad[:5]]} vs {cpu[bad[:5]]}"


@needs_module
@pytest.mark.parametrize("qtype", GROUPABLE, ids=lambda t: t.name)
def test_grouped_rows_hold_each_blocks_bytes_and_decode_as_gguf(qtype):
    """Grouped rows (csrc/cuda/grouped_rows.h): each run of 8 blocks stores each field of the 8
    together (codes, then f16 scales; Q6_K: ql, qh, scales, d), in the same row bytes; the device's
    grouped decoder gives the CPU's values bit for bit. Rows that are not whole groups (256
    elements; Q6_K 2048) have no grouped layout."""
    rng = np.random.default_rng(2050 + int(qtype))
    n = row_length((qtype, True), N)
    rows = weight_rows(rng, qtype, n)
    # the fields of a block (start, end) in the order a group stores them
    fields = {T.Q4_0: [(2, 18), (0, 2)], T.Q8_0: [(2, 34), (0, 2)],
              T.Q6_K: [(0, 128), (128, 192), (192, 208), (208, 210)]}[qtype]
    block_bytes = max(end for _, end in fields)
    type_id, grouped = device_rows(qtype, rows, n, True)
    want = []
    for row in rows:
        for group in row.reshape(-1, 8, block_bytes):
            want += [group[:, a:b].reshape(-1) for a, b in fields]
    np.testing.assert_array_equal(grouped, np.concatenate(want))
    row_bytes = rows[0].size
    for i, row in enumerate(rows):
        gpu_path = _cuda.decode_row_host(type_id, grouped[i * row_bytes:(i + 1) * row_bytes], n)
        cpu = _core.dequantize_row(int(qtype), row, n)
        np.testing.assert_array_equal(gpu_path.view(np.uint32), cpu.view(np.uint32))
    n_short = GROUP_ELEMENTS[qtype] * 9 // 8  # whole blocks, not whole groups
    short = weight_rows(rng, qtype, n_short)
    with pytest.raises(ValueError, match="no grouped layout"):
        _cuda.group_rows_host(int(qtype), np.concatenate(short), len(short), n_short)


def _token_rows(rng, n, n_tokens):
    rows = act_rows(rng, n)
    return np.stack([rows[t % len(rows)] * np.float32(1 + t) for t in range(n_tokens)])


def device_row_as_cpu_blocks(raw, n, block):
    """The device's activation row ([codes][scales][sums], csrc/cuda/int8_dot.cuh: ActRow32 /
    ActRow256) rearranged into the CPU's blocks (BlockQ8Act32: d, sum, qs; BlockQ8Act256: d,
    bsums, qs)."""
    nb = n // block
    qs = raw[:n].reshape(nb, block)
    d = raw[n:n + 4 * nb].reshape(nb, 4)
    sums = raw[n + 4 * nb:].reshape(nb, 4 if block == 32 else 32)
    return np.concatenate([d, sums, qs], axis=1).reshape(-1)


@needs_module
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_gpu_activation_blocks_equal_cpu_bitwise(qtype):
    """The GPU quantizes a matmul's input into the CPU's codes, scales and sums (its own layout)."""
    rng = np.random.default_rng(2100 + int(qtype))
    block = 32 if qtype in BLOCK32 else 256
    for i, x in enumerate(act_rows(rng)):
        raw = np.frombuffer(_cuda.quantize_act_host(int(qtype), x), np.uint8)
        gpu_path = device_row_as_cpu_blocks(raw, x.size, block)
        cpu = _core.quantize_act_row(ACT_OF[qtype], x)
        assert gpu_path.shape == cpu.shape, (gpu_path.shape, cpu.shape)
        bad = np.flatnonzero(gpu_path != cpu)
        assert bad.size == 0, f"{qtype.name} row {i}: first differing bytes at {bad[:5]}"


@needs_module
@pytest.mark.parametrize("length", ["short", "long"])  # long: several pieces a lane, a ragged last round
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gpu_int8_dot_matches_cpu_and_reference(reader, length):
    """The GPU's integer dot of each weight type and row layout (unpacked codes, dp4a, per-piece
    float terms, the warp's lane split and sum), executed on the CPU: within float32 rounding of
    the float64 dot of the dequantized weights with the int8-rounded activations, and of the CPU
    engine."""
    qtype, grouped = reader
    n = row_length(reader, N) if length == "short" else long_row(reader)
    rng = np.random.default_rng(2200 + int(qtype) + n)
    blocks = n // 32
    rtol = 2 * (blocks + 8) * 2.0**-24  # per-block float terms summed in two different orders
    checked = 0
    for w_raw in weight_rows(rng, qtype, n):
        w = reference_dequant(qtype, w_raw).astype(np.float64)
        for x in act_rows(rng, n):
            got = _cuda.int8_dot_host(*device_row(qtype, w_raw, n, grouped), x)
            want, xq = dot_with_quantized_act(qtype, w, x)
            magnitude = float(np.dot(np.abs(w), np.abs(xq))) + 1e-30
            assert abs(got - want) <= 1e-5 * magnitude, (qtype.name, got, want, magnitude)
            cpu = _core.vec_dot(int(qtype), w_raw, x)
            assert abs(got - cpu) <= rtol * magnitude, (qtype.name, got, cpu, magnitude)
            checked += 1
    assert checked >= 30


@needs_module
def test_gpu_int8_dot_detects_element_order():
    """A one-hot activation picks out one weight: catches a nibble, half or sub-block swap that
    random rows could average away."""
    rng = np.random.default_rng(7)
    for qtype, grouped in READERS:
        n = row_length((qtype, grouped), 512)
        w_raw = weight_rows(rng, qtype, n)[0]
        w = reference_dequant(qtype, w_raw)
        type_id, row = device_row(qtype, w_raw, n, grouped)
        for k in (0, 1, 15, 16, 17, 31, 32, 63, 64, 100, 128, 200, 255, 256 + 37, 511, n - 1):
            x = np.zeros(n, np.float32)
            x[k] = 1.0
            got = _cuda.int8_dot_host(type_id, row, x)
            assert got == pytest.approx(float(w[k]), rel=1e-6, abs=1e-30), (reader_id((qtype, grouped)), k)


@needs_module
@pytest.mark.parametrize("n_tokens", [1, 11], ids=lambda n: f"{n}tok")  # 11: a full tile, then a partial one
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gemv_block_code_on_host_equals_the_lane_dots(reader, n_tokens):
    """The int8 GEMV's block code (csrc/cuda/gemv_rows.cuh: row groups of the type's shape, a
    partial last group, token tiles, the warps' sums meeting in shared memory), run on 128 host
    threads a block, gives each (row, token) the bits of int8_dot_host, which the tests above hold
    to numpy and the CPU engine; its SwiGLU form gives
    silu(gate) * up of those dots."""
    qtype, grouped = reader
    rng = np.random.default_rng(2700 + int(qtype) + n_tokens)
    n = row_length(reader, 1024)
    rows = [r for _ in range(2) for r in weight_rows(rng, qtype, n)][:7]
    up = [r for _ in range(2) for r in weight_rows(rng, qtype, n)][:7]
    x = _token_rows(rng, n, n_tokens)
    type_id, w = device_rows(qtype, rows, n, grouped)
    _, w_up = device_rows(qtype, up, n, grouped)
    y = _cuda.gemv_host(type_id, w, None, len(rows), x)
    dots = np.array([[_cuda.int8_dot_host(*device_row(qtype, r, n, grouped), xt) for r in rows] for xt in x],
                    np.float32)
    bad = np.argwhere(y.view(np.uint32) != dots.view(np.uint32))
    assert bad.size == 0, f"{reader_id(reader)}: (token, row) {bad[:5].tolist()}"
    fused = _cuda.gemv_host(type_id, w, w_up, len(rows), x)
    up_dots = np.array([[_cuda.int8_dot_host(*device_row(qtype, r, n, grouped), xt) for r in up] for xt in x],
                       np.float32)
    g = dots.astype(np.float64)
    with np.errstate(over="ignore"):  # exp(-g) of a large negative g is inf: silu is -0 there
        want = g / (1 + np.exp(-g)) * up_dots
    np.testing.assert_allclose(fused, want, rtol=1e-5, atol=1e-30)


@needs_module
@pytest.mark.parametrize("act_block,act_type", [(32, T.Q8_0), (256, T.Q4_K)], ids=["q8_32", "q8_256"])
@pytest.mark.parametrize("n_tokens", [1, 11], ids=lambda n: f"{n}tok")  # 11: two tile launches, the counts reused
@pytest.mark.parametrize("reader", [(T.Q4_0, False), (T.Q8_0, False), (T.Q4_K, False), (T.Q6_K, False),
                                    (T.Q4_0, True)], ids=reader_id)
def test_swiglu_gemv_quantizes_its_output_like_the_quantize_kernel(reader, n_tokens, act_block, act_type):
    """The one-launch SwiGLU GEMV that also quantizes its output for ffn_down (gemv_rows.cuh:
    quantize_finished_chunk, the block that completes a chunk of rows quantizing it): the same
    floats as without, and, token by token, the bytes the quantize kernel writes for them (over
    the launch shapes' 1, 2 and 8 rows a block, chunks of 32 and 256 rows)."""
    qtype, grouped = reader
    rng = np.random.default_rng(2800 + int(qtype) + n_tokens + act_block)
    n, n_rows = row_length(reader, 256), 512
    gate_rows = [r for _ in range(n_rows // 6 + 1) for r in weight_rows(rng, qtype, n)][:n_rows]
    up_rows = [r for _ in range(n_rows // 6 + 1) for r in weight_rows(rng, qtype, n)][:n_rows]
    x = _token_rows(rng, n, n_tokens)
    type_id, gate = device_rows(qtype, gate_rows, n, grouped)
    _, up = device_rows(qtype, up_rows, n, grouped)
    y, act = _cuda.swiglu_quantized_host(type_id, gate, up, n_rows, x, act_block)
    plain = _cuda.gemv_host(type_id, gate, up, n_rows, x)
    np.testing.assert_array_equal(y.view(np.uint32), plain.view(np.uint32))
    want = np.concatenate([np.frombuffer(_cuda.quantize_act_host(int(act_type), row), np.uint8) for row in plain])
    np.testing.assert_array_equal(act, want)
    with pytest.raises(ValueError, match="whole blocks"):
        _cuda.swiglu_quantized_host(type_id, gate[:gate.size // n_rows * 48], up[:up.size // n_rows * 48], 48, x, 32)


@needs_module
@pytest.mark.parametrize("n_tokens", [16, 40], ids=lambda n: f"{n}tok")  # 40: a second, partial token tile
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_tensor_core_tiles_on_host_equal_cpu_scalar_dot_bitwise(reader, n_tokens):
    """The tensor-core prefill tiles (csrc/cuda/mma_tiles.cuh), run on 32 host threads a warp with
    the MMA rebuilt from the PTX fragment layout: every (row, token) equals the CPU's scalar vec_dot
    bit for bit (70 rows: two full 32-row warps and a partial one). Checks all the tiles' lane
    bookkeeping (fragments, shuffled scales, integer and float sums, stores) without a GPU; the
    GPU test below checks the hardware against the same reference."""
    qtype, grouped = reader
    rng = np.random.default_rng(2600 + int(qtype) + n_tokens)
    n = row_length(reader, 512)
    rows = [r for _ in range(12) for r in weight_rows(rng, qtype, n)][:70]
    x = _token_rows(rng, n, n_tokens)
    y = _cuda.mma_matmul_host(*device_rows(qtype, rows, n, grouped), len(rows), x)
    assert y.shape == (n_tokens, len(rows))
    want = np.array([[_core.vec_dot(int(qtype), r, xt, scalar=True) for r in rows] for xt in x], np.float32)
    bad = np.argwhere(y.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{qtype.name}: (token, row) {bad[:5].tolist()}: {y[tuple(bad[0])]} vs {want[tuple(bad[0])]}"


@needs_module
@pytest.mark.parametrize("n", [512, 576], ids=["n512", "n576-no-256-blocks"])
def test_rms_norm_block_code_on_host_matches_numpy_and_quantizes_like_the_cpu(n):
    """The RMSNorm kernel's block code (1024 threads: double sums reduced per warp, then across
    warps) on host threads: (x * scale) * weight as numpy computes it in float32, and the fused
    int8 rows equal the CPU's quantization of those floats byte for byte."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) * np.array([[0.01], [1.0], [300.0]])).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    with256 = n % 256 == 0
    out, act32, act256 = _cuda.rms_norm_host(x, w, 1e-5, True, with256)
    scale = (1.0 / np.sqrt((x.astype(np.float64) ** 2).sum(axis=1) / n + np.float32(1e-5))).astype(np.float32)
    np.testing.assert_allclose(out, (x * scale[:, None]).astype(np.float32) * w, rtol=2e-7, atol=0)
    for raw, block, fmt in ((act32, 32, ACT_OF[T.Q8_0]), (act256, 256, ACT_OF[T.Q4_K])):
        if raw is None:
            assert not with256 and block == 256
            continue
        per_row = raw.size // x.shape[0]
        for r in range(x.shape[0]):
            got = device_row_as_cpu_blocks(raw[r * per_row:(r + 1) * per_row], n, block)
            np.testing.assert_array_equal(got, _core.quantize_act_row(fmt, out[r]))


@needs_module
@pytest.mark.parametrize("n", [1, 5, 1024, 1025, 128256])
def test_greedy_choice_block_code_on_host_is_numpys_argmax_and_log_softmax(n):
    """The greedy choice kernel's block code (greedy_block.cuh: 1024 threads, the first largest
    logit by strided passes and butterflies, the exps summed in double) on host threads: numpy's
    argmax (the first of tied largest logits) and the float64 log-softmax there within 1e-6, with
    -inf logits (banned tokens) in the row."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    if n > 4:
        x[[n // 3, n // 2, n - 1]] = x.max() + 1  # ties: the first wins
        x[1] = -np.inf
    token, logprob = _cuda.greedy_choice_host(x)
    x64 = x.astype(np.float64)
    assert token == int(np.argmax(x))
    assert abs(logprob - (x64[token] - x64.max() - np.log(np.exp(x64 - x64.max()).sum()))) <= 1e-6


@needs_module
def test_rope_store_thread_code_on_host_matches_numpy():
    """RoPE of adjacent pairs (the first n_pairs of each head, angle position * inv_freq in double)
    for queries and keys, and the fp16 store of keys and values at their positions."""
    rng = np.random.default_rng(3)
    n_tok, n_head, n_head_kv, head_dim, n_pairs, first, n_ctx = 3, 4, 2, 64, 24, 5, 10
    q = rng.standard_normal((n_tok, n_head * head_dim)).astype(np.float32)
    k = rng.standard_normal((n_tok, n_head_kv * head_dim)).astype(np.float32)
    v = rng.standard_normal((n_tok, n_head_kv * head_dim)).astype(np.float32)
    inv_freq = 10000.0 ** (-2.0 * np.arange(n_pairs) / (2 * n_pairs)) / np.linspace(1, 4, n_pairs)  # rope_freqs-like
    q_rot, k_cache, v_cache = _cuda.rope_store_host(q, k, v, n_head, n_head_kv, head_dim, inv_freq, first, n_ctx)

    def rotate(rows, heads):
        out = rows.reshape(n_tok, heads, head_dim // 2, 2).copy()
        for t in range(n_tok):
            angle = (first + t) * inv_freq
            c, s_ = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
            a, b = out[t, :, :n_pairs, 0].copy(), out[t, :, :n_pairs, 1].copy()
            out[t, :, :n_pairs, 0] = a * c - b * s_
            out[t, :, :n_pairs, 1] = a * s_ + b * c
        return out.reshape(n_tok, -1)

    np.testing.assert_allclose(q_rot, rotate(q, n_head), rtol=0, atol=2e-6)
    stored_k = k_cache.view(np.float16)[first:first + n_tok].astype(np.float32)
    np.testing.assert_allclose(stored_k, rotate(k, n_head_kv).astype(np.float16).astype(np.float32), rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(v_cache.view(np.float16)[first:first + n_tok], v.astype(np.float16))
    assert not k_cache[:first].any() and not k_cache[first + n_tok:].any()  # nothing stored elsewhere


def reference_attention(q, k, v, first_pos):
    """float64 causal grouped-query attention: q (tokens, heads, dim) at positions first_pos + t over
    k, v (positions, kv heads, dim)."""
    n_tok, n_head, head_dim = q.shape
    group = n_head // k.shape[1]
    kf, vf = k.astype(np.float64), v.astype(np.float64)
    out = np.zeros(q.shape)
    for t in range(n_tok):
        n = first_pos + t + 1
        for h in range(n_head):
            s = kf[:n, h // group] @ q[t, h].astype(np.float64) / np.sqrt(head_dim)
            p = np.exp(s - s.max())
            out[t, h] = (p / p.sum()) @ vf[:n, h // group]
    return out


@needs_module
@pytest.mark.parametrize("head_dim,n_head,n_head_kv,first_pos,n_tok,n_split", [
    (64, 4, 2, 70, 3, 2),     # vector loads of 2 halves, two splits
    (128, 4, 1, 190, 2, 4),   # 4 halves, groups of 4, a split past the positions (empty)
    (256, 2, 2, 135, 1, 3),   # 8 halves
    (32, 6, 2, 40, 3, 1),     # the strided path
    (16, 3, 3, 0, 9, 1),      # prefill from position 0, lanes without a dimension
], ids=lambda v: str(v))
def test_attention_block_code_on_host_matches_numpy(head_dim, n_head, n_head_kv, first_pos, n_tok, n_split):
    """The attention kernels' block code (csrc/cuda/attention_block.cuh: online softmax over 4
    positions a warp step, the warps' and the splits' merges), run on host threads, against float64
    numpy on the same fp16 keys and values. (It found the head-size-128/256 vector loads reading
    their words through another type, which the compiler was free to drop.) The fused form (each
    query's last split block merges; the counts it resets are checked) gives the same bits, and
    its quantized output the quantize kernel's bytes."""
    rng = np.random.default_rng(head_dim + n_split)
    n_pos = first_pos + n_tok + 3
    q = rng.standard_normal((n_tok, n_head, head_dim)).astype(np.float32)
    k = rng.standard_normal((n_pos, n_head_kv, head_dim)).astype(np.float16)
    v = rng.standard_normal((n_pos, n_head_kv, head_dim)).astype(np.float16)
    got = _cuda.attention_host(q, k.view(np.uint16), v.view(np.uint16), first_pos, n_split)
    np.testing.assert_allclose(got, reference_attention(q, k, v, first_pos), rtol=0, atol=2e-6)
    fused = _cuda.attention_host(q, k.view(np.uint16), v.view(np.uint16), first_pos, n_split, fused=True)
    np.testing.assert_array_equal(fused.view(np.uint32), got.view(np.uint32))
    # The fused form's quantization of its output (for the 32- and 256-element activation formats,
    # whose blocks may span heads): the bytes the quantize kernel writes for the same floats.
    for block, weight_type in ((32, T.Q8_0), (256, T.Q4_K)):
        whole = head_dim % block == 0 or (block % head_dim == 0 and n_head % (block // head_dim) == 0)
        if not whole:
            with pytest.raises(ValueError, match="cannot be quantized"):
                _cuda.attention_quantized_host(q, k.view(np.uint16), v.view(np.uint16), first_pos, n_split, block)
            continue
        out, act = _cuda.attention_quantized_host(q, k.view(np.uint16), v.view(np.uint16), first_pos, n_split, block)
        np.testing.assert_array_equal(out.view(np.uint32), got.view(np.uint32))
        want = np.concatenate([np.frombuffer(_cuda.quantize_act_host(int(weight_type), row.reshape(-1)), np.uint8)
                               for row in got])
        np.testing.assert_array_equal(act, want, err_msg=f"{block}-element blocks")


@needs_module
def test_decode_graph_splits_chunk_the_positions_as_kernel_by_kernel_decode_does():
    """The captured decode step attends over decode_graph_splits(positions) splits, kernel-by-kernel
    decode over attention_splits(positions, 1): both must cut the positions into the same chunks
    (the kernel's chunk is max(64, ceil(positions / splits))), the graph's extra splits empty."""
    for max_pos in list(range(1, 9000)) + [12345, 70000]:
        exact, graph = _cuda.attention_splits(max_pos, 1), _cuda.decode_graph_splits(max_pos)
        chunk = lambda splits: max(64, -(-max_pos // splits))  # noqa: E731
        assert graph >= exact and chunk(graph) == chunk(exact), (max_pos, exact, graph)
        assert -(-max_pos // chunk(exact)) <= exact  # every position falls in a split


@needs_module
@pytest.mark.parametrize("first_pos", [129, 600])  # 3 splits against 4, 10 against 16
def test_empty_attention_splits_change_no_bit(first_pos):
    """The attention passes with the graph's split count give the bits of kernel-by-kernel decode's
    (empty splits merge with weight exactly 0), on the block code run on host threads."""
    rng = np.random.default_rng(first_pos)
    q = rng.standard_normal((1, 4, 64)).astype(np.float32)
    k = rng.standard_normal((first_pos + 1, 2, 64)).astype(np.float16)
    v = rng.standard_normal((first_pos + 1, 2, 64)).astype(np.float16)
    exact, graph = _cuda.attention_splits(first_pos + 1, 1), _cuda.decode_graph_splits(first_pos + 1)
    assert graph > exact
    a = _cuda.attention_host(q, k.view(np.uint16), v.view(np.uint16), first_pos, exact)
    b = _cuda.attention_host(q, k.view(np.uint16), v.view(np.uint16), first_pos, graph)
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def cuda_engine(path, n_ctx, device, options=(), n_threads=1):
    """The CUDA engine (edgellama._cuda.CudaLlamaModel) on `device` with the CudaOptions named in
    `options` on ("grouped_rows", "fused_attention"); -1 executes its forward step on the host
    (host memory, the kernels' warp and block code on host threads; csrc/cuda/host_backend.cu)."""
    model = Llama(str(path), n_ctx=n_ctx, device="cpu").model
    return _cuda.CudaLlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads, device,
                                **{name: True for name in options})


def host_engine(path, n_ctx, options=()):
    return cuda_engine(path, n_ctx, -1, options)


def case_and_options(case):
    """("mixed-Q4_K_M-2048", ("grouped_rows", "fused_attention")) for "mixed-Q4_K_M-2048+grouped_rows+fused_attention"."""
    name, *options = case.split("+")
    return name, tuple(options)


@needs_module
@pytest.mark.parametrize("case", ["Q4_K", "gqa3-Q4_1", "head_dim128-Q8_0", "untied-Q4_K-Q6_K_output",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K", "rope_freqs-F32", "rope_yarn-rope_freqs-Q4_1",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows", "Q8_0-256+grouped_rows+fused_attention",
                                  "mixed-Q4_K_M-2048+grouped_rows", "gqa3-Q4_1+fused_attention",
                                  "Q4_K+fused_attention+fused_swiglu_quant", "Q8_0-256+fused_swiglu_quant",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K+fused_swiglu_quant", "gqa3-Q4_1+fused_rope",
                                  "mixed-Q4_K_M-2048+grouped_rows+fused_attention+fused_swiglu_quant+fused_rope"])
def test_engine_step_on_the_host_matches_reference(case_files, case):
    """The whole forward step of the CUDA engine (llama_cuda_model.cu: buffers, the op sequence,
    RoPE positions, KV-cache rows, logits rows) run on the host: prefill then decode within the
    GPU bound of the reference, and truncate/reset rewind it. With "+" options (CudaOptions):
    grouped_rows uploads Q4_0 / Q8_0 / Q6_K rows grouped (the embedding too, whose rows the grouped
    decoder then looks up); fused_attention merges attention's splits in its kernel and quantizes
    its output there (gqa3: 32-element blocks over two heads of 16; Q4_K: 256 over four of 64);
    fused_swiglu_quant has the SwiGLU GEMV quantize its output for ffn_down (the mixed file: a
    F16 gate, so two matmuls and the quantize kernel instead); fused_rope has a decode step's Q/K/V
    GEMV rotate and cache each head its blocks complete (gqa3: heads of 16 rows; the Q4_K_M mix:
    Q6_K values in a launch of their own, so a KV head completes across two launches)."""
    name, options = case_and_options(case)
    path = case_files[name]
    seq = PROMPT + DECODE
    ref, _, tol = gpu_tolerance(path, seq)
    engine = host_engine(path, 64, options)
    assert "host execution" in engine.device_name
    assert engine.grouped_rows == ("grouped_rows" in options)
    assert engine.fused_attention == ("fused_attention" in options)
    assert engine.fused_swiglu_quant == ("fused_swiglu_quant" in options)
    assert engine.fused_rope == ("fused_rope" in options)
    n = len(PROMPT)
    got = engine.forward(np.array(PROMPT, np.int32), True)
    assert got.shape == (n, ref.shape[1])
    assert_logits_close(got, ref[:n], tol[:n], f"{case} host-run prefill")
    for i, tok in enumerate(DECODE):
        step = engine.forward(np.array([tok], np.int32), False)
        assert_logits_close(step[None], ref[n + i:n + i + 1], tol[n + i:n + i + 1], f"{case} host-run decode {i}")
    assert engine.n_past == len(seq)
    engine.truncate(n)
    again = engine.forward(np.array(DECODE[:1], np.int32), False)
    assert_logits_close(again[None], ref[n:n + 1], tol[n:n + 1], f"{case} host-run after truncate")
    engine.reset()
    first = engine.forward(np.array(seq[:1], np.int32), False)
    assert_logits_close(first[None], ref[:1], tol[:1], f"{case} host-run after reset")


FUSIONS = ("fused_attention", "fused_swiglu_quant", "fused_rope")
# The engine options that change no operation, only where or when it runs: the fusions, and the
# GEMV's prefetch of its weight rows (a hint to the L2; the host execution has no L2 to warm).
SAME_BITS_OPTIONS = FUSIONS + ("prefetch_weights",)


@needs_module
@pytest.mark.parametrize("case", ["gqa3-Q4_1", "mixed-Q4_0-Q8_0-F16-Q6_K", "rope_freqs-F32"])
def test_engine_fusions_on_the_host_give_the_default_bits(case_files, case):
    """The fusions move work into another kernel's last blocks without changing a single
    operation: with all of them on, the host-run engine's prefill and decode logits equal the
    default engine's bit for bit, step after step (a count left non-zero, or a head rotated twice
    or not at all, would show from the next step on), and after a truncate. The files mix launch
    groups (Q/K/V in one to three launches) and fall back where a fusion does not apply (F32
    matrices: the separate kernels)."""
    path = case_files[case]
    plain, fused = host_engine(path, 64), host_engine(path, 64, SAME_BITS_OPTIONS)
    assert all(getattr(fused, name) for name in SAME_BITS_OPTIONS)
    for engine_step in ([PROMPT], [[t] for t in DECODE]):
        for tokens in engine_step:
            want = plain.forward(np.array(tokens, np.int32), True)
            got = fused.forward(np.array(tokens, np.int32), True)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{case} {tokens}")
    for engine in (plain, fused):
        engine.truncate(len(PROMPT) + 1)
    tok = np.array(DECODE[-1:], np.int32)
    np.testing.assert_array_equal(fused.forward(tok, False).view(np.uint32), plain.forward(tok, False).view(np.uint32))


@needs_module
def test_grouped_upload_on_several_threads_gives_the_same_engine(case_files):
    """The upload regroups each chunk of rows on n_threads threads (a row range each): three
    threads give the one-thread engine's logits bit for bit (Q4_0, Q8_0 and 2048-wide Q6_K rows)."""
    for case in ("mixed-Q4_0-Q8_0-F16-Q6_K", "mixed-Q4_K_M-2048"):
        one, three = (cuda_engine(case_files[case], 16, -1, ("grouped_rows",), n_threads=t) for t in (1, 3))
        tokens = np.array(PROMPT, np.int32)
        np.testing.assert_array_equal(three.forward(tokens, True).view(np.uint32),
                                      one.forward(tokens, True).view(np.uint32), err_msg=case)


@needs_module
def test_engine_greedy_step_on_the_host_returns_the_choice_of_its_logits(case_files):
    """forward_greedy (the last token's logits kept on the device, the greedy choice made there)
    after a prefill and after single-token steps: the argmax of the logits forward gives for the
    same tokens, and their log-softmax; the cache advances the same. Ids outside the vocabulary and
    a context overflow are clear errors that evaluate nothing."""
    path = case_files["gqa3-Q4_1"]
    logits_engine, greedy_engine = host_engine(path, 64), host_engine(path, 64)
    for tokens in [PROMPT] + [[t] for t in DECODE[:2]]:
        logits = logits_engine.forward(np.array(tokens, np.int32), False).astype(np.float64)
        token, logprob = greedy_engine.forward_greedy(np.array(tokens, np.int32))
        assert token == int(np.argmax(logits))
        assert logprob == pytest.approx(logits[token] - logits.max() - np.log(np.exp(logits - logits.max()).sum()),
                                        abs=1e-6)
        assert greedy_engine.n_past == logits_engine.n_past
    n_past = greedy_engine.n_past
    with pytest.raises(IndexError, match="outside the vocabulary"):
        greedy_engine.forward_greedy(np.array([10**6], np.int32))
    with pytest.raises(ValueError, match="context overflow"):
        greedy_engine.forward_greedy(np.zeros(64, np.int32))
    assert greedy_engine.n_past == n_past  # nothing evaluated


@needs_module
@pytest.mark.parametrize("case", ["Q4_0", "Q4_K", "mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows"])
def test_engine_tensor_core_prefill_on_the_host_matches_reference(case_files, case):
    """A 20-token prompt takes the tensor-core tiles (from 16 tokens) inside the engine's step."""
    name, options = case_and_options(case)
    path = case_files[name]
    ids = [int(t) for t in np.random.default_rng(11).integers(0, 300, 20)]
    ref, _, tol = gpu_tolerance(path, ids)
    engine = host_engine(path, 32, options)
    assert engine.tensor_cores
    assert_logits_close(engine.forward(np.array(ids, np.int32), True), ref, tol, f"{case} host-run MMA prefill")


@needs_module
def test_module_reports_devices_without_raising():
    count, why = _cuda.device_count()
    assert count >= 0
    assert count > 0 or why  # zero devices always comes with a reason


@pytest.mark.skipif(GPU_OK, reason="a CUDA GPU is visible: the no-GPU error cannot be provoked here")
def test_cuda_device_without_gpu_is_a_clear_error(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", weight_type="Q4_0")
    with pytest.raises(DeviceUnavailableError) as info:
        Llama(str(path), n_ctx=64, device="cuda")
    assert isinstance(info.value, EdgellamaError)
    message = str(info.value)
    assert "cuda" in message.lower() and "device='cpu'" in message
    # the CPU path still works in the same process
    assert Llama(str(path), n_ctx=64, device="cpu").eval([1, 2, 3]).shape == (300,)


def test_cuda_device_without_the_module_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "edgellama._cuda", None)  # as if built without nvcc
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(DeviceUnavailableError, match="edgellama._cuda"):
        Llama(str(path), n_ctx=64, device="cuda")


def test_unknown_device_is_rejected(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(ValueError, match="unknown device"):
        Llama(str(path), n_ctx=64, device="tpu")


# ---------------------------------------------------------------- on a GPU

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


@needs_gpu
@pytest.mark.parametrize("case", sorted(GPU_CASES))
def test_gpu_prefill_then_decode_matches_reference_and_cpu(case_files, case):
    path = case_files[case]
    seq = PROMPT + DECODE
    ref, tol_cpu, tol_gpu = gpu_tolerance(path, seq)
    gpu = Llama(str(path), n_ctx=256, device="cuda")
    cpu = Llama(str(path), n_ctx=256, n_threads=2, device="cpu")
    got = gpu.eval(PROMPT, all_logits=True)
    want = cpu.eval(PROMPT, all_logits=True)
    assert got.dtype == np.float32 and got.shape == (len(PROMPT), ref.shape[1])
    n = len(PROMPT)
    assert_logits_close(got, ref[:n], tol_gpu[:n], f"{case} GPU prefill vs reference")
    assert_logits_close(got, want, tol_gpu[:n] + tol_cpu[:n], f"{case} GPU vs CPU prefill")
    for i, tok in enumerate(DECODE):
        pos = n + i
        step = gpu.eval([tok])
        cpu_step = cpu.eval([tok])
        assert step.shape == (ref.shape[1],)
        assert_logits_close(step[None], ref[pos:pos + 1], tol_gpu[pos:pos + 1], f"{case} GPU decode {pos}")
        assert_logits_close(step[None], cpu_step[None], tol_gpu[pos:pos + 1] + tol_cpu[pos:pos + 1],
                            f"{case} GPU vs CPU decode {pos}")
    assert gpu.n_past == len(seq)


@needs_gpu
@pytest.mark.parametrize("case", ["mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows", "Q8_0-256+grouped_rows+fused_attention",
                                  "mixed-Q4_K_M-2048+grouped_rows+fused_attention+fused_swiglu_quant",
                                  "gqa3-Q4_1+fused_attention", "Q4_K+fused_attention+fused_swiglu_quant",
                                  "Q8_0-256+fused_swiglu_quant", "gqa3-Q4_1+fused_rope",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows+fused_rope+prefetch_weights"])
def test_gpu_engine_options_match_reference(case_files, case):
    """The CudaOptions on the raw engine (each off unless named; Llama turns grouped rows on):
    Q4_0 / Q8_0 / Q6_K uploaded in grouped rows (the GEMV's 16-byte loads, the tensor-core and
    embedding readers of that layout), attention's splits merged (and its output quantized) in its kernel, the SwiGLU GEMV quantizing its output,
    the decode step's Q/K/V GEMV applying RoPE and filling the KV cache, GEMV blocks prefetching
    their weights. A 20-token prefill (tensor cores) and decode steps within the reference's bound."""
    name, options = case_and_options(case)
    path = case_files[name]
    ids = [int(t) for t in np.random.default_rng(13).integers(0, 300, 20)] + DECODE
    ref, _, tol = gpu_tolerance(path, ids)
    gpu = cuda_engine(path, 64, 0, options)
    assert gpu.grouped_rows == ("grouped_rows" in options)
    assert_logits_close(gpu.forward(np.array(ids[:20], np.int32), True), ref[:20], tol[:20], f"{case} prefill")
    for i, tok in enumerate(DECODE):
        step = gpu.forward(np.array([tok], np.int32), False)
        assert_logits_close(step[None], ref[20 + i:21 + i], tol[20 + i:21 + i], f"{case} decode {i}")


@needs_gpu
def test_gpu_truncate_reset_and_long_prefill(case_files):
    """truncate/reset rewind the device cache; a prompt longer than one internal batch (256) and
    the position-split attention of long contexts stay within the reference's bound. (Prefill and
    re-evaluation need not agree bit for bit: the attention splits depend on the batch, and the
    int8 activations can round the other way.)"""
    path = case_files["Q4_K"]
    rng = np.random.default_rng(5)
    ids = [int(t) for t in rng.integers(0, 300, 600)]
    ref, _, tol = gpu_tolerance(path, ids)
    gpu = Llama(str(path), n_ctx=700, device="cuda")
    full = gpu.eval(ids, all_logits=True)
    assert_logits_close(full, ref, tol, "600-token prefill")
    gpu.truncate(590)
    again = gpu.eval(ids[590:], all_logits=True)
    assert_logits_close(again, ref[590:], tol[590:], "re-evaluation after truncate(590)")
    gpu.reset()
    assert gpu.n_past == 0
    first = gpu.eval(ids[:1])
    assert_logits_close(first[None], ref[:1], tol[:1], "first token after reset")


@needs_gpu
@pytest.mark.parametrize("n_tokens", [1, 8, 11, 40], ids=lambda n: f"{n}tok")  # 11: a full tile, then a partial one
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gpu_int8_matmul_equals_its_host_execution_bitwise(reader, n_tokens):
    """The device kernels (activation quantization, dp4a dots, split over warps and summed, tiles of tokens)
    give exactly the bits of the same code run on the CPU, which the no-GPU tests check against
    numpy and the CPU engine: a mismatch here is a device-only fault (intrinsics, alignment,
    indexing), told apart from an arithmetic one. (Tensor cores off: they sum differently.)"""
    qtype, grouped = reader
    rng = np.random.default_rng(2300 + int(qtype) + n_tokens)
    n = long_row(reader)  # several pieces a lane and a ragged last round
    rows = weight_rows(rng, qtype, n)
    x = _token_rows(rng, n, n_tokens)
    y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x, tensor_cores=False, grouped_rows=grouped)
    assert y.shape == (n_tokens, len(rows))
    want = np.array([[_cuda.int8_dot_host(*device_row(qtype, r, n, grouped), xt) for r in rows] for xt in x],
                    np.float32)
    bad = np.argwhere(y.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{qtype.name}: (token, row) {bad[:5].tolist()}: {y[tuple(bad[0])]} vs {want[tuple(bad[0])]}"


@needs_gpu
@pytest.mark.parametrize("n_tokens", [16, 40], ids=lambda n: f"{n}tok")  # 40: a second, partial token tile
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gpu_tensor_core_prefill_equals_cpu_scalar_dot_bitwise(reader, n_tokens):
    """Prefill on int8 tensor cores: each MMA gives a block's (K-quants: a sub-block's) exact
    integer sums, combined and scaled in the CPU's expressions block by block (super-block by
    super-block), so every (row, token) must equal the CPU's scalar vec_dot bit for bit (rows: two
    32-row tiles and a partial one)."""
    qtype, grouped = reader
    rng = np.random.default_rng(2500 + int(qtype) + n_tokens)
    n = row_length(reader, 1024)
    rows = [r for _ in range(12) for r in weight_rows(rng, qtype, n)][:70]
    x = _token_rows(rng, n, n_tokens)
    y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x, grouped_rows=grouped)
    want = np.array([[_core.vec_dot(int(qtype), r, xt, scalar=True) for r in rows] for xt in x], np.float32)
    bad = np.argwhere(y.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{qtype.name}: (token, row) {bad[:5].tolist()}: {y[tuple(bad[0])]} vs {want[tuple(bad[0])]}"


@needs_gpu
@pytest.mark.parametrize("case", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "mixed-Q4_K_M",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K"])
def test_gpu_tensor_core_prefill_matches_reference(case_files, case, monkeypatch):
    """A 40-token prompt (tensor cores from 16 tokens on) within the reference's bound, with and
    without tensor cores (CudaOptions.tensor_cores=False: the dp4a tiles)."""
    path = case_files[case]
    ids = [int(t) for t in np.random.default_rng(9).integers(0, 300, 40)]
    ref, _, tol = gpu_tolerance(path, ids)
    monkeypatch.delenv("EDGELLAMA_CUDA_OPTIONS", raising=False)  # the options here are the test's
    for mma in (True, False):
        gpu = Llama(str(path), n_ctx=128, device="cuda", cuda_options={"tensor_cores": mma})
        assert gpu._core.tensor_cores == mma
        assert_logits_close(gpu.eval(ids, all_logits=True), ref, tol, f"{case} prefill, tensor_cores={mma}")


@needs_gpu
@pytest.mark.parametrize("qtype", [t for t in ALL_TYPES if t not in QUANTIZED], ids=lambda t: t.name)
def test_gpu_float_matmul_matches_numpy(qtype):
    rng = np.random.default_rng(2400 + int(qtype))
    n = 1024
    rows = weight_rows(rng, qtype, n)[:-1]  # the inf / full-range rows have no finite dot
    x = _token_rows(rng, n, 11)
    y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x)
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    want = x.astype(np.float64) @ w.T
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(w).T
    assert np.all(np.abs(y - want) <= 1e-5 * magnitude + 1e-30)


@needs_gpu
def test_gpu_matmul_timing_probe():
    w = weight_rows(np.random.default_rng(1), T.Q4_0, 4096)[0]
    rows = np.tile(w, 64)
    seconds = _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, n_tokens=1, repeats=5)
    assert 0 < seconds < 1
    assert 0 < _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, n_tokens=1, repeats=5, grouped_rows=True) < 1
    assert 0 < _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, n_tokens=1, repeats=5, prefetch_weights=True) < 1
    for variant in range(len(_cuda.gemv_probe_shapes())):  # every block shape and in-flight depth launches
        for grouped in (False, True):
            assert 0 < _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, repeats=2, gemv_shape=variant,
                                         grouped_rows=grouped) < 1
    with pytest.raises(Exception, match="bad weight type or shape"):
        _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096 + 32, n_tokens=1, repeats=5)


@needs_gpu
@pytest.mark.parametrize("prompt_len", [40, 2100, 5000])
@pytest.mark.parametrize("fused", ["0", "1"], ids=["two-pass", "fused"])
def test_gpu_decode_graph_equals_kernel_by_kernel_decode(case_files, prompt_len, fused, monkeypatch):
    """The captured decode step (one graph per attention split count, positions read on the
    device, splits of the position rounded up to a power of two) gives the same bits as launching
    its kernels one by one, also after a truncate rewinds the position the graph replays at. The
    graph's attention merges its splits by a separate kernel, or in the attention kernel (the same
    merge, so the same bits as the kernel-by-kernel two passes, and its split counts must be back
    at zero for every replay)."""
    path = case_files["Q4_K"]
    stream = Llama(str(path), n_ctx=8192, device="cuda", cuda_options={"cuda_graphs": False})
    # The one environment override, as scripts use it.
    monkeypatch.setenv("EDGELLAMA_CUDA_OPTIONS", f"fused_attention={fused}")
    graph = Llama(str(path), n_ctx=8192, device="cuda")
    assert graph._core.fused_attention == (fused == "1") and not stream._core.fused_attention
    assert graph._core.cuda_graphs and not stream._core.cuda_graphs
    rng = np.random.default_rng(prompt_len)
    prompt = [int(t) for t in rng.integers(0, 300, prompt_len)]
    steps = [int(t) for t in rng.integers(0, 300, 6)]
    for llm in (stream, graph):
        llm.eval(prompt)
    for i, tok in enumerate(steps):
        if i == 3:
            for llm in (stream, graph):
                llm.truncate(prompt_len - 5)
        want, got = stream.eval([tok]), graph.eval([tok])
        np.testing.assert_array_equal(got, want, err_msg=f"step {i}")
    assert graph.n_past == stream.n_past


@needs_gpu
@pytest.mark.parametrize("case", ["Q4_K", "gqa3-Q4_1", "mixed-Q4_0-Q8_0-F16-Q6_K"])
def test_gpu_fused_decode_step_equals_the_default_bitwise(case_files, case):
    """On the GPU too, the fusions change no operation: the captured decode step with every fusion
    on (its last blocks merging attention, quantizing the SwiGLU output, rotating and caching each
    Q/K/V head, counts reset for the next replay), its GEMVs also prefetching their weights, gives
    the default step's logits bit for bit, over replays at successive positions and after a
    truncate."""
    path = case_files[case]
    plain, fused = cuda_engine(path, 256, 0), cuda_engine(path, 256, 0, SAME_BITS_OPTIONS)
    prompt = [int(t) for t in np.random.default_rng(17).integers(0, 300, 40)]
    for engine in (plain, fused):
        engine.forward(np.array(prompt, np.int32), False)
    for i, tok in enumerate(DECODE * 2):
        if i == 6:
            for engine in (plain, fused):
                engine.truncate(len(prompt) + 2)
        tok = np.array([tok], np.int32)
        np.testing.assert_array_equal(fused.forward(tok, False).view(np.uint32),
                                      plain.forward(tok, False).view(np.uint32), err_msg=f"{case} step {i}")


@needs_gpu
@pytest.mark.parametrize("case", ["Q4_K", "gqa3-Q4_1"])
def test_gpu_greedy_generation_chooses_on_the_device_with_the_same_tokens(case_files, case, monkeypatch):
    """CudaOptions.greedy_on_device: greedy generation's steps return only the device's choice (its
    own captured graphs); the tokens are those of choosing from the downloaded logits, the
    log-probabilities agree within 1e-5, and a plain eval still returns logits afterwards."""
    prompt = [int(t) for t in np.random.default_rng(19).integers(0, 300, 30)]
    from_logits = Llama(str(case_files[case]), n_ctx=256, device="cuda", cuda_options={"greedy_on_device": False})
    want = list(from_logits.stream_tokens(prompt, max_tokens=12, temperature=0))
    monkeypatch.delenv("EDGELLAMA_CUDA_OPTIONS", raising=False)
    on_device = Llama(str(case_files[case]), n_ctx=256, device="cuda", cuda_options={"greedy_on_device": True})
    assert on_device._greedy_on_device and not from_logits._greedy_on_device
    got = list(on_device.stream_tokens(prompt, max_tokens=12, temperature=0))
    assert [r.token for r in got] == [r.token for r in want]
    np.testing.assert_allclose([r.logprob for r in got], [r.logprob for r in want], atol=1e-5)
    assert on_device.eval([got[-1].token]).shape == (on_device.n_vocab,)


@needs_gpu
def test_gpu_out_of_memory_names_what_did_not_fit(case_files):
    from edgellama.errors import DeviceOutOfMemoryError

    with pytest.raises(DeviceOutOfMemoryError, match="KV cache"):
        Llama(str(case_files["F32"]), n_ctx=(1 << 31) - 1, device="cuda")


@needs_gpu
def test_smollm2_gpu_matches_reference_and_cpu(smollm2_path):
    llm_gpu = Llama(smollm2_path, n_ctx=512, device="cuda")
    llm_cpu = Llama(smollm2_path, n_ctx=512, device="cpu")
    ids = llm_cpu.tokenize("The capital of France is")
    ref, tol_cpu, tol_gpu = gpu_tolerance(smollm2_path, ids)
    got = llm_gpu.eval(ids, all_logits=True)
    want = llm_cpu.eval(ids, all_logits=True)
    assert_logits_close(got, ref, tol_gpu, "SmolLM2 GPU vs reference")
    assert_logits_close(got, want, tol_gpu + tol_cpu, "SmolLM2 GPU vs CPU")
    llm_gpu.reset()
    assert "Paris" in llm_gpu.generate("The capital of France is", max_tokens=8, temperature=0)


@needs_module
def test_generations_run_on_the_single_sequence_engine_through_the_scheduler(case_files):
    """The CUDA engine (executed on the host) behind the scheduler's single-sequence adapter: a
    generation, a follow-up that reuses its cache (its choice made by the engine's own greedy
    step, greedy_on_device) and eval on sequence 0 give what driving the engine by hand gives."""
    from edgellama.engine import Scheduler
    from edgellama.engine.backends import SingleSequenceBackend

    path = case_files["gqa3-Q4_1"]
    engine = host_engine(path, 64)
    prompt_logits = engine.forward(np.array(PROMPT, np.int32), False)
    want = [int(np.argmax(prompt_logits))]
    want.append(int(np.argmax(engine.forward(np.array(want, np.int32), False))))
    engine.reset()
    llm = Llama(str(path), n_ctx=64, device="cpu")
    llm._core = SingleSequenceBackend(engine)
    llm._scheduler = Scheduler(llm._core, 64, 1)
    llm.tokenizer._stop_ids = frozenset()  # a random model may choose its end-of-turn token
    assert [r.token for r in llm.stream_tokens(PROMPT, max_tokens=2, temperature=0)] == want
    llm._core.greedy_on_device = True
    choices = []
    greedy_choice = llm._core.greedy_choice
    llm._core.greedy_choice = lambda tokens: choices.append(greedy_choice(tokens)) or choices[-1]
    follow_up = list(llm.stream_tokens(PROMPT + want[:1], max_tokens=1, temperature=0))
    assert [r.token for r in follow_up] == want[1:] and follow_up[0].stats.reused_tokens == len(PROMPT)
    assert [c[0] for c in choices] == want[1:]  # the engine chose
    llm.reset()
    assert np.array_equal(llm.eval(PROMPT), prompt_logits)
