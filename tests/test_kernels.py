"""Weight block-format registry: dequantize_row against the gguf package's numpy reference,
vec_dot against float64 dots, activation quantization against an independent numpy version,
and input validation. Every comparison is tight enough that a wrong nibble, scale or sign fails."""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

from edgellama import _core, _testing
from edgellama import _testing as core

ALL_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]
BLOCK32 = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
KQUANTS = [T.Q4_K, T.Q5_K, T.Q6_K]
ACT_F32, ACT_Q8_32, ACT_Q8_256 = 0, 1, 2
ACT_OF = {T.F32: ACT_F32, T.F16: ACT_F32, T.BF16: ACT_F32,
          T.Q4_0: ACT_Q8_32, T.Q4_1: ACT_Q8_32, T.Q5_0: ACT_Q8_32, T.Q5_1: ACT_Q8_32, T.Q8_0: ACT_Q8_32,
          T.Q4_K: ACT_Q8_256, T.Q5_K: ACT_Q8_256, T.Q6_K: ACT_Q8_256}
N = 512  # elements per test row: 2 K-quant super-blocks, 16 blocks of 32


# ---------------------------------------------------------------- row generators

def float_rows(rng, n=N):
    """Float rows covering the awkward cases: plain noise, all zero, one huge outlier, negative
    only, values small enough for subnormal f16 scales, and per-block magnitude swings."""
    noise = rng.standard_normal(n).astype(np.float32)
    outlier = (rng.standard_normal(n) * 0.01).astype(np.float32)
    outlier[37 % n] = 1.0e4
    negative = -np.abs(rng.standard_normal(n)).astype(np.float32) - 0.1
    tiny = (rng.standard_normal(n) * 1e-6).astype(np.float32)
    swings = (rng.standard_normal(n) * np.repeat(10.0 ** rng.uniform(-4, 3, n // 32), 32)).astype(np.float32)
    return [noise, np.zeros(n, np.float32), outlier, negative, tiny, swings]


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def kquant_rows(rng, qtype, n=N):
    """Random K-quant rows (gguf cannot quantize these): random bytes everywhere, with f16 scales
    set to sane values, plus all-zero, all-ones-bits, subnormal-scale and negative-scale rows."""
    size = GGML_QUANT_SIZES[qtype][1]
    nb = n // 256

    def with_scales(d, dmin=None):
        blocks = rng.integers(0, 256, (nb, size), dtype=np.uint8)
        if qtype == T.Q6_K:
            blocks[:, 208:210] = f16_bytes(d).reshape(nb, 2)
        else:
            blocks[:, 0:2] = f16_bytes(d).reshape(nb, 2)
            blocks[:, 2:4] = f16_bytes(dmin).reshape(nb, 2)
        return blocks.reshape(-1)

    def sane():
        return rng.uniform(1e-3, 1e-1, nb)

    rows = [with_scales(sane(), sane()) for _ in range(4)]
    rows.append(np.zeros(nb * size, np.uint8))
    # Every code and 6-bit scale/min at its maximum (Q6_K: codes 63, scales -1).
    saturated = with_scales(sane(), sane()).reshape(nb, size)
    saturated[:, slice(0, 208) if qtype == T.Q6_K else slice(4, None)] = 0xFF
    rows.append(saturated.reshape(-1))
    rows.append(with_scales(np.full(nb, 6e-8), np.full(nb, 3e-7)))   # subnormal f16 scales
    rows.append(with_scales(-sane(), -sane()))                          # negative scales
    rows.append(with_scales(np.full(nb, 100.0), np.full(nb, 50.0)))     # large scales
    return rows


def weight_rows(rng, qtype, n=N):
    """Raw GGUF bytes of several rows of the type."""
    if qtype in KQUANTS:
        return kquant_rows(rng, qtype, n)
    floats = float_rows(rng, n)
    if qtype == T.F32:
        extra = np.array([np.inf, -np.inf, -0.0, 1e-45, 3.4e38] * (n // 5) + [0.0] * (n % 5), np.float32)
        return [r.view(np.uint8) for r in floats + [extra]]
    if qtype == T.F16:
        extra = np.array([np.inf, -np.inf, -0.0, 6e-8, 65504.0, 1e-5] * (n // 6) + [1.0] * (n % 6), np.float16)
        return [r.astype(np.float16).view(np.uint8) for r in floats] + [extra.view(np.uint8)]
    if qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
        bits = bits[(bits & 0x7F80) != 0x7F80][: n // 2]  # random finite bf16 bit patterns
        random_bits = np.concatenate([bits, np.zeros(n - bits.size, np.uint16)]).view(np.uint8)
        return [quants.quantize(r, T.BF16).reshape(-1) for r in floats] + [random_bits]
    return [quants.quantize(r, qtype).reshape(-1) for r in floats]


def reference_dequant(qtype, row):
    return quants.dequantize(row.reshape(1, -1), qtype).reshape(-1).astype(np.float32)


# ---------------------------------------------------------------- activation reference

def ref_act_quant(x, block):
    """Independent numpy version of our activation quantization: per block d = max|x| / 127 in
    float32, q = round-half-even(x / d) clipped to +-127, zero codes for an all-zero block."""
    xb = x.reshape(-1, block).astype(np.float32)
    d = (np.abs(xb).max(axis=1) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d[:, None] == 0, 0, np.clip(np.rint(xb / d[:, None]), -127, 127))
    return d, q.astype(np.int8)


def act_rows(rng, n=N):
    rows = float_rows(rng, n)
    rows[1] = rng.standard_normal(n).astype(np.float32)
    rows[1][64:128] = 0.0  # a zero block among non-zero ones
    return rows


# ---------------------------------------------------------------- registry

def test_supported_types_and_info():
    assert sorted(core.supported_types()) == sorted(int(t) for t in ALL_TYPES)
    for t in ALL_TYPES:
        info = core.type_info(int(t))
        assert info["name"] == t.name
        assert (info["block_size"], info["block_bytes"]) == GGML_QUANT_SIZES[t]
        assert info["act_format"] == ACT_OF[t]


# ---------------------------------------------------------------- dequantize

@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_dequantize_matches_gguf_bitwise(qtype):
    # Bitwise: our dequantizers are built without FMA contraction (CMakeLists.txt), so each
    # value is rounded exactly as the reference computes it in float32.
    rng = np.random.default_rng(1000 + int(qtype))
    rows = weight_rows(rng, qtype)
    assert len(rows) >= 6
    for i, row in enumerate(rows):
        ours = core.dequantize_row(int(qtype), row, N)
        ref = reference_dequant(qtype, row)
        assert ours.dtype == np.float32 and ours.shape == (N,)
        mismatch = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
        assert mismatch.size == 0, f"row {i}: first mismatch at {mismatch[:5]}: {ours[mismatch[:5]]} vs {ref[mismatch[:5]]}"


def test_dequantize_single_block_rows():
    # The smallest legal row of each type (one block) and an empty row.
    rng = np.random.default_rng(7)
    for t in ALL_TYPES:
        bs = GGML_QUANT_SIZES[t][0]
        n = max(bs, 32)
        row = weight_rows(rng, t, n)[0]
        np.testing.assert_array_equal(core.dequantize_row(int(t), row, n), reference_dequant(t, row))
        assert core.dequantize_row(int(t), np.zeros(0, np.uint8), 0).shape == (0,)


# ---------------------------------------------------------------- activation quantization

@pytest.mark.parametrize("block,fmt", [(32, ACT_Q8_32), (256, ACT_Q8_256)], ids=["Q8_32", "Q8_256"])
def test_quantize_act_row_layout(block, fmt):
    rng = np.random.default_rng(11 + block)
    for x in act_rows(rng):
        raw = core.quantize_act_row(fmt, x)
        d, q = ref_act_quant(x, block)
        if fmt == ACT_Q8_32:
            blocks = raw.reshape(-1, 40)
            got_d = blocks[:, 0:4].copy().view(np.float32).reshape(-1)
            got_sum = blocks[:, 4:8].copy().view(np.float32).reshape(-1)
            got_q = blocks[:, 8:].view(np.int8)
            want_sum = (d * q.astype(np.int32).sum(axis=1).astype(np.float32)).astype(np.float32)
            np.testing.assert_array_equal(got_sum, want_sum)
        else:
            blocks = raw.reshape(-1, 292)
            got_d = blocks[:, 0:4].copy().view(np.float32).reshape(-1)
            got_bsums = blocks[:, 4:36].copy().view(np.int16)
            got_q = blocks[:, 36:].view(np.int8)
            want_bsums = q.astype(np.int32).reshape(-1, 16, 16).sum(axis=2)
            np.testing.assert_array_equal(got_bsums, want_bsums)
        np.testing.assert_array_equal(got_d, d)
        np.testing.assert_array_equal(got_q, q)


def test_quantize_act_row_f32_is_copy():
    x = np.random.default_rng(3).standard_normal(10).astype(np.float32)
    np.testing.assert_array_equal(core.quantize_act_row(ACT_F32, x).view(np.float32), x)


def test_quantize_act_rounds_half_to_even():
    # Block max 127 gives d = 1 exactly, so x / d is x: ties must go to the even neighbour.
    x = np.zeros(32, np.float32)
    x[:6] = [127.0, 0.5, 1.5, 2.5, -0.5, -2.5]
    q = core.quantize_act_row(ACT_Q8_32, x)[8:].view(np.int8)
    assert list(q[:6]) == [127, 0, 2, 2, 0, -2]


# ---------------------------------------------------------------- vec_dot

def dot_with_quantized_act(qtype, w, x):
    """float64 dot of the reference-dequantized weights with the int8-rounded activations."""
    if ACT_OF[qtype] == ACT_F32:
        return float(np.dot(w.astype(np.float64), x.astype(np.float64))), x.astype(np.float64)
    block = 32 if ACT_OF[qtype] == ACT_Q8_32 else 256
    d, q = ref_act_quant(x, block)
    xq = (q.astype(np.float64) * d[:, None].astype(np.float64)).reshape(-1)
    return float(np.dot(w.astype(np.float64), xq)), xq


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("scalar", [False, True], ids=["fast", "scalar"])
def test_vec_dot_matches_reference(qtype, scalar):
    rng = np.random.default_rng(2000 + int(qtype))
    wrows = weight_rows(rng, qtype)
    if qtype in (T.F32, T.F16, T.BF16):
        wrows = wrows[:-1]  # the inf / full-range rows have no finite float32 dot
    xrows = act_rows(rng)
    checked = 0
    for w_raw in wrows:
        w = reference_dequant(qtype, w_raw)
        for x in xrows:
            got = core.vec_dot(int(qtype), w_raw, x, scalar=scalar)
            want, xq = dot_with_quantized_act(qtype, w, x)
            # Integer sums are exact; what is left is float32 rounding of a few products per
            # block and of the running sum: well under 1e-5 of the sum of |terms|.
            magnitude = float(np.dot(np.abs(w.astype(np.float64)), np.abs(xq)))
            assert abs(got - want) <= 1e-5 * magnitude + 1e-30, (got, want, magnitude)
            # Against the unquantized activations: rounding x to d * q moves each element by at
            # most d / 2 = max|x over its block| / 254, so the dot moves by at most
            # sum |w_i| * blockmax_i / 254 (plus the float32 slack above).
            exact = float(np.dot(w.astype(np.float64), x.astype(np.float64)))
            if ACT_OF[qtype] == ACT_F32:
                bound = 0.0
            else:
                block = 32 if ACT_OF[qtype] == ACT_Q8_32 else 256
                bmax = np.repeat(np.abs(x.reshape(-1, block)).max(axis=1), block).astype(np.float64)
                bound = float(np.dot(np.abs(w.astype(np.float64)), bmax)) / 254.0
            slack = 1e-5 * float(np.dot(np.abs(w.astype(np.float64)), np.abs(x.astype(np.float64)))) + 1e-30
            assert abs(got - exact) <= bound * (1 + 1e-6) + slack, (got, exact, bound)
            checked += 1
    assert checked >= 25


@pytest.mark.parametrize("qtype", [t for t in ALL_TYPES if ACT_OF[t] != ACT_F32], ids=lambda t: t.name)
def test_vec_dot_fast_equals_scalar(qtype):
    # Same integer sums, so the SIMD path may differ from the scalar loop only by the order of
    # float32 operations: each is within ~(blocks + a few) float32 roundings of the magnitude.
    rng = np.random.default_rng(3000 + int(qtype))
    n = 4096
    blocks = n // GGML_QUANT_SIZES[qtype][0]
    rtol = 2 * (blocks + 8) * 2.0**-24
    for w_raw in weight_rows(rng, qtype, n):
        for x in act_rows(rng, n):
            fast = core.vec_dot(int(qtype), w_raw, x)
            slow = core.vec_dot(int(qtype), w_raw, x, scalar=True)
            w = reference_dequant(qtype, w_raw).astype(np.float64)
            assert abs(fast - slow) <= rtol * float(np.dot(np.abs(w), np.abs(x))) + 1e-30


def test_vec_dot_detects_element_order():
    # A single non-zero weight at element k and a one-hot activation at k must give that weight;
    # anywhere else, zero. Catches nibble/half swaps that random data might average out.
    rng = np.random.default_rng(5)
    for qtype in BLOCK32:
        for k in (0, 1, 15, 16, 17, 31, 32 + 20):
            row = np.zeros(64, np.float32)
            row[k] = -3.0 if qtype != T.Q4_1 else 3.0
            w_raw = quants.quantize(row, qtype).reshape(-1)
            w = reference_dequant(qtype, w_raw)
            for j in (k, (k + 16) % 64, (k + 1) % 64):
                x = np.zeros(64, np.float32)
                x[j] = 1.0
                assert core.vec_dot(int(qtype), w_raw, x) == pytest.approx(float(w[j]), rel=1e-6, abs=1e-6)
    for qtype in KQUANTS:
        w_raw = kquant_rows(rng, qtype, 256)[0]
        w = reference_dequant(qtype, w_raw)
        for j in rng.choice(256, 24, replace=False):
            x = np.zeros(256, np.float32)
            x[j] = 1.0
            assert core.vec_dot(int(qtype), w_raw, x) == pytest.approx(float(w[j]), rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------- conversions

def test_portable_half_to_float_exhaustive():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    ours = core.half_to_float_portable(bits)
    ref = bits.view(np.float16).astype(np.float32)
    finite = ~np.isnan(ref)
    np.testing.assert_array_equal(ours[finite].view(np.uint32), ref[finite].view(np.uint32))
    assert np.isnan(ours[~finite]).all()


def test_portable_float_to_half_rounding():
    rng = np.random.default_rng(9)
    # Random bit patterns across the whole range, every half and the midpoints between halves.
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves)].astype(np.float32)
    mids = ((halves[:-1].astype(np.float64) + halves[1:].astype(np.float64)) / 2).astype(np.float32)
    rand = rng.integers(0, 1 << 32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([halves, mids, rand, np.float32([65504, 65519.99, 65520, 1e-8, 2.98e-8, 2.99e-8])])
    x = x[~np.isnan(x)]
    ours = core.float_to_half_portable(x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(ours, x.astype(np.float16).view(np.uint16))
    assert np.isnan(core.float_to_half_portable(np.float32([np.nan])).view(np.float16)).all()


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_wrong_sizes_raise(qtype):
    bs, size = GGML_QUANT_SIZES[qtype]
    n = max(bs, 32) * 2
    good = np.zeros(n // bs * size, np.uint8)
    x = np.ones(n, np.float32)
    assert core.dequantize_row(int(qtype), good, n).shape == (n,)
    for bad in (good[:-1], np.zeros(good.size + 1, np.uint8)):
        with pytest.raises(ValueError):
            core.dequantize_row(int(qtype), bad, n)
        with pytest.raises(ValueError):
            core.vec_dot(int(qtype), bad, x)
    with pytest.raises(ValueError):
        core.vec_dot(int(qtype), good, x[:-32])  # activation length disagrees with the row
    with pytest.raises(ValueError):
        core.dequantize_row(int(qtype), good, -bs)
    with pytest.raises(ValueError):
        core.dequantize_row(int(qtype), good.view(np.int8), n)  # bytes must be uint8
    if bs > 1:
        with pytest.raises(ValueError):
            core.dequantize_row(int(qtype), good, n - 1)


@pytest.mark.parametrize("type_id", [99, -1, 10, 20])
def test_unsupported_type_raises(type_id):
    with pytest.raises(ValueError, match=str(type_id)):
        core.dequantize_row(type_id, np.zeros(22, np.uint8), 32)
    with pytest.raises(ValueError):
        core.vec_dot(type_id, np.zeros(22, np.uint8), np.zeros(32, np.float32))
    with pytest.raises(ValueError):
        core.type_info(type_id)


def test_bad_activation_format_raises():
    with pytest.raises(ValueError):
        core.quantize_act_row(3, np.zeros(32, np.float32))
    with pytest.raises(ValueError):
        core.quantize_act_row(ACT_Q8_32, np.zeros(31, np.float32))
    with pytest.raises(ValueError):
        core.quantize_act_row(ACT_Q8_256, np.zeros(128, np.float32))


# ---------------------------------------------------------------- helpers for the matmul bounds

def f16_field(raw, block_bytes, offset):
    """The f16 field at `offset` of every block, as float64."""
    return raw.reshape(-1, block_bytes)[:, offset:offset + 2].copy().view(np.float16).reshape(-1).astype(np.float64)


def term_magnitudes(qtype, raw, n):
    """Per element, |scaled-code part| + |offset part| of the weight as the kernels split it
    (Q4_0: d*q and -8d; Q4_1: d*q and m; K-quants with mins: d*sc*q and dmin*mn; Q6_K: d*sc*q and
    32*d*sc). Integer sums are exact, so float32 rounding error is relative to these."""
    bs, size = GGML_QUANT_SIZES[qtype]
    w = reference_dequant(qtype, raw).astype(np.float64)
    if qtype == T.Q8_0:
        return np.abs(w)
    if qtype in (T.Q4_0, T.Q4_1):
        m = -8 * f16_field(raw, size, 0) if qtype == T.Q4_0 else f16_field(raw, size, 2)
        m = np.repeat(m, bs)
        return np.abs(w - m) + np.abs(m)
    if qtype == T.Q6_K:
        blocks = raw.reshape(-1, size)
        sc = blocks[:, 192:208].view(np.int8).astype(np.float64)
        ds = np.repeat((f16_field(raw, size, 208)[:, None] * sc).reshape(-1), 16)
        return np.abs(w + 32 * ds) + np.abs(32 * ds)
    blocks = raw.reshape(-1, size)
    no_min, no_scale = blocks.copy(), blocks.copy()
    no_min[:, 2:4] = 0   # dmin = 0: d * sc * q
    no_scale[:, 0:2] = 0  # d = 0: -dmin * mn
    return (np.abs(reference_dequant(qtype, no_min.reshape(-1))).astype(np.float64)
            + np.abs(reference_dequant(qtype, no_scale.reshape(-1))).astype(np.float64))


# ---------------------------------------------------------------- row groups (weights repacked at load)

ROW_GROUP_TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]
# Every CPU level this machine runs that has row groups (AVX-512 VNNI, AVX2): each is tested.
ROW_GROUP_LEVELS = [lv for lv in _core.runnable_levels() if _testing.load_level(lv).has_row_group_kernel(int(T.Q4_0))]
if not ROW_GROUP_LEVELS:
    ROW_GROUP_LEVELS = [pytest.param(None, marks=pytest.mark.skip(reason="no CPU level with row groups runs here"))]


def test_row_group_kernels_cover_the_quantized_types():
    # With AVX2 or AVX-512 VNNI every quantized type is repacked into row groups.
    if not core.has_row_group_kernel(int(T.Q4_0)):
        pytest.skip("this CPU level has no row-group kernels (they need AVX2)")
    assert all(core.has_row_group_kernel(int(q)) for q in ROW_GROUP_TYPES)
    assert not any(core.has_row_group_kernel(int(q)) for q in (T.F32, T.F16, T.BF16))


def row_group_matrix(rng, qtype, n, n_rows):
    """n_rows raw rows cycling through the awkward generators, so every group mixes them."""
    base = weight_rows(rng, qtype, n)
    return np.stack([base[(r * 5) % len(base)] for r in range(n_rows)])


@pytest.mark.parametrize("level", ROW_GROUP_LEVELS)
@pytest.mark.parametrize("qtype", ROW_GROUP_TYPES, ids=lambda t: t.name)
def test_row_group_matmul_matches_scalar_vec_dot(qtype, level):
    # Exact integer block sums; float32 rounding of each block's scale product and of one running
    # sum per (row, token), against the scalar loop's own roundings: |Δ| <= 2 (n/32 + 16) 2^-24 M. 37 rows leave a partial last group; 11 tokens
    # a partial last token batch.
    core = _testing.load_level(level)
    rng = np.random.default_rng(7000 + int(qtype))
    for n in [n for n in (96, 512, 1280) if n % GGML_QUANT_SIZES[qtype][0] == 0]:
        rows = row_group_matrix(rng, qtype, n, 37)
        x = np.stack(act_rows(rng, n) * 2)[:11]
        got = core.matmul(int(qtype), rows, x, row_groups=True)
        assert got.shape == (11, 37) and got.dtype == np.float32
        rtol = 2 * (n / 32 + 16) * 2.0**-24
        for t in range(x.shape[0]):
            _, xq = dot_with_quantized_act(qtype, np.zeros(n, np.float32), x[t])
            for r in range(rows.shape[0]):
                want = core.vec_dot(int(qtype), rows[r], x[t], scalar=True)
                mag = float(np.dot(term_magnitudes(qtype, rows[r], n), np.abs(xq)))
                assert abs(float(got[t, r]) - want) <= rtol * mag + 1e-30, (n, t, r, got[t, r], want)


@pytest.mark.parametrize("level", ROW_GROUP_LEVELS)
@pytest.mark.parametrize("qtype", ROW_GROUP_TYPES, ids=lambda t: t.name)
def test_row_group_matmul_is_bit_identical_across_batches_and_threads(qtype, level):
    # Decode (one token), prefill (many) and any thread count give each (row, token) the same bits.
    core = _testing.load_level(level)
    rng = np.random.default_rng(7100 + int(qtype))
    n = 768
    rows = row_group_matrix(rng, qtype, n, 50)
    x = np.stack(act_rows(rng, n) * 3)[:13]
    full = core.matmul(int(qtype), rows, x, row_groups=True)
    np.testing.assert_array_equal(core.matmul(int(qtype), rows, x, row_groups=True, n_threads=3).view(np.uint32),
                                  full.view(np.uint32))
    for t in range(x.shape[0]):
        one = core.matmul(int(qtype), rows, x[t:t + 1], row_groups=True)
        np.testing.assert_array_equal(one.view(np.uint32), full[t:t + 1].view(np.uint32))


@pytest.mark.parametrize("level", ROW_GROUP_LEVELS)
@pytest.mark.parametrize("qtype", ROW_GROUP_TYPES, ids=lambda t: t.name)
def test_row_group_element_order_and_source_untouched(qtype, level):
    # One-hot activations pick single weights out of every row: a misplaced code, scale or lane fails.
    core = _testing.load_level(level)
    rng = np.random.default_rng(7200 + int(qtype))
    n = 256
    rows = row_group_matrix(rng, qtype, n, 20)
    before = rows.copy()
    w = np.stack([reference_dequant(qtype, r) for r in rows])
    cols = list(rng.choice(n, 24, replace=False)) + [0, 3, 4, 15, 16, 31, 32, 255]
    x = np.zeros((len(cols), n), np.float32)
    x[np.arange(len(cols)), cols] = 1.0
    got = core.matmul(int(qtype), rows, x, row_groups=True)
    np.testing.assert_allclose(got, w[:, cols].T, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rows, before)


@pytest.mark.parametrize("level", ROW_GROUP_LEVELS)
@pytest.mark.parametrize("qtype", ROW_GROUP_TYPES, ids=lambda t: t.name)
def test_row_group_unpack_gives_back_the_gguf_rows(qtype, level):
    # The embedding lookup of a tied output matrix reads its rows back out of the groups; 21 rows
    # leave a partial second group, and random bytes reach every bit of every field.
    core = _testing.load_level(level)
    n = 512
    block, block_bytes = GGML_QUANT_SIZES[qtype]
    rows = np.random.default_rng(7300 + int(qtype)).integers(0, 256, (21, n // block * block_bytes), dtype=np.uint8)
    np.testing.assert_array_equal(core.row_group_round_trip(int(qtype), rows, n), rows)


def test_row_group_matmul_validation():
    with pytest.raises(ValueError, match="uint8"):
        core.matmul(int(T.Q4_0), np.zeros((4, 18), np.int8), np.ones((1, 32), np.float32), row_groups=True)
    with pytest.raises(ValueError, match="bytes"):
        core.matmul(int(T.Q4_0), np.zeros((4, 17), np.uint8), np.ones((1, 32), np.float32), row_groups=True)
    with pytest.raises(ValueError, match="multiple"):
        core.matmul(int(T.Q4_0), np.zeros((4, 18), np.uint8), np.ones((1, 33), np.float32), row_groups=True)
    with pytest.raises(ValueError, match="no row-group kernel"):  # float weights never have one
        core.matmul(int(T.F16), np.zeros((4, 64), np.uint8), np.ones((1, 32), np.float32), row_groups=True)


# ---------------------------------------------------------------- element-wise math

def test_exp_approx_is_within_two_ulp_of_exp():
    # Every level's build vectorizes it differently; all must stay within 2 float32 ulp of exp.
    x = np.concatenate([np.linspace(-87, 88, 200001, dtype=np.float32),
                        np.random.default_rng(0).uniform(-20, 20, 100000).astype(np.float32),
                        np.float32([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 88.0, -87.0])])
    for level in _core.runnable_levels():
        got = _testing.load_level(level).exp_approx(x).astype(np.float64)
        want = np.exp(x.astype(np.float64))
        ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(got - want) <= 2 * ulp), (level, float(np.max(np.abs(got - want) / ulp)))
    # Clamped outside: large negative inputs give a tiny positive number, never inf or nan.
    tails = core.exp_approx(np.float32([-1e4, -100.0, 100.0, 1e4]))
    assert np.all(np.isfinite(tails)) and tails[0] < 1e-37 and tails[1] < 1e-37 and tails[3] > 1e38


def test_swiglu_matches_float64():
    rng = np.random.default_rng(1)
    g = np.concatenate([rng.standard_normal(10000) * 4, np.float32([-200, -90, 0, 90, 200])]).astype(np.float32)
    u = rng.standard_normal(g.size).astype(np.float32)
    want = g.astype(np.float64) / (1 + np.exp(-g.astype(np.float64))) * u
    for level in _core.runnable_levels():
        got = _testing.load_level(level).swiglu(g, u).astype(np.float64)
        assert np.all(np.abs(got - want) <= 4e-7 * np.abs(want) + 1e-30), level
