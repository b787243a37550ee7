"""Context shift (LlamaModel::seq_shift, Scheduler._shift, context_shift= on the generation API):
when a sequence's window is full, the oldest tokens after a kept prefix are dropped and the later
keys rotated to their new positions in place.

What "correct" means: a layer's keys and values that depend on the token alone (layer 0) must be
those a fresh prefill of the kept tokens stores, up to the fp16 rounding of the rotated keys; for
a one-layer model the next logits must be the float64 reference's for the kept tokens. The shifted
keys are rounded to fp16 twice (at their first position, then after the rotation): the bound is
the usual one (logit_checks) plus that extra rounding, simulated in the reference as the int8
activation rounding is (the logit change that rounding the keys to fp16 makes, with the same
margin of 2.5). Deeper layers were computed with the dropped tokens in view, so no fresh prefill
can match them: that is what a context shift trades for not recomputing.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgellama import Llama
from edgellama.api import chat_prompt_ids, system_prefix_length
from edgellama.errors import InvalidArgumentError
from logit_checks import INT8_MARGIN, assert_logits_close, expected_logits
from reference import load_reference
from tiny_models import write_tiny_llama

KEEP, DISCARD = 4, 17
NEXT = [5, 77, 123]
YARN = {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
        "llama.rope.scaling.original_context_length": 64}
CASES = {
    "F32": dict(weight_type="F32"),
    "Q8_0": dict(weight_type="Q8_0"),
    "F16-head_dim32-rope_freqs": dict(weight_type="F16", head_dim=32, rope_freqs=True),
    "F32-yarn": dict(weight_type="F32", overrides=YARN),
}


def prompt(seed: int, n: int = 40):
    return [int(t) for t in np.random.default_rng(seed).integers(3, 300, n)]


def relative_key_error(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference between two key arrays (fp16 bits, [...][position][dim]), relative
    to the largest element of its key: a rotation mixes a pair's two elements, so each carries
    rounding of the size of the larger one."""
    a, b = a.view(np.float16).astype(np.float64), b.view(np.float16).astype(np.float64)
    scale = np.maximum(np.abs(a).max(axis=-1, keepdims=True), 1e-30)
    return float((np.abs(a - b) / scale).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_shifted_first_layer_equals_a_fresh_prefill_of_the_kept_tokens(tmp_path, case):
    path = write_tiny_llama(tmp_path / "m.gguf", **CASES[case])
    ids = prompt(1)
    shifted = Llama(path, n_ctx=64)
    shifted.eval(ids)
    shifted._core.seq_shift(0, KEEP, DISCARD)
    fresh = Llama(path, n_ctx=64)
    fresh.eval(ids[:KEEP] + ids[KEEP + DISCARD:])
    (k_shift, v_shift), (k_fresh, v_fresh) = shifted._core.seq_read(0), fresh._core.seq_read(0)
    assert k_shift.shape == k_fresh.shape == (2, 2, len(ids) - DISCARD, k_fresh.shape[-1])
    np.testing.assert_array_equal(v_shift[0], v_fresh[0])  # values move, untouched
    np.testing.assert_array_equal(k_shift[0, :, :KEEP], k_fresh[0, :, :KEEP])  # the kept prefix stays
    assert relative_key_error(k_shift[0], k_fresh[0]) <= 2 * 2.0**-11  # one more fp16 rounding
    # Without the rotation the keys would be far off: the check above can fail.
    unrotated = Llama(path, n_ctx=64)
    unrotated.eval(ids)
    k_old, _ = unrotated._core.seq_read(0)
    assert relative_key_error(k_old[0, :, KEEP + DISCARD:], k_fresh[0, :, KEEP:]) > 0.1


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_one_layer_logits_after_a_shift_match_the_reference_of_the_kept_tokens(tmp_path, case, seed):
    path = write_tiny_llama(tmp_path / "m.gguf", n_layer=1, seed=seed, **CASES[case])
    ids = prompt(seed)
    llm = Llama(path, n_ctx=64)
    llm.eval(ids)
    llm._core.seq_shift(0, KEEP, DISCARD)
    got = llm._core.forward(np.array(NEXT, np.int32), True)
    kept = ids[:KEEP] + ids[KEEP + DISCARD:] + NEXT
    ref, tol = expected_logits(path, kept)
    reference = load_reference(path)
    exact = reference.logits(kept)
    reference.kv_fp16 = True
    key_rounding = np.abs(reference.logits(kept) - exact).max(axis=1)
    tol = tol + INT8_MARGIN * np.maximum(key_rounding, key_rounding.mean())
    assert_logits_close(got, ref[-len(NEXT):], tol[-len(NEXT):], f"{case} after a shift")


def test_a_shift_touches_only_its_own_sequence(tmp_path):
    path = write_tiny_llama(tmp_path / "m.gguf", weight_type="Q8_0")
    llm = Llama(path, n_ctx=64, n_parallel=2)
    core = llm._core
    for seq, seed in ((0, 2), (1, 3)):
        ids = prompt(seed)
        core.forward_batch(np.array(ids, np.int32), np.full(len(ids), seq, np.int32),
                           np.arange(len(ids), dtype=np.int64), np.zeros(len(ids), np.uint8))
    before = core.seq_read(0)
    core.seq_shift(1, KEEP, DISCARD)
    after = core.seq_read(0)
    assert core.seq_n_past(0) == 40 and core.seq_n_past(1) == 40 - DISCARD
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("keep, discard", [(-1, 1), (0, 0), (30, 11), (0, 41), (39, 2)])
def test_an_impossible_shift_is_refused_and_changes_nothing(tmp_path, keep, discard):
    path = write_tiny_llama(tmp_path / "m.gguf")
    llm = Llama(path, n_ctx=64)
    llm.eval(prompt(4))
    before = llm._core.seq_read(0)
    with pytest.raises(IndexError, match="shift"):
        llm._core.seq_shift(0, keep, discard)
    assert llm.n_past == 40
    for a, b in zip(before, llm._core.seq_read(0)):
        np.testing.assert_array_equal(a, b)


# --- the generation API ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("shift") / "m.gguf", weight_type="Q8_0")


def test_generation_goes_past_the_window_with_context_shift(small):
    llm = Llama(small, n_ctx=32)
    ids = [1] + prompt(5, 12)
    plain = list(llm.stream_tokens(ids, max_tokens=100, temperature=0))
    assert len(plain) == 32 - len(ids) + 1 and plain[-1].finish_reason == "length"
    shifted = list(llm.stream_tokens(ids, max_tokens=100, temperature=0, context_shift=True))
    assert len(shifted) == 100 and shifted[-1].finish_reason == "length"
    # Until the window fills, the same tokens as without the shift.
    assert [r.token for r in shifted[:len(plain) - 1]] == [r.token for r in plain[:-1]]
    assert llm.cached_tokens[0] == 1  # the BOS is kept by default
    assert llm.n_past <= 32


def test_shifted_cache_is_not_reused_past_its_kept_prefix(small):
    """After a shift, a new request sharing the sequence's tokens re-evaluates them (their cache
    saw the dropped tokens), except the kept prefix: it answers as a fresh model does."""
    llm = Llama(small, n_ctx=32)
    list(llm.stream_tokens([1] + prompt(6, 12), max_tokens=60, temperature=0, context_shift=3))
    follow_up = llm.cached_tokens[:20] + [9]
    got = [r.token for r in llm.stream_tokens(follow_up, max_tokens=4, temperature=0)]
    assert llm.last_stats.reused_tokens == 3
    want = [r.token for r in Llama(small, n_ctx=32).stream_tokens(follow_up, max_tokens=4, temperature=0)]
    assert got == want


def test_completion_and_chat_take_context_shift(small):
    llm = Llama(small, n_ctx=32)
    ids = [1] + prompt(7, 10)
    r = llm.create_completion(ids, max_tokens=50, temperature=0, context_shift=4)
    assert r["usage"]["completion_tokens"] == 50
    assert list(llm.cached_tokens[:4]) == ids[:4]
    chat = Llama(small, n_ctx=160)
    messages = [{"role": "system", "content": "ab"}, {"role": "user", "content": "cd"}]
    r = chat.create_chat_completion(messages, max_tokens=200, temperature=0, context_shift=True)
    assert r["usage"]["prompt_tokens"] > 60 and r["choices"][0]["finish_reason"] in ("stop", "length")
    if r["choices"][0]["finish_reason"] == "length":  # went past the window, the system prompt kept
        assert r["usage"]["completion_tokens"] == 200
        chat_ids = chat_prompt_ids(chat, messages)
        n_system = system_prefix_length(chat, messages, chat_ids)
        assert 0 < n_system < len(chat_ids) and chat.cached_tokens[:n_system] == chat_ids[:n_system]
    assert "".join(llm.generate(ids, max_tokens=40, temperature=0, context_shift=True, stream=True))


@pytest.mark.parametrize("value, message", [("yes", "integer"), (-1, ">= 0"), (31, "no room"), (1.5, "integer")])
def test_bad_context_shift_values_are_named(small, value, message):
    llm = Llama(small, n_ctx=32)
    with pytest.raises(InvalidArgumentError, match=message):
        llm.create_completion([1, 5, 6], context_shift=value)
