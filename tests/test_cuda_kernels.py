"""The CUDA backend's device code, executed on the CPU (needs only the edgellama._cuda module, no
GPU).

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
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from cuda_support import (_cuda, needs_module, QUANTIZED, GROUP_ELEMENTS, GROUPABLE, READERS, reader_id,
                          row_length, long_row, device_rows, device_row, token_rows)
from test_kernels import ACT_OF, ALL_TYPES, BLOCK32, N, act_rows, dot_with_quantized_act, reference_dequant, weight_rows

from edgellama import _testing


@needs_module
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_gpu_block_decoders_equal_cpu_dequantize_bitwise(qtype):
    rng = np.random.default_rng(2000 + int(qtype))
    for i, row in enumerate(weight_rows(rng, qtype)):
        gpu_path = _cuda.decode_row_host(int(qtype), row, N)
        cpu = _testing.dequantize_row(int(qtype), row, N)
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
        cpu = _testing.dequantize_row(int(qtype), row, n)
        np.testing.assert_array_equal(gpu_path.view(np.uint32), cpu.view(np.uint32))
    n_short = GROUP_ELEMENTS[qtype] * 9 // 8  # whole blocks, not whole groups
    short = weight_rows(rng, qtype, n_short)
    with pytest.raises(ValueError, match="no grouped layout"):
        _cuda.group_rows_host(int(qtype), np.concatenate(short), len(short), n_short)


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
        cpu = _testing.quantize_act_row(ACT_OF[qtype], x)
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
            cpu = _testing.vec_dot(int(qtype), w_raw, x)
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
    x = token_rows(rng, n, n_tokens)
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
    x = token_rows(rng, n, n_tokens)
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
    x = token_rows(rng, n, n_tokens)
    y = _cuda.mma_matmul_host(*device_rows(qtype, rows, n, grouped), len(rows), x)
    assert y.shape == (n_tokens, len(rows))
    want = np.array([[_testing.vec_dot(int(qtype), r, xt, scalar=True) for r in rows] for xt in x], np.float32)
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
            np.testing.assert_array_equal(got, _testing.quantize_act_row(fmt, out[r]))


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
