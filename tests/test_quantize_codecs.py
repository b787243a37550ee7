"""The C++ weight quantizers against independent references.

32-element formats: our bytes must equal `gguf.quants.quantize` (the format's reference
rounding in numpy) bit for bit, on random rows and on adversarial ones. K-quants have no unique
encoding, so their bytes are decoded by `gguf.quants.dequantize` (an independent decoder: a
layout mistake shows up as a large error) and the error is held to a bound per type and
compared with a plain min/max quantizer that does no scale search.
"""

import warnings

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as QT

from edgellama import _core, _testing

BLOCK32 = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
KQUANTS = ["Q4_K", "Q5_K", "Q6_K"]


def quantize(type_name, x, threads=2):
    data, sse = _core.quantize_rows(int(QT[type_name]), np.ascontiguousarray(x, dtype=np.float32), threads)
    return data, sse


def adversarial_rows():
    rng = np.random.default_rng(7)
    cases = {}
    cases["random"] = rng.standard_normal((16, 512)).astype(np.float32)
    cases["scaled"] = (rng.standard_normal((4, 512)) * 1e-3).astype(np.float32)
    cases["zeros"] = np.zeros((2, 512), np.float32)
    outlier = (rng.standard_normal((4, 512)) * 0.01).astype(np.float32)
    outlier[0, 5], outlier[1, 300], outlier[2, 31], outlier[3, 0] = 1e4, -3e4, 65000.0, -1e-2
    cases["outlier"] = outlier
    denorm = (rng.standard_normal((4, 512)) * 1e-40).astype(np.float32)  # float32 subnormals
    denorm[0, ::7] = 1e-3  # mixed with normal values in some blocks
    denorm[1, :] = np.float32(1.4e-45)  # smallest subnormal everywhere
    cases["denormals"] = denorm
    cases["negative_only"] = (-np.abs(rng.standard_normal((4, 512))) - 0.25).astype(np.float32)
    cases["positive_only"] = (np.abs(rng.standard_normal((4, 512))) + 0.25).astype(np.float32)
    ties = (rng.integers(-16, 16, (4, 512)) * 0.5).astype(np.float32)  # many exact .5 roundings
    ties[:, :32] = 2.0  # a constant block
    cases["ties_and_constant"] = ties
    return cases


@pytest.mark.parametrize("type_name", BLOCK32)
@pytest.mark.parametrize("case", list(adversarial_rows()))
def test_block32_bytes_equal_gguf_reference(type_name, case):
    x = adversarial_rows()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference warns on its 1/d overflows (subnormals)
        ref = gguf.quants.quantize(x, QT[type_name])
    ours, _ = quantize(type_name, x)
    assert ours.shape == ref.shape
    mismatch = np.argwhere(ours != ref)
    assert mismatch.size == 0, f"{type_name}/{case}: first differing (row, byte) {mismatch[:4].tolist()}"


@pytest.mark.parametrize("type_name", BLOCK32 + KQUANTS + ["F16", "BF16", "F32"])
def test_reported_error_matches_reference_decoder(type_name):
    x = np.random.default_rng(3).standard_normal((8, 512)).astype(np.float32)
    data, sse = quantize(type_name, x)
    decoded = gguf.quants.dequantize(data, QT[type_name])
    assert decoded.shape == x.shape
    want = float(np.sum((decoded.astype(np.float64) - x) ** 2))
    assert sse == pytest.approx(want, rel=1e-6, abs=1e-30)
    ours = np.stack([_testing.dequantize_any(int(QT[type_name]), row, x.shape[1]) for row in data])
    np.testing.assert_array_equal(ours, decoded)


def test_threads_do_not_change_the_bytes():
    x = np.random.default_rng(5).standard_normal((37, 768)).astype(np.float32)
    for type_name in ("Q4_0", "Q4_K", "Q6_K"):
        one, sse1 = quantize(type_name, x, threads=1)
        many, sse3 = quantize(type_name, x, threads=3)
        np.testing.assert_array_equal(one, many)
        assert sse1 == pytest.approx(sse3, rel=1e-12)


def test_bf16_and_f16_round_to_nearest_even():
    x = np.random.default_rng(6).standard_normal((4, 256)).astype(np.float32) * 100
    f16, _ = quantize("F16", x)
    np.testing.assert_array_equal(f16.view(np.float16), x.astype(np.float16))
    bf16, _ = quantize("BF16", x)
    np.testing.assert_array_equal(bf16, gguf.quants.quantize(x, QT.BF16))


# --- K-quants -----------------------------------------------------------------------------------

def naive_scale_min(x, nmax):
    """Per 32-element sub-block: map [min(x, 0), max] onto [0, nmax] with exact float scale and
    offset (no 6-bit rounding of the scales, so this baseline is if anything too generous)."""
    b = x.reshape(-1, 32).astype(np.float64)
    lo, hi = np.minimum(b.min(1, keepdims=True), 0), b.max(1, keepdims=True)
    d = (hi - lo) / nmax
    d[d == 0] = 1
    return (np.clip(np.round((b - lo) / d), 0, nmax) * d + lo).reshape(x.shape)


def naive_signed(x):
    """Per 16-element sub-block: largest magnitude -> code -32, exact float scale."""
    b = x.reshape(-1, 16).astype(np.float64)
    m = np.take_along_axis(b, np.abs(b).argmax(1)[:, None], 1)
    d = m / -32
    d[d == 0] = 1
    return (np.clip(np.round(b / d), -32, 31) * d).reshape(x.shape)


NAIVE = {"Q4_K": lambda x: naive_scale_min(x, 15), "Q5_K": lambda x: naive_scale_min(x, 31), "Q6_K": naive_signed}
# RMSE / std of the data on N(0, 1) weights; ours measures 0.0722 / 0.0360 / 0.0175.
RMSE_BOUND = {"Q4_K": 0.074, "Q5_K": 0.037, "Q6_K": 0.018}


def kquant_rmse(type_name, x):
    data, _ = quantize(type_name, x)
    decoded = gguf.quants.dequantize(data, QT[type_name])
    return float(np.sqrt(np.mean((decoded.astype(np.float64) - x) ** 2)))


@pytest.mark.parametrize("type_name", KQUANTS)
def test_kquant_error_within_bound_and_below_minmax(type_name):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((128, 1024)).astype(np.float32)
    rmse = kquant_rmse(type_name, x)
    assert rmse <= RMSE_BOUND[type_name] * float(np.std(x)), rmse
    for data in (x, rng.standard_t(3, (64, 1024)).astype(np.float32), rng.uniform(-1, 1, (64, 1024)).astype(np.float32)):
        ours = kquant_rmse(type_name, data)
        naive = float(np.sqrt(np.mean((NAIVE[type_name](data) - data) ** 2)))
        assert ours < 0.99 * naive, (type_name, ours, naive)


@pytest.mark.parametrize("type_name", KQUANTS)
def test_kquant_adversarial_rows(type_name):
    for case, x in adversarial_rows().items():
        data, _ = quantize(type_name, x)
        decoded = gguf.quants.dequantize(data, QT[type_name])
        assert np.isfinite(decoded).all(), case
        if case == "zeros":
            assert not decoded.any()
            continue
        # Error per 256-block stays a small fraction of the block's own range.
        blocks_x = x.reshape(-1, 256).astype(np.float64)
        err = np.abs(decoded.reshape(-1, 256) - blocks_x).max(1)
        span = np.abs(blocks_x).max(1)
        assert (err <= 0.25 * span + 1e-30).all(), (case, (err / np.maximum(span, 1e-38)).max())
    sign = adversarial_rows()["negative_only"]
    decoded = gguf.quants.dequantize(quantize(type_name, sign)[0], QT[type_name])
    assert np.sqrt(np.mean((decoded - sign) ** 2)) < 2 * RMSE_BOUND[type_name]


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="multiple of the block size"):
        _core.quantize_rows(int(QT.Q4_K), np.zeros((2, 96), np.float32), 1)
    with pytest.raises(ValueError, match="cannot quantize"):
        _core.quantize_rows(int(QT.IQ2_XXS), np.zeros((2, 256), np.float32), 1)
