"""The real SmolLM2-135M-Instruct Q4_1 file through the public API."""

import numpy as np
import pytest

from edgellama import ContextOverflowError, Llama

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=256, n_threads=2)


def test_config_matches_the_published_model(llm):
    c = llm.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab) == (30, 576, 9, 3, 1536, 49152)
    assert llm.model.tensors["token_embd.weight"].type.name == "Q8_0"
    assert "output.weight" not in llm.model.tensors  # tied output projection


def test_greedy_continuation_names_paris(llm):
    text = llm.generate(PROMPT, max_tokens=8, temperature=0)
    assert "Paris" in text


def test_prefill_then_decode_equals_full_reevaluation(llm):
    ids = llm.tokenize(PROMPT)
    llm.reset()
    stepwise = [llm.eval(ids)]
    continuation = []
    for _ in range(6):
        continuation.append(int(np.argmax(stepwise[-1])))
        stepwise.append(llm.eval([continuation[-1]]))
    llm.reset()
    full = llm.eval(ids + continuation, all_logits=True)
    for i, step in enumerate(stepwise):
        row = full[len(ids) - 1 + i]
        # Same kernels per token either way; only summation order could differ, so the bound is tight.
        assert np.max(np.abs(row - step)) <= 1e-4 * np.max(np.abs(row))
        assert int(np.argmax(row)) == int(np.argmax(step))


def test_one_and_two_threads_give_identical_logits(smollm2_path, llm):
    ids = llm.tokenize(PROMPT + " a city")
    single = Llama(smollm2_path, n_ctx=64, n_threads=1)
    llm.reset()
    assert np.array_equal(single.eval(ids, all_logits=True), llm.eval(ids, all_logits=True))


@pytest.mark.parametrize("text", [
    "Hello, world! How are you today?",
    "def f(x):\n\treturn x ** 2  # square\n",
    "Numbers: 3.14159, 1234567890 and 2^10 = 1024.",
    "Ünïcödé, 日本語のテキスト, emoji 👩‍👩‍👧 and العربية.",
])
def test_detokenize_inverts_tokenize(llm, text):
    assert llm.detokenize(llm.tokenize(text)) == text


def test_stream_pieces_join_to_the_same_text_as_non_streamed(llm):
    whole = llm.generate("Once upon a time", max_tokens=20, temperature=0.8, seed=7)
    pieces = list(llm.generate("Once upon a time", max_tokens=20, temperature=0.8, seed=7, stream=True))
    assert "".join(pieces) == whole
    assert len(pieces) > 1


def test_same_seed_same_text_other_seed_other_text(llm):
    a = llm.generate("My favourite food is", max_tokens=24, temperature=1.0, seed=1)
    b = llm.generate("My favourite food is", max_tokens=24, temperature=1.0, seed=1)
    c = llm.generate("My favourite food is", max_tokens=24, temperature=1.0, seed=2)
    assert a == b
    assert a != c


def test_stop_string_ends_generation_and_is_not_printed(llm):
    free = llm.generate(PROMPT, max_tokens=12, temperature=0)
    stopped = llm.generate(PROMPT, max_tokens=12, temperature=0, stop=["Paris"])
    assert "Paris" in free and "Paris" not in stopped
    assert free.startswith(stopped)


def test_second_generation_reuses_the_cached_prompt(llm):
    llm.generate(PROMPT, max_tokens=2, temperature=0)
    llm.generate(PROMPT, max_tokens=2, temperature=0)
    stats = llm.last_stats
    assert stats.reused_tokens == stats.prompt_tokens - 1


def test_prompt_longer_than_the_context_is_a_clear_error(smollm2_path):
    small = Llama(smollm2_path, n_ctx=8, n_threads=1)
    with pytest.raises(ContextOverflowError, match="n_ctx=8"):
        small.generate("word " * 20, max_tokens=4)
    assert small.n_past == 0


def test_generation_stops_when_the_context_is_full(smollm2_path):
    small = Llama(smollm2_path, n_ctx=12, n_threads=1)
    ids = small.tokenize(PROMPT)
    small.generate(ids, max_tokens=100, temperature=0)
    assert small.n_past == small.n_ctx


def test_token_id_outside_the_vocabulary_is_rejected(llm):
    llm.reset()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.eval([1, llm.n_vocab])
    assert llm.n_past == 0
