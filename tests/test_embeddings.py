"""Embeddings (Llama.embed / create_embedding): the mean over an input's tokens of the final hidden
state, unit length, against the float64 reference forward (tests/reference.py) of the same file."""

import numpy as np
import pytest

from edgellama import ContextOverflowError, InvalidArgumentError, Llama
from reference import load_reference
from tiny_models import write_tiny_llama

IDS = [5, 17, 200, 3, 99, 42, 7, 11, 250, 1, 64, 128, 31, 90, 2, 77, 180, 66, 23, 4] * 4  # 80: over one core batch


def reference_embedding(path, ids, act_quant):
    model = load_reference(path)
    model.kv_fp16 = True  # as edgellama's KV cache keeps them (tests/logit_checks.py)
    try:
        hidden = model.hidden(ids, act_quant=act_quant)
    finally:
        model.kv_fp16 = False
    mean = hidden.mean(axis=0)
    return mean / np.linalg.norm(mean)


@pytest.mark.parametrize("weight_type", ["F32", "Q8_0", "Q4_K"])
def test_embedding_is_the_normalized_mean_hidden_state_of_the_reference(tmp_path, weight_type):
    shape = dict(n_embd=256, n_head=4, n_head_kv=2, n_ff=512) if weight_type == "Q4_K" else {}
    path = write_tiny_llama(tmp_path / "m.gguf", weight_type=weight_type, seed=2, **shape)
    llm = Llama(path, n_ctx=128, n_threads=2, n_parallel=2)
    got = np.array(llm.embed(IDS)[0])
    exact = reference_embedding(path, IDS, act_quant=False)
    assert abs(np.linalg.norm(got) - 1) < 1e-5
    if weight_type == "F32":
        np.testing.assert_allclose(got, exact, atol=1e-4 * np.abs(exact).max())
    else:  # int8 activations, as the logits tests simulate them: within 2.5x the simulated rounding
        simulated = reference_embedding(path, IDS, act_quant=True)
        assert np.abs(got - exact).max() <= 2.5 * np.abs(simulated - exact).max() + 1e-4


def test_inputs_of_every_form_and_the_openai_shape(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=256, n_threads=2)
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue rose by 4%."]
    response = llm.create_embedding(texts)
    vectors = np.array([d["embedding"] for d in response["data"]])
    assert [d["index"] for d in response["data"]] == [0, 1, 2] and response["object"] == "list"
    assert vectors.shape == (3, llm.config.n_embd)
    assert response["usage"]["prompt_tokens"] == sum(len(llm.tokenize(t)) for t in texts)
    # The same text as a str, in a list, or as its token ids gives the same vector.
    ids = llm.tokenize(texts[0])
    assert np.array_equal(np.array(llm.embed(texts[0])[0]), vectors[0])
    assert np.array_equal(np.array(llm.embed([ids])[0]), vectors[0])
    cos = vectors @ vectors.T
    assert cos[0, 1] > cos[0, 2]  # the two sentences about a cat on a mat are closer


@pytest.mark.parametrize("value", [[], "", 5, [[]], [1.5], ["a", 3]])
def test_bad_inputs_are_refused(smollm2_path, value):
    llm = Llama(smollm2_path, n_ctx=64, n_threads=1)
    with pytest.raises(InvalidArgumentError, match="input"):
        llm.embed(value)


def test_an_input_over_the_window_is_refused(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=16, n_threads=1)
    with pytest.raises(ContextOverflowError):
        llm.embed("word " * 40)
