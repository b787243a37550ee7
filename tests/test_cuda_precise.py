"""Precise activations on the CUDA engine (Llama(device="cuda", activations="precise")), without a
GPU: the engine's code run on its host backend (csrc/cuda/host_backend.cu).

Each matmul input with quantized weights becomes two int8 rows a token, its blocks and the residual
they left (x - d·q, quantized again: about 15 bits), both dotted with every weight read and the two
sums added, as the CPU engine's default does (test_precise_activations.py). Checked here:
  * the device's quantizers (the quantize kernel, and the epilogues of RMSNorm, fused attention and
    the one-launch SwiGLU) write the CPU's bytes for both rows: the first as
    _testing.quantize_act_row, the residual as that of x - d·q computed in float32 by numpy (the
    CPU's quantize_act_residual_row rounds exactly so: a product, then a difference);
  * the GEMV and tensor-core tiles on the two rows against float64 dots of the two rounded rows,
    and against exact arithmetic within the residual's own rounding bound, which the int8 path
    exceeds;
  * the whole engine against the float64 reference with a tolerance derived from that rounding
    (cuda_support's bound with the precise rounding simulated instead of int8), clearly closer than
    its int8 path; against the CPU engine's precise logits; prefill then decode; every weight type;
    the engine options, whose fusions give the unfused bits in precise mode too.
"""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from cuda_support import (PROMPT, DECODE, _cuda, needs_module, QUANTIZED, READERS, reader_id, row_length,
                          device_rows, token_rows, cuda_engine, SAME_BITS_OPTIONS, KV_MARGIN,
                          GPU_OK)
from logit_checks import FLOAT_REL, INT8_MARGIN, assert_logits_close, fp16_kv_term, logits_mismatch
from reference import load_reference, quantize_act_int8
from test_kernels import ACT_OF, BLOCK32, act_rows, reference_dequant, weight_rows
from test_cuda_kernels import device_row_as_cpu_blocks
from test_cpu_levels import act_blocks
from tiny_models import FORWARD_CASES, K_SHAPE, write_tiny_llama

from edgellama import Llama, _testing
from edgellama.errors import DeviceUnavailableError, InvalidArgumentError


def block_of(qtype):
    return 32 if qtype in BLOCK32 else 256


def cpu_precise_rows(qtype, x):
    """The CPU's two activation rows of x (its block layout): the int8 blocks, and the residual
    x - d·q (float32 product, then difference) quantized by the same function."""
    fmt, block = ACT_OF[qtype], block_of(qtype)
    first = _testing.quantize_act_row(fmt, x)
    d, q = act_blocks(first, fmt, x.size, block)
    residual = (x.reshape(-1, block) - d[:, None] * q.astype(np.float32)).astype(np.float32).reshape(-1)
    return first, _testing.quantize_act_row(fmt, residual)


def act_row_size(n, block):
    """Bytes of an activation row of n elements (BlockQ8Act32: 8 bytes beside the codes; 256: 36)."""
    return n + (n // block) * (8 if block == 32 else 36)


def assert_precise_rows(raw, floats, qtype, what):
    """raw (device layout, two rows a float row) holds the CPU's precise rows of each row of floats."""
    n, block = floats.shape[-1], block_of(qtype)
    row = act_row_size(n, block)
    raw = np.asarray(raw, np.uint8).reshape(-1)
    assert raw.size == 2 * row * len(floats), (what, raw.size)
    for t, x in enumerate(floats):
        want = cpu_precise_rows(qtype, np.ascontiguousarray(x, np.float32))
        for part in (0, 1):
            got = device_row_as_cpu_blocks(raw[(2 * t + part) * row:(2 * t + part + 1) * row], n, block)
            bad = np.flatnonzero(got != want[part])
            assert bad.size == 0, f"{what}: token {t} part {part}: first differing bytes at {bad[:5]}"


# ---------------------------------------------------------------- the quantizers


@needs_module
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_precise_activation_rows_are_the_cpus_bytes(qtype):
    """The warp quantizers' two rows (quantize_activations' code) for rows with zero blocks, an
    outlier, tiny values and magnitude swings: the CPU's first and residual blocks byte for byte;
    the first row is the int8 path's row."""
    rng = np.random.default_rng(9500 + int(qtype))
    rows = act_rows(rng) + [rng.standard_normal(512).astype(np.float32) * np.float32(1e-30)]
    for i, x in enumerate(rows):
        raw = np.frombuffer(_cuda.quantize_act_host(int(qtype), x, precise=True), np.uint8)
        assert_precise_rows(raw, x[None], qtype, f"{qtype.name} row {i}")
        one = np.frombuffer(_cuda.quantize_act_host(int(qtype), x), np.uint8)
        np.testing.assert_array_equal(raw[:one.size], one)
    # The residual row carries information: it is not all zero for a plain row.
    x = rng.standard_normal(512).astype(np.float32)
    second = cpu_precise_rows(qtype, x)[1]
    assert np.any(act_blocks(second, ACT_OF[qtype], 512, block_of(qtype))[1])


@needs_module
def test_fused_epilogues_write_both_rows():
    """The kernels that quantize their output for the next matmul learned the two rows: RMSNorm
    (both formats), fused attention (its merged heads' blocks) and the one-launch SwiGLU (its
    finished chunks) write the CPU's precise bytes of the floats they output."""
    rng = np.random.default_rng(9600)
    n = 512
    x = (rng.standard_normal((3, n)) * np.array([[0.01], [1.0], [300.0]])).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    out, act32, act256 = _cuda.rms_norm_host(x, w, 1e-5, True, True, precise=True)
    assert_precise_rows(act32, out, T.Q8_0, "rms_norm q8_32")
    assert_precise_rows(act256, out, T.Q4_K, "rms_norm q8_256")

    q = rng.standard_normal((3, 4, 64)).astype(np.float32)
    k = rng.standard_normal((80, 2, 64)).astype(np.float16).view(np.uint16)
    v = rng.standard_normal((80, 2, 64)).astype(np.float16).view(np.uint16)
    for block, weight_type in ((32, T.Q8_0), (256, T.Q4_K)):
        merged, act = _cuda.attention_quantized_host(q, k, v, 70, 2, block, precise=True)
        assert_precise_rows(act, merged.reshape(3, -1), weight_type, f"attention {block}")

    for qtype, act_type in ((T.Q4_0, T.Q8_0), (T.Q6_K, T.Q4_K)):
        cols, n_rows = 256, 512
        gate = [r for _ in range(n_rows // 6 + 1) for r in weight_rows(rng, qtype, cols)][:n_rows]
        up = [r for _ in range(n_rows // 6 + 1) for r in weight_rows(rng, qtype, cols)][:n_rows]
        xt = token_rows(rng, cols, 5)  # 10 activation rows: a full tile of four tokens, then one
        type_id, g = device_rows(qtype, gate, cols, False)
        _, u = device_rows(qtype, up, cols, False)
        y, act = _cuda.swiglu_quantized_host(type_id, g, u, n_rows, xt, block_of(act_type), precise=True)
        plain = _cuda.gemv_host(type_id, g, u, n_rows, xt, precise=True)
        np.testing.assert_array_equal(y.view(np.uint32), plain.view(np.uint32))
        assert_precise_rows(act, y, act_type, f"swiglu {qtype.name}")


# ---------------------------------------------------------------- the matmul kernels


def two_part_value(qtype, x):
    """float64 value of x's two rounded rows, and per element half the residual's step (what is left)."""
    fmt, block = ACT_OF[qtype], block_of(qtype)
    first, second = cpu_precise_rows(qtype, x)
    d1, q1 = act_blocks(first, fmt, x.size, block)
    d2, q2 = act_blocks(second, fmt, x.size, block)
    value = (d1.astype(np.float64)[:, None] * q1 + d2.astype(np.float64)[:, None] * q2).reshape(-1)
    return value, np.repeat(d2.astype(np.float64) / 2, block)


def check_precise_product(qtype, rows, x, got, int8, what):
    """got (tokens, rows) against float64 dots of the two rounded rows (float32 slack only) and exact
    arithmetic within the residual's rounding; returns how many int8 results fall outside that bound."""
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    outside = 0
    for t in range(x.shape[0]):
        value, left = two_part_value(qtype, x[t])
        scale = np.abs(w).max(axis=1) * np.abs(value).sum()
        assert np.all(np.abs(got[t] - w @ value) <= 1e-5 * scale + 1e-30), (what, t)
        exact = w @ x[t].astype(np.float64)
        bound = np.abs(w) @ left + 1e-5 * scale + 1e-30
        assert np.all(np.abs(got[t] - exact) <= bound), (what, t)
        outside += int(np.sum(np.abs(int8[t] - exact) > bound))
    return outside


@needs_module
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_precise_gemv_and_tensor_core_tiles_dot_both_rows(reader):
    """The GEMV's block code on 1 and 5 tokens (2 and 10 activation rows: a partial tile, then a
    full one and a pair), its SwiGLU form, and the tensor-core tiles on 20 tokens (40 rows: a
    second, partial token tile): each output is dot(w, blocks) + dot(w, residual), within float32
    slack of float64 dots of the two rounded rows and within the residual's rounding of exact
    arithmetic, where the int8 path is not; and close to the CPU engine's precise matmul."""
    qtype, grouped = reader
    rng = np.random.default_rng(9700 + int(qtype) + 100 * grouped)
    n = row_length(reader, 512)
    rows = [r for _ in range(12) for r in weight_rows(rng, qtype, n)][:37]
    type_id, w = device_rows(qtype, rows, n, grouped)
    int8_outside = 0
    for n_tokens, product in ((1, "gemv"), (5, "gemv"), (20, "mma")):
        x = token_rows(rng, n, n_tokens)
        if product == "gemv":
            got = _cuda.gemv_host(type_id, w, None, len(rows), x, precise=True)
            int8 = _cuda.gemv_host(type_id, w, None, len(rows), x)
        else:
            got = _cuda.mma_matmul_host(type_id, w, len(rows), x, precise=True)
            int8 = _cuda.mma_matmul_host(type_id, w, len(rows), x)
        assert got.shape == (n_tokens, len(rows))
        int8_outside += check_precise_product(qtype, rows, x, got, int8, (reader_id(reader), product, n_tokens))
        cpu = _testing.matmul(int(qtype), np.stack(rows), x, row_groups=False, activations="precise")
        magnitude = np.abs(got).max() + 1e-30
        np.testing.assert_allclose(got, cpu, rtol=0, atol=1e-5 * magnitude * np.sqrt(n))
    assert int8_outside > 0  # the bound is tight enough to see int8 rounding
    x = token_rows(rng, n, 3)
    fused = _cuda.gemv_host(type_id, w, w, len(rows), x, precise=True)
    g = _cuda.gemv_host(type_id, w, None, len(rows), x, precise=True).astype(np.float64)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(fused, g / (1 + np.exp(-g)) * g, rtol=1e-5, atol=1e-30)


# ---------------------------------------------------------------- the engine


def precise_reference(path):
    """A private copy of the float64 reference whose act_quant rounding is the precise one: each
    block to int8, plus the residual to int8 (scales in float32, as quantize_act_int8)."""
    model = copy.copy(load_reference(path))

    def matmul(self, a, m, act_quant):
        if act_quant and m.act_block is not None:
            first = quantize_act_int8(a, m.act_block, self.act_scale_dtype)
            a = first + quantize_act_int8(a - first, m.act_block, self.act_scale_dtype)
        return a @ m.w.T

    model.matmul = types.MethodType(matmul, model)
    return model


def precise_tolerance(path, seq):
    """(reference logits with the fp16 KV cache, CPU bound, GPU bound) per row for precise
    activations: cuda_support's bound with the precise rounding simulated in place of int8 (the
    same margins: INT8_MARGIN on the rounding, KV_MARGIN on the fp16 cache's effect)."""
    model = precise_reference(path)
    model.kv_fp16 = True
    ref = model.logits(seq)
    sim_err = np.abs(model.logits(seq, act_quant=True) - ref).max(axis=1)
    model.kv_fp16 = False
    exact_kv = model.logits(seq)
    kv_err = np.abs(ref - exact_kv).max(axis=1)
    tol_cpu = (INT8_MARGIN * np.maximum(sim_err, sim_err.mean()) + FLOAT_REL * np.abs(ref).max(axis=1)
               + fp16_kv_term(ref, exact_kv))
    return ref, tol_cpu, tol_cpu + KV_MARGIN * np.maximum(kv_err, kv_err.mean())


def rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def run_engine(engine, seq, n_prompt):
    """Logits of a prefill of seq[:n_prompt] (all rows), then of one-token steps."""
    rows = [engine.forward(np.array(seq[:n_prompt], np.int32), True)]
    rows += [engine.forward(np.array([t], np.int32), False)[None] for t in seq[n_prompt:]]
    return np.concatenate(rows)


# One file with every quantized type the engine runs (and a float matrix), so that one host-run
# engine covers them all: Q/K/V of three types (three launches) then of one (a shared launch);
# attention's output quantized in 32-element blocks (Q5_1, a head of 64) and in 256-element blocks
# over four heads (Q4_K); the one-launch SwiGLU (Q8_0) quantizing for a 256-block ffn_down (Q5_K),
# and a gate and up of different types (Q6_K, F16: two products and the SwiGLU kernel) before a
# 32-block one (Q4_0); a Q5_0 embedding and a Q6_K output head. Q4_0 and Q8_0 rows are groupable.
EVERY_TYPE_FILE = dict(
    weight_type="Q4_K", embd_type="Q5_0", output_type="Q6_K", tied_output=False, **K_SHAPE, overrides={
        "blk.0.attn_q.weight": {"type": "Q4_0"}, "blk.0.attn_k.weight": {"type": "Q4_1"},
        "blk.0.attn_v.weight": {"type": "Q5_0"}, "blk.0.attn_output.weight": {"type": "Q5_1"},
        "blk.0.ffn_gate.weight": {"type": "Q8_0"}, "blk.0.ffn_up.weight": {"type": "Q8_0"},
        "blk.0.ffn_down.weight": {"type": "Q5_K"},
        "blk.1.ffn_gate.weight": {"type": "Q6_K"}, "blk.1.ffn_up.weight": {"type": "F16"},
        "blk.1.ffn_down.weight": {"type": "Q4_0"}})
ENGINE_CASES = {"all-types": EVERY_TYPE_FILE, "gqa3-Q4_1": FORWARD_CASES["gqa3-Q4_1"]}


@pytest.fixture(scope="module")
def engine_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_precise")
    return {name: write_tiny_llama(folder / f"{name}.gguf", **kw) for name, kw in ENGINE_CASES.items()}


def assert_closer_than_int8(got, int8, ref, tol, what):
    """The int8 engine's logits of the same tokens are outside the precise bound (so the bound can
    tell the paths apart) and many times further from the reference by RMS."""
    n = len(int8)
    assert logits_mismatch(int8, ref[:n], tol[:n]) is not None, f"{what}: the int8 engine passes the precise bound"
    assert rms(got[:n], ref[:n]) * 10 < rms(int8, ref[:n]), (what, rms(got[:n], ref[:n]), rms(int8, ref[:n]))


@needs_module
def test_precise_engine_on_the_host_every_type(engine_files):
    """Prefill then decode of the host-run engine with precise activations on the file of every
    quantized type: within the precise bound of the reference at every position, and of the CPU
    engine's precise logits (its default; the sum of both bounds, as the int8 engines are
    compared). With the fusions on (writing both rows, the SwiGLU GEMV adding each token's pair
    before its product; fused_rope falls back to the separate kernels for two rows) the logits are
    the same bits, also after a truncate; with grouped rows (Q4_0 / Q8_0: the same products summed
    in another order) within the bound. The int8 engine is outside the bound."""
    path = engine_files["all-types"]
    seq, n = PROMPT + DECODE, len(PROMPT)
    ref, tol_cpu, tol_gpu = precise_tolerance(path, seq)
    plain = cuda_engine(path, 64, -1, activations="precise")
    fused = cuda_engine(path, 64, -1, SAME_BITS_OPTIONS, activations="precise")
    assert plain.activations == fused.activations == "precise"
    got = run_engine(plain, seq, len(PROMPT))
    assert_logits_close(got, ref, tol_gpu, "precise host-run prefill and decode vs reference")
    np.testing.assert_array_equal(run_engine(fused, seq, len(PROMPT)).view(np.uint32), got.view(np.uint32))
    cpu = Llama(str(path), n_ctx=64, n_threads=2, device="cpu")
    assert cpu.activations == "precise"
    want = np.concatenate([cpu.eval(PROMPT, all_logits=True)] + [cpu.eval([t])[None] for t in DECODE])
    assert_logits_close(got, want, tol_cpu + tol_gpu, "precise: CUDA (host-run) vs CPU")
    for engine in (plain, fused):
        engine.truncate(len(PROMPT) + 1)
    tok = np.array(DECODE[-1:], np.int32)
    np.testing.assert_array_equal(fused.forward(tok, False).view(np.uint32), plain.forward(tok, False).view(np.uint32))
    grouped = run_engine(cuda_engine(path, 64, -1, ("grouped_rows",), activations="precise"), seq[:n + 1], n)
    assert_logits_close(grouped, ref[:n + 1], tol_gpu[:n + 1], "precise grouped rows vs reference")
    int8 = cuda_engine(path, 64, -1).forward(np.array(PROMPT, np.int32), True)
    assert_closer_than_int8(got, int8, ref, tol_gpu, "all-types")


@needs_module
def test_precise_engine_on_the_host_gqa3_with_fusions(engine_files):
    """SmolLM2's head ratio with heads of 16: fused attention quantizes 32-element blocks over two
    heads into both rows; a one-token step takes the separate Q/K/V and RoPE kernels although
    fused_rope is on. Prefill then decode within the precise bound; int8 outside it."""
    path = engine_files["gqa3-Q4_1"]
    seq = PROMPT + DECODE
    ref, _, tol = precise_tolerance(path, seq)
    options = ("fused_attention", "fused_rope")
    got = run_engine(cuda_engine(path, 64, -1, options, activations="precise"), seq, len(PROMPT))
    assert_logits_close(got, ref, tol, "gqa3 precise host-run prefill and decode")
    int8 = cuda_engine(path, 64, -1, options).forward(np.array(PROMPT, np.int32), True)
    assert_closer_than_int8(got, int8, ref, tol, "gqa3")


@needs_module
def test_precise_tensor_core_prefill_on_the_host(engine_files):
    """A 20-token prefill takes the tensor-core tiles on 40 activation rows (each token's pair in
    one lane's results, added where stored): within the precise bound of the reference and of the
    CPU engine."""
    path = engine_files["all-types"]
    ids = [int(t) for t in np.random.default_rng(17).integers(0, 300, 20)]
    ref, tol_cpu, tol_gpu = precise_tolerance(path, ids)
    engine = cuda_engine(path, 64, -1, activations="precise")
    assert engine.tensor_cores
    got = engine.forward(np.array(ids, np.int32), True)
    assert_logits_close(got, ref, tol_gpu, "precise tensor-core prefill vs reference")
    cpu = Llama(str(path), n_ctx=64, n_threads=2, device="cpu")
    assert_logits_close(got, cpu.eval(ids, all_logits=True), tol_cpu + tol_gpu, "precise MMA prefill vs CPU")


@needs_module
@pytest.mark.parametrize("options", [(), SAME_BITS_OPTIONS], ids=["plain", "fused"])
def test_precise_decode_tile_gives_the_prefill_tiles_bits(engine_files, options):
    """A decode step's two rows take a tile of two (row_segments.cuh for_each_tile), a prefill's
    the kGemmTile-row tile: a token's logits are the same bits either way, in the GEMV and in the
    one-launch SwiGLU."""
    path = engine_files["all-types"]
    whole = cuda_engine(path, 64, -1, options, activations="precise")
    stepped = cuda_engine(path, 64, -1, options, activations="precise")
    prompt = np.array(PROMPT[:3], np.int32)
    want = whole.forward(prompt, True)[-1]
    stepped.forward(prompt[:-1], False)
    got = stepped.forward(prompt[-1:], False)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


# ---------------------------------------------------------------- the API


@needs_module
def test_engine_refuses_an_unknown_setting(engine_files):
    with pytest.raises(ValueError, match="activations"):
        cuda_engine(engine_files["gqa3-Q4_1"], 16, -1, activations="int4")
    assert cuda_engine(engine_files["gqa3-Q4_1"], 16, -1).activations == "int8"  # the CUDA default


@needs_module
@pytest.mark.skipif(GPU_OK, reason="a CUDA GPU is visible: Llama(device='cuda') would run (test_cuda_gpu.py)")
def test_llama_takes_precise_on_cuda(engine_files):
    """Llama(device="cuda", activations="precise") passes the activations check when the module has
    them: here, without a GPU, the error is the missing device, not the setting."""
    with pytest.raises(DeviceUnavailableError):
        Llama(str(engine_files["gqa3-Q4_1"]), n_ctx=64, device="cuda", activations="precise")


def test_llama_refuses_precise_for_a_cuda_module_without_it(engine_files, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "edgellama._cuda", types.SimpleNamespace())  # a module built before precise
    with pytest.raises(InvalidArgumentError, match="activations.*int8 only.*rebuild"):
        Llama(str(engine_files["gqa3-Q4_1"]), n_ctx=64, device="cuda", activations="precise")
