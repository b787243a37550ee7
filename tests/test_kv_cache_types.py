"""Quantized KV caches (cache_type_k / cache_type_v = "q8_0" / "q4_0"; csrc/kernels/kv_blocks.h).

What "correct" means, separately for the two halves of the work:
- storage: the blocks the cache holds, decoded by gguf.quants (an independent decoder), are the
  keys and values an f16 cache holds, turned by the Hadamard matrix where the head size is a
  multiple of 64 (built here by Sylvester's recursion), up to the format's rounding (half a step
  of each block's scale, plus the f16 cache's own rounding);
- attention: the logits equal the float64 reference's when the reference attends exactly what the
  engine's cache holds (decoded, and turned back by the Hadamard matrix), within the usual bound
  (tests/logit_checks.py), on every CPU level (the AVX-512 tiles and the portable path), for head
  sizes 32 (not turned) and 64 (turned).
The quality that quantizing costs (KL divergence against an f16 cache) is measured by
benchmarks/bench_kv_cache.py, not asserted here.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants

from edgellama import Llama, _core
from edgellama.errors import InvalidArgumentError, StateError
from edgellama.gguf_loader import load_gguf
from logit_checks import assert_logits_close, expected_logits
from reference import load_reference
from tiny_models import write_tiny_llama

LEVELS = _core.runnable_levels()
QTYPES = {"q8_0": QT.Q8_0, "q4_0": QT.Q4_0}
TYPE_PAIRS = [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16"), ("f16", "q4_0")]
# head_dim 64: the AVX-512 tiles; 32: the portable path on every level.
SHAPES = {"head_dim64": dict(head_dim=64, n_head=4, n_head_kv=2), "head_dim32-gqa4": dict(head_dim=32, n_head=8,
                                                                                          n_head_kv=2)}


def prompt(seed: int, n: int = 40):  # 2.5 key tiles of 16 positions
    return [int(t) for t in np.random.default_rng(seed).integers(3, 300, n)]


def decoded(rows: np.ndarray, cache_type: str) -> np.ndarray:
    """A cache's plain rows (seq_read) as float64 [n_layer][n_head_kv][n][head_dim]."""
    if cache_type == "f16":
        return rows.view(np.float16).astype(np.float64)
    flat = quants.dequantize(rows.reshape(-1, rows.shape[-1]), QTYPES[cache_type])
    return flat.astype(np.float64).reshape(rows.shape[:-1] + (-1,))


def hadamard(n: int) -> np.ndarray:
    """Sylvester's orthonormal Walsh-Hadamard matrix of order n (a power of two)."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def turned(x: np.ndarray, cache_type: str) -> np.ndarray:
    """x [..., head_dim] as a cache of that type turns it (the same matrix turns it back): chunks
    of 64 (head_dim 64 here: the largest power of two dividing it, for keys too)."""
    head_dim = x.shape[-1]
    if cache_type == "f16" or head_dim % 64:
        return x
    chunks = x.reshape(x.shape[:-1] + (head_dim // 64, 64))
    return (chunks @ hadamard(64)).reshape(x.shape)


def block_steps(x: np.ndarray, cache_type: str) -> np.ndarray:
    """Per element, the quantization step of its block of 32 (amax/127 or amax/8)."""
    blocks = np.abs(x.reshape(x.shape[:-1] + (-1, 32))).max(axis=-1, keepdims=True)
    step = blocks / (127.0 if cache_type == "q8_0" else 8.0)
    return np.broadcast_to(step, blocks.shape[:-1] + (32,)).reshape(x.shape)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kv")
    return {name: write_tiny_llama(folder / f"{name}.gguf", n_embd=128, **shape) for name, shape in SHAPES.items()}


_LOADED = {}  # the engines point into these models' mappings: keep them alive


def engine(level_core, path, n_ctx, types, n_seq=1):
    model = _LOADED.setdefault(str(path), load_gguf(path))
    return level_core.LlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, 2, n_seq=n_seq,
                                 cache_type_k=types[0], cache_type_v=types[1])


@pytest.mark.parametrize("cache_type", sorted(QTYPES))
def test_stored_blocks_are_the_keys_and_values_up_to_the_format_rounding(files, cache_type):
    ids = prompt(1)
    f16 = engine(_core, files["head_dim64"], 64, ("f16", "f16"))
    quantized = engine(_core, files["head_dim64"], 64, (cache_type, cache_type))
    f16.forward(np.array(ids, np.int32), False)
    quantized.forward(np.array(ids, np.int32), False)
    (k16, v16), (kq, vq) = f16.seq_read(0), quantized.seq_read(0)
    assert kq.dtype == np.uint8 and kq.shape == (2, 2, len(ids), 64 // 32 * (34 if cache_type == "q8_0" else 18))
    # Layer 0 depends on the tokens alone: both caches were given the same float32 rows.
    for name, exact, got in (("keys", k16[0], kq[0]), ("values", v16[0], vq[0])):
        reference = exact.view(np.float16).astype(np.float64)
        error = np.abs(decoded(got, cache_type) - reference)
        # Half a step (q4_0's codes reach -8 steps but only +7, so an element of the other sign than
        # the block's largest can be a whole step off), plus the fp16 rounding of the block's scale
        # and of the f16 cache's element: each 2^-11 of the element.
        steps = 0.5 if cache_type == "q8_0" else 1.0
        bound = steps * block_steps(exact, cache_type) * (1 + 2.0**-10) + 2.0**-10 * np.abs(reference) + 1e-7
        assert np.all(error <= bound), f"{name}: worst excess {float((error - bound).max()):.3g}"
        assert error.max() > 0  # the test sees the rounding at all


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("types", TYPE_PAIRS, ids="/".join)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_attention_over_the_blocks_matches_the_reference_attending_them(files, level, types, shape):
    path = files[shape]
    ids = prompt(2)
    core = engine(_core.load_level(level), path, 64, types)
    got = core.forward(np.array(ids, np.int32), True)
    keys, values = core.seq_read(0)
    reference = load_reference(path)
    # What the engine attends: q·(H k̂) = Hq·k̂ and Σ p·(H v̂) = H Σ p·v̂ for the stored k̂, v̂.
    reference.kv_override = [(turned(k, types[0]).transpose(1, 0, 2), turned(v, types[1]).transpose(1, 0, 2))
                             for k, v in zip(decoded(keys, types[0]), decoded(values, types[1]))]
    try:
        ref = reference.logits(ids)
    finally:
        reference.kv_override = None
    _, tol = expected_logits(path, ids)
    assert_logits_close(got, ref, tol, f"{level} {types} {shape}")
    # The bound can fail: the plain f16 reference is farther off than it allows for q4_0 keys.
    if types[0] == "q4_0":
        plain, _ = expected_logits(path, ids)
        assert np.abs(plain - ref).max() > tol.max()


@pytest.mark.parametrize("types", TYPE_PAIRS[:2], ids="/".join)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_prefill_decode_and_batching_give_the_same_bits(files, types, shape):
    """A token's logits do not depend on how its sequence was cut into steps or batched with
    another sequence, as with an f16 cache."""
    ids = prompt(3, 37)
    whole = engine(_core, files[shape], 64, types)
    all_at_once = whole.forward(np.array(ids, np.int32), True)
    stepwise = engine(_core, files[shape], 64, types)
    one_by_one = np.stack([stepwise.forward(np.array([t], np.int32), False) for t in ids])
    np.testing.assert_array_equal(one_by_one, all_at_once)
    other = prompt(4, 20)
    both = engine(_core, files[shape], 64, types, n_seq=2).forward_batch(
        np.array(other + ids, np.int32), np.array([1] * len(other) + [0] * len(ids), np.int32),
        np.array(list(range(len(other))) + list(range(len(ids))), np.int64), np.ones(len(other) + len(ids), np.uint8))
    np.testing.assert_array_equal(both[len(other):], all_at_once)


def test_the_api_reports_types_and_memory(files):
    path = files["head_dim64"]
    f16 = Llama(path, n_ctx=256, n_threads=1)
    q8 = Llama(path, n_ctx=256, n_threads=1, cache_type_k="q8_0", cache_type_v="q8_0")
    q4 = Llama(path, n_ctx=256, n_threads=1, cache_type_k="q4_0", cache_type_v="q4_0")
    assert (f16.cache_types, q8.cache_types, q4.cache_types) == (("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"))
    assert f16.kv_cache_bytes == 2 * 2 * 2 * 256 * 64 * 2  # keys and values, layers, KV heads, n_ctx, head_dim, 2 B
    assert q8.kv_cache_bytes * 64 == f16.kv_cache_bytes * 34
    assert q4.kv_cache_bytes * 64 == f16.kv_cache_bytes * 18


@pytest.mark.parametrize("cache_type", sorted(QTYPES))
def test_saved_state_round_trips_and_names_a_cache_type_mismatch(files, tmp_path, cache_type):
    path = files["head_dim64"]
    llm = Llama(path, n_ctx=64, n_threads=1, cache_type_k=cache_type, cache_type_v="f16")
    ids = prompt(6, 30)
    llm.eval(ids)
    state = llm.save_state()
    llm.save_session(tmp_path / "s.session")
    expected = llm._core.forward(np.array([7], np.int32), False)
    fresh = Llama(path, n_ctx=64, n_threads=1, cache_type_k=cache_type, cache_type_v="f16")
    fresh.load_session(tmp_path / "s.session")
    np.testing.assert_array_equal(fresh._core.forward(np.array([7], np.int32), False), expected)
    assert fresh.save_state().cache_types == (cache_type, "f16")
    other = Llama(path, n_ctx=64, n_threads=1)
    with pytest.raises(StateError, match=f"{cache_type}/f16 cache.*f16/f16"):
        other.load_state(state)
    with pytest.raises(StateError, match=f"{cache_type}/f16 cache"):
        other.load_session(tmp_path / "s.session")
    assert other._core.seq_n_past(0) == 0


def test_context_shift_requantizes_the_rotated_keys(files):
    path = files["head_dim64"]
    keep, discard = 4, 17
    ids = prompt(7)
    shifted = Llama(path, n_ctx=64, n_threads=1, cache_type_k="q8_0", cache_type_v="q8_0")
    shifted.eval(ids)
    shifted._core.seq_shift(0, keep, discard)
    fresh = Llama(path, n_ctx=64, n_threads=1, cache_type_k="q8_0", cache_type_v="q8_0")
    fresh.eval(ids[:keep] + ids[keep + discard:])
    (k_shift, v_shift), (k_fresh, v_fresh) = shifted._core.seq_read(0), fresh._core.seq_read(0)
    np.testing.assert_array_equal(v_shift[0], v_fresh[0])
    np.testing.assert_array_equal(k_shift[0, :, :keep], k_fresh[0, :, :keep])
    a, b = turned(decoded(k_shift[0], "q8_0"), "q8_0"), turned(decoded(k_fresh[0], "q8_0"), "q8_0")
    scale = np.abs(b).max(axis=-1, keepdims=True)
    # Two roundings of at most half a step (amax/127, amax at most sqrt(2) larger after a rotation).
    assert (np.abs(a - b) / scale).max() <= 2.0 / 127
    # Without the rotation the keys would be far off: the check above can fail.
    unrotated = Llama(path, n_ctx=64, n_threads=1, cache_type_k="q8_0", cache_type_v="q8_0")
    unrotated.eval(ids)
    old = turned(decoded(unrotated._core.seq_read(0)[0][0, :, keep + discard:], "q8_0"), "q8_0")
    assert (np.abs(old - b[:, keep:]) / scale[:, keep:]).max() > 0.1


@pytest.mark.parametrize("kwargs, message", [
    (dict(cache_type_k="q5_0"), "cache_type_k.*one of f16, q8_0, q4_0"),
    (dict(cache_type_v=8), "cache_type_v"),
    (dict(cache_type_k="q8_0", device="cuda"), "cache_type_k.*f16 only"),
])
def test_bad_cache_types_are_named(files, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Llama(files["head_dim64"], n_ctx=64, **kwargs)


def test_a_head_size_the_blocks_cannot_hold_is_refused(tmp_path):
    path = write_tiny_llama(tmp_path / "m.gguf")  # head_dim 16
    with pytest.raises(InvalidArgumentError, match="cache_type_v.*multiple of 32.*16"):
        Llama(path, n_ctx=64, cache_type_v="q4_0")
    model = _LOADED.setdefault(str(path), load_gguf(path))
    with pytest.raises(ValueError, match="q4_0 KV cache needs head_dim a multiple of 32"):
        _core.LlamaModel(model.config.core_dict(), model.core_tensors(), 64, 1, cache_type_k="q4_0")
    with pytest.raises(ValueError, match="unknown KV cache type 'q5'"):
        _core.LlamaModel(model.config.core_dict(), model.core_tensors(), 64, 1, cache_type_k="q5")
