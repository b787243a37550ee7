"""Argument checking of the public API (issue 17, defect 8): one rule per kind of argument, an
InvalidArgumentError that names it, and nothing evaluated before the check (the KV cache is as it
was). The rules are written down in edgellama/arguments.py and SamplingParams' docstring."""

import math

import numpy as np
import pytest

from edgellama import InvalidArgumentError, Llama
from edgellama.sampling import Sampler, SamplingParams
from tiny_models import write_tiny_llama

N_VOCAB = 300
PREFIX = [5, 17, 200]  # what the cache holds before each failing call


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    path = write_tiny_llama(tmp_path_factory.mktemp("args") / "tiny.gguf", n_vocab=N_VOCAB, seed=1)
    return Llama(path, n_ctx=64, n_threads=1)


@pytest.fixture
def primed(llm):
    """llm with PREFIX in its cache; after the test the cache must still hold exactly that."""
    llm.reset()
    llm.eval(PREFIX)
    yield llm
    assert llm.n_past == len(PREFIX) and llm.cached_tokens == PREFIX, "a failing call changed the cache"


def raises_naming(argument):
    """pytest.raises for an InvalidArgumentError about `argument`, named in its message too."""
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(InvalidArgumentError, match=rf"^{argument}: ")
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            if suppressed:
                assert self.info.value.argument == argument
            return suppressed
    return Check()


# --- sampling settings ---------------------------------------------------------------------------

BAD_SETTINGS = [
    ("temperature", -1), ("temperature", "hot"), ("temperature", math.nan), ("temperature", math.inf),
    ("temperature", True), ("temperature", None), ("temperature", 10**400),
    ("top_k", -5), ("top_k", 1.5), ("top_k", True), ("top_k", "40"), ("top_k", np.float64(3)),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", math.nan), ("top_p", "0.9"),
    ("min_p", -0.1), ("min_p", 1.1), ("min_p", math.nan),
    ("typical_p", 0.0), ("typical_p", 1.01), ("typical_p", False),
    ("repeat_penalty", 0.0), ("repeat_penalty", -1.0), ("repeat_penalty", math.inf),
    ("frequency_penalty", math.nan), ("frequency_penalty", -math.inf), ("frequency_penalty", "0"),
    ("presence_penalty", math.nan), ("presence_penalty", [0.5]),
    ("penalty_last_n", -2), ("penalty_last_n", 1.5), ("penalty_last_n", True),
    ("logit_bias", [1, 2]), ("logit_bias", "7"), ("logit_bias", {-1: 1.0}), ("logit_bias", {"-1": 1.0}),
    ("logit_bias", {2**70: 1.0}), ("logit_bias", {1: math.nan}), ("logit_bias", {1: math.inf}),
    ("logit_bias", {True: 1.0}), ("logit_bias", {1.0: 1.0}), ("logit_bias", {" 7": 1.0}),
    ("logit_bias", {"٣": 1.0}), ("logit_bias", {1: "x"}), ("logit_bias", {1: None}), ("logit_bias", {7: 1, "7": 2}),
]


@pytest.mark.parametrize("name,value", BAD_SETTINGS)
def test_sampling_params_reject_a_wrong_type_or_range_naming_the_field(name, value):
    with raises_naming(name):
        SamplingParams(**{name: value})


@pytest.mark.parametrize("name,value", BAD_SETTINGS)
def test_a_completion_with_a_wrong_setting_fails_before_evaluating_anything(primed, name, value):
    for call in (lambda: primed.create_completion([1, 2], max_tokens=2, **{name: value}),
                 lambda: primed.stream_tokens([1, 2], max_tokens=2, **{name: value})):  # at the call, not next()
        with raises_naming(name):
            call()
    if name in ("temperature", "top_k", "top_p"):
        with raises_naming(name):
            primed.generate([1, 2], max_tokens=2, stream=True, **{name: value})


def test_good_settings_are_kept_in_their_canonical_types():
    p = SamplingParams(temperature=np.float32(0.5), top_k=np.int64(5), top_p=1, min_p=0, typical_p=np.float16(1),
                       penalty_last_n=np.uint8(3), logit_bias={"7": 2, np.int32(9): -math.inf, 11: np.float32(0.5)})
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.typical_p, p.penalty_last_n) == (0.5, 5, 1.0, 0.0, 1.0, 3)
    assert [type(v) for v in (p.temperature, p.top_k, p.top_p, p.penalty_last_n)] == [float, int, float, int]
    assert p.logit_bias == {7: 2.0, 9: -math.inf, 11: 0.5}
    assert all(type(k) is int and type(v) is float for k, v in p.logit_bias.items())


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "1", True, np.float64(2)])
def test_seed_must_be_none_or_an_integer_in_0_to_2_64(llm, seed):
    with raises_naming("seed"):
        Sampler(SamplingParams(), seed)
    with raises_naming("seed"):
        llm.generate([1, 2], max_tokens=2, seed=seed)


def test_seeds_at_the_ends_of_the_range_and_numpy_integers_are_accepted(llm):
    for seed in (0, 2**64 - 1, np.uint64(2**64 - 1), np.int8(3), None):
        llm.generate([1, 2], max_tokens=2, temperature=1.0, seed=seed)


# --- logit_bias against the model's vocabulary ---------------------------------------------------

def test_logit_bias_ids_must_lie_inside_the_vocabulary(primed):
    """-1 once biased the last token (numpy's negative index) and ids >= n_vocab were dropped
    silently; both are errors now, at the call."""
    for key in (N_VOCAB, "300", 2**70, -1):
        with raises_naming("logit_bias"):
            primed.create_completion([1, 2], max_tokens=2, temperature=0, logit_bias={key: 5.0})
        with raises_naming("logit_bias"):
            primed.stream_tokens([1, 2], max_tokens=2, temperature=0, logit_bias={key: 5.0})


def test_a_nan_bias_never_wins_greedy_decoding(primed):
    with raises_naming("logit_bias"):
        primed.create_completion([1, 2], max_tokens=3, temperature=0, logit_bias={7: math.nan})


def test_a_logit_bias_key_may_be_a_string_of_digits_as_json_sends_it(llm):
    """A large bias makes its token the greedy choice: the same with key 42 and key "42"."""
    for key in (42, "42", np.int16(42)):
        records = list(llm.stream_tokens([1, 2], max_tokens=3, temperature=0, logit_bias={key: 1000.0}))
        assert [r.token for r in records] == [42, 42, 42], key


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_banning_every_token_is_refused_at_the_call_greedy_or_sampled(primed, temperature):
    every = {token: -math.inf for token in range(N_VOCAB)}
    with raises_naming("logit_bias") as info:
        primed.stream_tokens([1, 2], max_tokens=3, temperature=temperature, logit_bias=every)
    assert "every token" in str(info.value)
    with raises_naming("logit_bias"):
        primed.create_completion([1, 2], max_tokens=3, temperature=temperature, logit_bias=every)
    all_but_one = dict(every)
    del all_but_one[123]
    records = list(primed.stream_tokens([1, 2], max_tokens=2, temperature=temperature, logit_bias=all_but_one))
    assert [r.token for r in records] == [123, 123]
    primed.reset()
    primed.eval(PREFIX)  # as the fixture expects it


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_sampler_without_a_vocabulary_refuses_logits_left_with_no_token(temperature):
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    everything = Sampler(SamplingParams(temperature=temperature, logit_bias={0: -math.inf, 1: -math.inf,
                                                                             2: -math.inf}), seed=0)
    with raises_naming("logit_bias"):
        everything(logits)
    beyond = Sampler(SamplingParams(temperature=temperature, logit_bias={3: 1.0}), seed=0)
    with raises_naming("logit_bias"):
        beyond(logits)


def test_a_tiny_temperature_samples_the_largest_logit_and_never_overflows():
    logits = np.array([1.0, 30.0, 29.9, -50.0], dtype=np.float32)
    for temperature in (1e-3, 1e-30, 1e-300, 5e-324):
        sampler = Sampler(SamplingParams(temperature=temperature, top_k=0, top_p=1.0, min_p=0.0, typical_p=0.5), 0)
        assert {sampler(logits) for _ in range(20)} == {1}, temperature


# --- stop strings and max_tokens -----------------------------------------------------------------

@pytest.mark.parametrize("stop", [5, [5], ["a", None], b"ab", [b"ab"], {"a": 1}, 1.5])
def test_stop_must_be_none_a_string_or_a_sequence_of_strings(primed, stop):
    with raises_naming("stop"):
        primed.generate([1, 2], max_tokens=2, stop=stop)
    with raises_naming("stop"):
        primed.create_completion([1, 2], max_tokens=2, stop=stop)
    with raises_naming("stop"):
        primed.stream_tokens([1, 2], max_tokens=2, stop=stop)


def test_a_stop_string_is_one_string_not_its_characters(llm):
    """generate(stop="ab") once stopped at the first "a" or "b" (the string's characters)."""
    text = llm.generate("hello", max_tokens=6, temperature=0)
    assert text and "\x00" not in text
    absent = text[0] + "\x00"  # its first character starts the text, but the string never occurs
    assert llm.generate("hello", max_tokens=6, temperature=0, stop=absent) == text
    assert llm.generate("hello", max_tokens=6, temperature=0, stop=(absent,)) == text


@pytest.mark.parametrize("max_tokens", [-1, 1.5, "5", True, math.nan])
def test_max_tokens_must_be_none_or_an_integer_at_least_0(primed, max_tokens):
    with raises_naming("max_tokens"):
        primed.generate([1, 2], max_tokens=max_tokens)
    with raises_naming("max_tokens"):
        primed.create_completion([1, 2], max_tokens=max_tokens)
    with raises_naming("max_tokens"):
        primed.stream_tokens([1, 2], max_tokens=max_tokens)


def test_max_tokens_none_generates_until_the_context_is_full(llm):
    llm.reset()
    records = list(llm.stream_tokens([1, 2], max_tokens=None, temperature=0))
    text = llm.generate([1, 2], max_tokens=None, temperature=0)
    assert llm.n_past == llm.n_ctx and records[-1].finish_reason == "length"
    assert text == "".join(r.text for r in records)


@pytest.mark.parametrize("stream", ["yes", 1, None])
def test_stream_is_a_bool(primed, stream):
    with raises_naming("stream"):
        primed.generate([1, 2], max_tokens=2, stream=stream)
    with raises_naming("stream"):
        primed.create_completion([1, 2], max_tokens=2, stream=stream)


# --- token ids and text --------------------------------------------------------------------------

BAD_IDS = [[1.7], [1, 2.0], [[1, 2]], [True], [1, False], np.array([1.0, 2.0]), np.array([[1, 2]]),
           np.array([True]), [np.float32(1)], [], np.array([], dtype=np.int32), "abc", b"ab", None, 5, {1: 2},
           [-1], [N_VOCAB], [2**70], [1, None], np.array([N_VOCAB], dtype=np.uint64), np.array([-1], dtype=np.int8)]


@pytest.mark.parametrize("ids", BAD_IDS, ids=[repr(v).replace(" ", "") for v in BAD_IDS])
def test_eval_takes_a_flat_sequence_of_integer_token_ids_in_the_vocabulary(primed, ids):
    with raises_naming("ids"):
        primed.eval(ids)
    with raises_naming("ids"):
        primed.eval_greedy(ids)


BAD_PROMPT_IDS = [v for v in BAD_IDS if not isinstance(v, str)]  # a str prompt is text


@pytest.mark.parametrize("ids", BAD_PROMPT_IDS, ids=[repr(v).replace(" ", "") for v in BAD_PROMPT_IDS])
def test_a_prompt_of_token_ids_follows_the_same_rule(primed, ids):
    with raises_naming("prompt"):
        primed.generate(ids, max_tokens=2)
    with raises_naming("prompt"):
        primed.create_completion(ids, max_tokens=2)
    with raises_naming("prompt"):
        primed.stream_tokens(ids, max_tokens=2)


def test_eval_accepts_integer_sequences_of_every_kind_and_they_agree(llm):
    """Each accepted form gives the logits of the plain list, bit for bit."""
    forms = [(4, 8, 12), range(4, 13, 4), np.array([4, 8, 12], dtype=np.int32), np.array([4, 8, 12], dtype=np.uint16),
             [np.int64(4), np.uint8(8), 12]]
    llm.reset()
    want = llm.eval([4, 8, 12], all_logits=True)
    for form in forms:
        llm.reset()
        assert np.array_equal(llm.eval(form, all_logits=True), want), form
        assert llm.cached_tokens == [4, 8, 12] and all(type(t) is int for t in llm.cached_tokens)


def test_all_logits_is_a_bool(primed):
    with raises_naming("all_logits"):
        primed.eval([1], all_logits=1)


@pytest.mark.parametrize("text", [None, b"hello", 5, ["hello"]])
def test_tokenize_takes_a_str(llm, text):
    with raises_naming("text"):
        llm.tokenize(text)


def test_tokenize_flags_are_bools(llm):
    with raises_naming("special"):
        llm.tokenize("hi", special="yes")
    with raises_naming("add_bos"):
        llm.tokenize("hi", add_bos=1)


def test_detokenize_takes_token_ids(llm):
    assert llm.detokenize([]) == ""
    assert llm.detokenize(np.array([104, 105], dtype=np.int32)) == llm.detokenize([104, 105]) == "hi"
    for ids in ([104.0], [True], [[104]], [N_VOCAB], "hi"):
        with raises_naming("ids"):
            llm.detokenize(ids)


@pytest.mark.parametrize("n", [True, 1.5, -1, len(PREFIX) + 1, "1", None])
def test_truncate_takes_an_integer_in_0_to_n_past(primed, n):
    with raises_naming("n"):
        primed.truncate(n)


def test_busy_timeout_is_none_or_a_number_at_least_0(llm):
    for bad in (-1, "1", math.nan, True):
        with raises_naming("busy_timeout"):
            llm.busy_timeout = bad
    llm.busy_timeout = 2
    assert llm.busy_timeout == 2.0
    llm.busy_timeout = None
