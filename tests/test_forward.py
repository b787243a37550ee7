"""edgellama's forward step against the independent float64 reference (tests/reference.py).

Every case writes a tiny random llama GGUF (tests/tiny_models.py), runs it through
edgellama.Llama and compares logits with logit_checks.expected_logits: float weight types must
match to 1e-4 of the logits' scale, block-quantized ones within 2.5x the error that the int8
rounding of activations alone causes for that very file and prompt (the derivation and its
measurements are in tests/logit_checks.py; test_reference.py checks the bound both ways).
"""

from __future__ import annotations


import numpy as np
import pytest

from logit_checks import assert_logits_close, expected_logits
from tiny_models import FORWARD_CASES, write_tiny_llama

from edgellama import Llama
from edgellama.errors import ContextOverflowError

N_THREADS = 2
PROMPT = [5, 17, 200, 3, 99, 42, 7]              # prefill
DECODE = [261, 150, 2, 31, 64]                   # then one token at a time


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forward")
    return {name: write_tiny_llama(folder / f"{name}.gguf", **kw) for name, kw in FORWARD_CASES.items()}


def open_llama(path, n_ctx=256):
    return Llama(str(path), n_ctx=n_ctx, n_threads=N_THREADS)


@pytest.mark.parametrize("case", sorted(FORWARD_CASES))
def test_prefill_then_decode_matches_reference(case_files, case):
    """Every weight type, GQA ratio 1/2/3/4/8, head_dim != n_embd/n_head, tied and untied
    output, rope_freqs, a Q8_0 embedding with Q4_1 weights: a 7-token prefill (all positions'
    logits) followed by 5 single-token decode steps, each checked against the reference of the
    whole sequence so far."""
    path = case_files[case]
    seq = PROMPT + DECODE
    ref, tol = expected_logits(path, seq)
    llm = open_llama(path)
    assert llm.n_vocab == ref.shape[1]
    assert llm.n_past == 0

    got = llm.eval(PROMPT, all_logits=True)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.shape == (len(PROMPT), ref.shape[1])
    assert_logits_close(got, ref[:len(PROMPT)], tol[:len(PROMPT)], f"{case} prefill")
    assert llm.n_past == len(PROMPT)

    for i, tok in enumerate(DECODE):
        pos = len(PROMPT) + i
        step = llm.eval([tok])
        assert step.shape == (ref.shape[1],) and step.dtype == np.float32
        assert_logits_close(step[None, :], ref[pos:pos + 1], tol[pos:pos + 1], f"{case} decode position {pos}")
        assert llm.n_past == pos + 1


# Query heads per KV head 1 to 8 at head_dim 64 and 128 (the AVX-512 attention's instantiations),
# and head_dim 16 (the portable path): n_head_kv, n_head, head_dim.
ATTENTION_SHAPES = [(1, g, 64) for g in range(1, 9)] + [(2, 4, 128), (2, 6, 16)]


@pytest.mark.parametrize("n_head_kv,n_head,head_dim", ATTENTION_SHAPES)
def test_attention_over_several_key_blocks_matches_reference(tmp_path, n_head_kv, n_head, head_dim):
    """A 37-token prefill and 6 decode steps: keys are cached in blocks of 16 positions, so the
    prefill spans two whole blocks and a partial one, and decoding crosses into a fourth; the
    prefill's logits equal those of the same tokens decoded one at a time, bit for bit."""
    path = write_tiny_llama(tmp_path / "attn.gguf", n_embd=64, n_head=n_head, n_head_kv=n_head_kv,
                            head_dim=head_dim, n_layer=1, seed=n_head * 1000 + head_dim)
    seq = [int(t) for t in np.random.default_rng(head_dim + n_head).integers(0, 300, size=43)]
    ref, tol = expected_logits(path, seq)
    llm = open_llama(path)
    prefill = llm.eval(seq[:37], all_logits=True)
    assert_logits_close(prefill, ref[:37], tol[:37], "prefill")
    for pos in range(37, len(seq)):
        assert_logits_close(llm.eval([seq[pos]])[None, :], ref[pos:pos + 1], tol[pos:pos + 1], f"decode {pos}")
    # A prefill attends tiles of consecutive tokens together; token by token must give the same bits.
    llm.reset()
    assert np.array_equal(np.stack([llm.eval([token]) for token in seq[:37]]), prefill)


def test_last_logits_equal_last_row_of_all_logits(case_files):
    path = case_files["Q4_1"]
    a = open_llama(path).eval(PROMPT)
    b = open_llama(path).eval(PROMPT, all_logits=True)
    assert a.shape == (b.shape[1],)
    np.testing.assert_allclose(a, b[-1], rtol=0, atol=1e-5 * np.abs(b[-1]).max())


@pytest.mark.parametrize("case", ["F32", "Q4_K", "Q8_0_embd-Q4_1"])
def test_truncate_then_re_eval_matches_reference(case_files, case):
    """truncate(n) drops the cache beyond n tokens; new tokens then continue from position n."""
    path = case_files[case]
    llm = open_llama(path)
    llm.eval(PROMPT + DECODE)
    llm.truncate(4)
    assert llm.n_past == 4
    other = [77, 12, 250]
    seq = PROMPT[:4] + other
    ref, tol = expected_logits(path, seq)
    got = llm.eval(other, all_logits=True)
    assert_logits_close(got, ref[4:], tol[4:], f"{case} after truncate(4)")
    assert llm.n_past == len(seq)
    # truncate to the current length is a no-op; to 0 is a reset
    llm.truncate(llm.n_past)
    assert llm.n_past == len(seq)
    llm.truncate(0)
    assert llm.n_past == 0
    ref, tol = expected_logits(path, PROMPT)
    assert_logits_close(llm.eval(PROMPT, all_logits=True), ref, tol, f"{case} after truncate(0)")


def test_reset_starts_a_fresh_sequence(case_files):
    path = case_files["Q4_0"]
    llm = open_llama(path)
    first = llm.eval(PROMPT)
    llm.eval(DECODE)
    llm.reset()
    assert llm.n_past == 0
    again = llm.eval(PROMPT)
    np.testing.assert_allclose(again, first, rtol=0, atol=1e-5 * np.abs(first).max())


def test_chunked_prefill_equals_single_prefill(case_files):
    """Evaluating a prompt in pieces gives the same logits as in one call (the reference of the
    whole sequence judges both)."""
    path = case_files["gqa3-Q4_1"]
    seq = PROMPT + DECODE
    ref, tol = expected_logits(path, seq)
    llm = open_llama(path)
    parts = [llm.eval(seq[:3], all_logits=True), llm.eval(seq[3:8], all_logits=True),
             llm.eval(seq[8:], all_logits=True)]
    assert_logits_close(np.concatenate(parts), ref, tol, "chunked prefill")


def test_context_overflow_raises_and_keeps_the_cache(case_files):
    path = case_files["F32"]
    llm = open_llama(path, n_ctx=16)
    assert llm.n_ctx == 16
    llm.eval(list(range(10)))
    with pytest.raises(ContextOverflowError):
        llm.eval(list(range(7)))                     # 10 + 7 > 16
    assert llm.n_past == 10                          # a refused eval leaves the cache as it was
    seq = list(range(10)) + [20, 21, 22, 23, 24, 25]
    ref, tol = expected_logits(path, seq)
    got = llm.eval(seq[10:], all_logits=True)        # exactly fills the context
    assert_logits_close(got, ref[10:], tol[10:], "eval up to n_ctx")
    assert llm.n_past == 16
    with pytest.raises(ContextOverflowError):
        llm.eval([1])
    with pytest.raises(ContextOverflowError):
        open_llama(path, n_ctx=16).eval(list(range(17)))


def test_smollm2_matches_reference(smollm2_path):
    """The real model (30 layers, GQA 3, Q4_1 weights, Q8_0 tied embedding) on a short prompt."""
    ids = [504, 3575, 282, 4649, 314]                # "The capital of France is"
    ref, tol = expected_logits(smollm2_path, ids)
    llm = Llama(str(smollm2_path), n_ctx=64, n_threads=N_THREADS)
    assert (llm.n_vocab, llm.n_ctx) == (49152, 64)
    got = llm.eval(ids, all_logits=True)
    assert_logits_close(got, ref, tol, "SmolLM2 prefill")
    assert int(got[-1].argmax()) == 7042             # " Paris"
