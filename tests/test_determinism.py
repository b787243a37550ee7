"""Determinism of the forward step: the thread count and the batching must not change a bit.

Rows are split across threads but each row's dot product is computed the same way by whichever
thread owns it, and the row-group kernels round every (row, token) product identically whatever
the batch's token count. Any change there would let an int8 activation rounding amplify a 1-ulp
difference into visibly different logits, so these tests demand bitwise equality."""

import numpy as np
import pytest

from edgellama import Llama
from tiny_models import K_QUANT_TYPES, K_SHAPE, WEIGHT_TYPES, write_tiny_llama

PROMPT = [5, 17, 200, 3, 99, 42, 7, 11, 250, 1, 64, 128, 31]  # 13 tokens: full and partial token batches


@pytest.fixture(scope="module", params=WEIGHT_TYPES)
def model_path(request, tmp_path_factory):
    weight_type = request.param
    shape = K_SHAPE if weight_type in K_QUANT_TYPES else dict(n_embd=96, n_head=6, n_head_kv=2, n_ff=160)
    path = tmp_path_factory.mktemp("det") / f"{weight_type}.gguf"
    return write_tiny_llama(path, weight_type=weight_type, n_layer=2, seed=3, **shape)


def test_one_and_two_threads_are_bitwise_identical(model_path):
    one = Llama(model_path, n_ctx=64, n_threads=1).eval(PROMPT, all_logits=True)
    two = Llama(model_path, n_ctx=64, n_threads=2).eval(PROMPT, all_logits=True)
    assert np.array_equal(one, two)


def test_batched_prefill_equals_token_by_token_decode(model_path):
    llm = Llama(model_path, n_ctx=64, n_threads=2)
    batched = llm.eval(PROMPT, all_logits=True)
    llm.reset()
    stepwise = np.stack([llm.eval([token]) for token in PROMPT])
    assert np.array_equal(batched, stepwise)


def test_prefill_split_in_chunks_equals_one_call(model_path):
    llm = Llama(model_path, n_ctx=64, n_threads=2)
    whole = llm.eval(PROMPT, all_logits=True)
    llm.reset()
    parts = np.concatenate([llm.eval(PROMPT[:5], all_logits=True), llm.eval(PROMPT[5:], all_logits=True)])
    assert np.array_equal(whole, parts)
