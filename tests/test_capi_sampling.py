"""The C ABI's sampling chain (edgellama_sampler_*, csrc/sampling/sampler.cpp) against independent
references: numpy's argmax, Python's Sampler (edgellama/sampling.py) for the penalties and the
errors, a numpy computation with full sorts of the distribution each setting implies (checked
against Python's Sampler too), and a Python implementation of the documented generator
(xoshiro256** seeded by SplitMix64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from edgellama import capi
from edgellama.errors import InvalidArgumentError, ModelOutputError
from edgellama.sampling import DEFAULTS, Sampler, SamplingParams

F32_MAX = float(np.finfo(np.float32).max)
OPEN = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)  # every narrowing step disabled


def f32(value: float) -> float:
    """value as the C ABI's float holds it, so that Python's settings equal the library's."""
    return float(np.float32(value))


def c_sampler(**fields) -> capi.Sampler:
    return capi.Sampler(**{k: (f32(v) if isinstance(v, float) else v) for k, v in fields.items()})


def py_sampler(**fields) -> Sampler:
    fields = {k: (f32(v) if isinstance(v, float) else v) for k, v in fields.items() if k != "seed"}
    return Sampler(SamplingParams(**fields), 0)


def draws(sampler: capi.Sampler, logits: np.ndarray, n: int) -> np.ndarray:
    row = np.ascontiguousarray(logits, dtype=np.float32)
    return np.array([sampler.sample(row) for _ in range(n)])


def reference_probs(logits, temperature, top_k, top_p, min_p) -> np.ndarray:
    """The distribution the chain draws from, written from the documented semantics with full
    sorts: the k largest logits (ties: lower ids); z = (x - max) / temperature in float32;
    min-p keeps z >= log(min_p); top-p keeps the shortest run by decreasing z (ties: lower ids)
    whose renormalised probability reaches top_p. Zero outside what is kept."""
    x = np.asarray(logits, dtype=np.float32)
    n = x.shape[0]
    ids = np.arange(n)
    keep = np.zeros(n, dtype=bool)
    by_logit = np.lexsort((ids, -x))
    keep[by_logit[:top_k] if 0 < top_k < n else by_logit] = True
    z = (x - x.max()) * np.float32(min(1.0 / f32(temperature), F32_MAX))
    keep &= (z >= np.float32(math.log(f32(min_p)))) if min_p > 0 else (z > -np.inf)
    probs = np.where(keep, np.exp(z.astype(np.float64)), 0.0)
    probs /= probs.sum()
    if f32(top_p) < 1.0 and keep.sum() > 1:
        order = np.lexsort((ids, -z))
        order = order[keep[order]]
        end = int(np.searchsorted(np.cumsum(probs[order]), f32(top_p) * (1 - 1e-12)))
        nucleus = np.zeros(n, dtype=bool)
        nucleus[order[:min(end, order.shape[0] - 1) + 1]] = True
        probs = np.where(nucleus, probs, 0.0)
        probs /= probs.sum()
    return probs


def assert_follows(drawn: np.ndarray, probs: np.ndarray, groups: int = 30) -> None:
    """No draw outside the support; inside it a chi-square test at the 0.1% level, over the
    tokens themselves or, for a large support, over `groups` runs of tokens (by decreasing
    probability) of about equal mass, so that a missing tail or head still shows."""
    observed = np.bincount(drawn, minlength=probs.shape[0])
    support = np.flatnonzero(probs > 0)
    assert observed.sum() == observed[support].sum(), "a token outside the kept set was drawn"
    if support.shape[0] < 2:
        return
    if support.shape[0] > groups:
        support = support[np.argsort(-probs[support], kind="stable")]
        cut = np.searchsorted(np.cumsum(probs[support]), np.arange(1, groups) / groups)
        obs = np.array([part.sum() for part in np.split(observed[support], cut)])
        exp = np.array([part.sum() for part in np.split(probs[support], cut)])
    else:
        obs, exp = observed[support], probs[support]
    keep = exp > 0
    exp = exp[keep] / exp[keep].sum() * obs.sum()
    pvalue = stats.chisquare(obs[keep], exp).pvalue
    assert pvalue > 1e-3, f"observed {obs} vs expected {np.round(exp, 1)} (p={pvalue:.2e})"


def status_of(call) -> capi.CapiError:
    with pytest.raises(capi.CapiError) as caught:
        call()
    return caught.value


# -- settings ----------------------------------------------------------------------------------

def test_default_params_are_pythons_defaults():
    ffi, lib = capi.load_library()
    p = ffi.new("edgellama_sampler_params*")
    lib.edgellama_sampler_default_params(p)
    assert p.struct_size == ffi.sizeof("edgellama_sampler_params")
    for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
                 "presence_penalty", "penalty_last_n"):
        assert getattr(p, name) == f32(getattr(DEFAULTS, name)), name
    assert p.seed == 0


BAD_SETTINGS = [
    ("temperature", -0.5), ("temperature", math.nan), ("temperature", math.inf),
    ("top_k", -1),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", math.nan), ("top_p", -0.1),
    ("min_p", -0.01), ("min_p", 1.01), ("min_p", math.nan),
    ("repeat_penalty", 0.0), ("repeat_penalty", -1.0), ("repeat_penalty", math.inf),
    ("frequency_penalty", math.nan), ("frequency_penalty", -math.inf),
    ("presence_penalty", math.inf), ("presence_penalty", math.nan),
    ("penalty_last_n", -2),
]


@pytest.mark.parametrize("field,value", BAD_SETTINGS)
def test_invalid_settings_are_refused_as_python_refuses_them(field, value):
    with pytest.raises(InvalidArgumentError) as python_error:
        SamplingParams(**{field: value})
    assert python_error.value.argument == field
    error = status_of(lambda: capi.Sampler(**{field: value}))
    assert error.status_name == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    assert error.message.startswith(field + ":"), error.message


def test_boundary_settings_are_accepted_as_python_accepts_them():
    for fields in (dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, penalty_last_n=-1),
                   dict(min_p=1.0, repeat_penalty=1e-3, frequency_penalty=-2.0, presence_penalty=-2.0),
                   dict(top_p=1e-6, top_k=2**31 - 1, penalty_last_n=2**31 - 1)):
        SamplingParams(**fields)
        c_sampler(**fields, seed=2**64 - 1).close()


def test_bad_calls_are_invalid_arguments_naming_the_argument():
    ffi, lib = capi.load_library()
    params = ffi.new("edgellama_sampler_params*")
    lib.edgellama_sampler_default_params(params)
    out = ffi.new("edgellama_sampler**")
    assert lib.edgellama_sampler_new(params, out) == lib.EDGELLAMA_OK
    sampler, token = out[0], ffi.new("edgellama_token*")
    row = np.zeros(8, dtype=np.float32)
    logits = ffi.cast("float*", row.ctypes.data)

    def last_error():
        return ffi.string(lib.edgellama_last_error()).decode()

    for n_vocab in (0, -1):
        assert lib.edgellama_sampler_sample(sampler, logits, n_vocab, token) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
        assert last_error().startswith("n_vocab:")
    assert lib.edgellama_sampler_sample(sampler, ffi.NULL, 8, token) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
    assert lib.edgellama_sampler_accept(sampler, -1) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
    assert last_error().startswith("token:")
    assert lib.edgellama_sampler_sample(sampler, logits, 8, token) == lib.EDGELLAMA_OK  # still usable
    assert 0 <= token[0] < 8
    lib.edgellama_sampler_free(sampler)
    lib.edgellama_sampler_free(ffi.NULL)


# -- logits the model got wrong ----------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_nan_logits_are_model_output_errors_as_in_python(temperature):
    rng = np.random.default_rng(0)
    s = c_sampler(temperature=temperature, top_k=0, seed=1)
    for where in (0, 17, 99):
        x = rng.standard_normal(100).astype(np.float32)
        x[where] = np.nan
        with pytest.raises(ModelOutputError):
            py_sampler(temperature=temperature, top_k=0)(x)
        error = status_of(lambda: s.sample(x))
        assert error.status_name == "EDGELLAMA_ERR_MODEL_OUTPUT", error
    x = rng.standard_normal(100).astype(np.float32)
    assert s.sample(x) in range(100)  # a failed call leaves the sampler usable
    # With top-k, Python's chain may never look at a NaN outside its candidates; the library
    # refuses a NaN wherever it is.
    x = rng.standard_normal(1000).astype(np.float32)
    x[1] = np.nan
    error = status_of(lambda: c_sampler(temperature=temperature, top_k=40).sample(x))
    assert error.status_name == "EDGELLAMA_ERR_MODEL_OUTPUT"


def test_infinite_and_banned_logits():
    x = np.full(50, -np.inf, dtype=np.float32)
    for temperature in (0.0, 1.0):
        error = status_of(lambda: c_sampler(temperature=temperature).sample(x))
        assert error.status_name == "EDGELLAMA_ERR_INVALID_ARGUMENT" and error.message.startswith("logits:")
        with pytest.raises(ValueError):
            py_sampler(temperature=temperature)(x)
    x[[7, 30]] = [1.0, 3.0]  # only the allowed tokens can come out, at any temperature
    for temperature in (0.0, 1e-30, 0.5, 100.0):
        assert set(draws(c_sampler(**{**OPEN, "temperature": temperature}), x, 200)) <= {7, 30}
    x[12] = np.inf  # greedy takes it (as numpy's argmax); a distribution with +inf does not exist
    assert c_sampler(temperature=0.0).sample(x) == 12 == py_sampler(temperature=0.0)(x)
    with pytest.raises(ModelOutputError):
        py_sampler(temperature=0.8)(x)
    assert status_of(lambda: c_sampler(temperature=0.8).sample(x)).status_name == "EDGELLAMA_ERR_MODEL_OUTPUT"


# -- greedy and penalties ----------------------------------------------------------------------

def test_greedy_is_the_first_argmax():
    rng = np.random.default_rng(1)
    s = c_sampler(temperature=0.0)
    for n in (1, 2, 7, 1000, 128_256):
        x = rng.standard_normal(n).astype(np.float32)
        if n > 2:
            x[rng.choice(n, 3, replace=False)] = x.max() + 1  # a three-way tie at the top
        assert s.sample(x) == int(np.argmax(x))
    assert s.sample(np.zeros(10, dtype=np.float32)) == 0


def random_penalties(rng):
    return dict(repeat_penalty=float(rng.choice([1.0, 1.3, 0.6, 2.5])),
                frequency_penalty=float(rng.choice([0.0, 0.4, -0.3, 1.7])),
                presence_penalty=float(rng.choice([0.0, 0.9, -1.1])),
                penalty_last_n=int(rng.choice([-1, 0, 1, 5, 64])))


def test_penalties_change_the_argmax_as_pythons_sampler_does():
    rng = np.random.default_rng(2)
    changed = 0
    for trial in range(250):
        n = int(rng.choice([3, 40, 500, 5000]))
        x = (rng.standard_normal(n) * rng.uniform(0.2, 3.0)).astype(np.float32)
        # a history with repeats, ids past the vocabulary (ignored), and longer than the window
        history = rng.integers(0, n + 3, int(rng.integers(0, 300))).tolist()
        if trial % 2:
            history += [int(np.argmax(x))] * int(rng.integers(1, 4))  # penalize the favourite
        fields = random_penalties(rng)
        c = c_sampler(temperature=0.0, **fields)
        c.accept(history)
        python = py_sampler(temperature=0.0, **fields)
        token = c.sample(x)
        assert token == python(x, history), (trial, fields)
        assert c.sample(x) == token  # sample does not record the token
        changed += token != int(np.argmax(x))
        c.reset()
        assert c.sample(x) == int(np.argmax(x))  # reset forgets the history
    assert changed > 50  # the penalties did move the choice


def test_one_sampler_follows_the_vocabulary_size_of_each_call():
    rng = np.random.default_rng(3)
    fields = dict(temperature=0.0, repeat_penalty=1.8, frequency_penalty=0.5, presence_penalty=0.3, penalty_last_n=-1)
    c, python, history = c_sampler(**fields), py_sampler(**fields), []
    for n in (10, 3000, 10, 70000, 200, 3000):
        for _ in range(5):
            x = rng.standard_normal(n).astype(np.float32)
            token = c.sample(x)
            assert token == python(x, history)
            c.accept(token)
            history.append(token)


# -- the distribution --------------------------------------------------------------------------

def random_settings(rng):
    return dict(temperature=float(rng.choice([0.3, 0.7, 1.0, 1.6])), top_k=int(rng.choice([0, 1, 3, 40, 400])),
                top_p=float(rng.choice([1.0, 0.3, 0.8, 0.95])), min_p=float(rng.choice([0.0, 0.02, 0.1, 0.5])))


def test_draws_never_leave_the_set_pythons_chain_keeps():
    rng = np.random.default_rng(4)
    for trial in range(60):
        n = int(rng.choice([2, 30, 1000, 20_000]))
        x = (rng.standard_normal(n) * rng.uniform(0.5, 6.0)).astype(np.float32)
        settings = random_settings(rng)
        probs = reference_probs(x, **settings)
        kept = probs > 0
        assert kept[draws(c_sampler(**settings, seed=trial), x, 200)].all(), (trial, settings)
        if trial % 4 == 0:  # the reference is Python's chain
            python = py_sampler(**settings)
            assert kept[[python(x) for _ in range(100)]].all(), (trial, settings)


DISTRIBUTIONS = [  # (n_vocab, logit scale, settings, draws)
    (6, 1.0, OPEN, 20_000),
    (50, 2.0, dict(temperature=0.7, top_k=10, top_p=0.9, min_p=0.0), 20_000),
    (200, 2.0, dict(temperature=1.0, top_k=40, top_p=0.95, min_p=0.05), 20_000),
    (1000, 2.0, dict(temperature=1.5, top_k=0, top_p=0.8, min_p=0.02), 20_000),
    (1000, 1.0, dict(temperature=2.0, top_k=0, top_p=1.0, min_p=0.0), 20_000),
    # a nucleus of thousands of tokens (top-p's histogram path), then of hundreds in 12k
    (12_000, 1.0, dict(temperature=1.0, top_k=0, top_p=0.9, min_p=0.0), 10_000),
    (12_000, 3.0, dict(temperature=0.8, top_k=0, top_p=0.5, min_p=0.0), 10_000),
]


@pytest.mark.parametrize("n,scale,settings,n_draws", DISTRIBUTIONS)
def test_draws_follow_the_renormalised_distribution(n, scale, settings, n_draws):
    x = (np.random.default_rng(n).standard_normal(n) * scale).astype(np.float32)
    probs = reference_probs(x, **settings)
    assert_follows(draws(c_sampler(**settings, seed=5), x, n_draws), probs)


def test_draws_with_penalties_follow_the_penalized_distribution():
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(300) * 2).astype(np.float32)
    history = np.argsort(-x)[:20].tolist() * 2 + [400, 2]  # the favourites, twice; one id past the vocabulary
    fields = dict(repeat_penalty=1.5, frequency_penalty=0.3, presence_penalty=0.2, penalty_last_n=30)
    settings = dict(temperature=0.9, top_k=50, top_p=0.9, min_p=0.01)
    c = c_sampler(**settings, **fields, seed=6)
    c.accept(history)
    adjusted = py_sampler(**fields).adjusted_logits(x, history)
    assert_follows(draws(c, x, 20_000), reference_probs(adjusted, **settings))


def test_extreme_temperatures():
    x = (np.random.default_rng(10).standard_normal(5000) * 3).astype(np.float32)
    # At the largest float temperature every z is a denormal sliver below 0, all weights are 1:
    # top-p keeps the better half by logit, drawn uniformly (the histogram spans a few ulps).
    settings = dict(OPEN, temperature=1e38, top_p=0.5)
    probs = reference_probs(x, **settings)
    assert np.array_equal(np.flatnonzero(probs), np.sort(np.argsort(-x)[:2500]))
    assert_follows(draws(c_sampler(**settings, seed=10), x, 5000), probs)
    # The smallest: the argmax only, although the generator runs.
    assert set(draws(c_sampler(**dict(OPEN, temperature=1e-38), seed=10), x, 100)) == {int(np.argmax(x))}


def test_top_k_ties_keep_the_lower_ids():
    x = np.zeros(100, dtype=np.float32)
    x[[3, 50, 97]] = -1.0
    drawn = draws(c_sampler(**{**OPEN, "top_k": 10}, seed=7), x, 4000)
    assert set(drawn) == {0, 1, 2, 4, 5, 6, 7, 8, 9, 10}


def test_top_p_boundary_among_ties_keeps_the_lower_ids():
    # 2200 equally likely tokens scattered over an 8k vocabulary, the others spread below them:
    # the nucleus ends inside the tied group, at its lowest ids, as in Python's chain. (Thousands
    # of tokens pass top-p's first filter, so the library bins them: its histogram path.)
    rng = np.random.default_rng(8)
    x = rng.uniform(-8.0, -1.0, 8000).astype(np.float32)
    tied = np.sort(rng.choice(8000, 2200, replace=False))
    x[tied] = 0.0
    settings = dict(OPEN, top_p=0.44)
    probs = reference_probs(x, **settings)
    nucleus = np.flatnonzero(probs)
    assert 1000 < nucleus.shape[0] < 1200 and np.array_equal(nucleus, tied[:nucleus.shape[0]])
    assert set(py_sampler(**settings)(x) for _ in range(300)) <= set(nucleus)
    drawn = draws(c_sampler(**settings, seed=8), x, 12_000)
    assert set(nucleus[-5:]) <= set(drawn)  # each of them is expected 11 times
    assert_follows(drawn, probs)


# -- the generator -----------------------------------------------------------------------------

MASK = 2**64 - 1


def xoshiro_uniforms(seed: int, n: int):
    """The documented generator: xoshiro256** with its state from SplitMix64 at the seed; a
    uniform is the top 53 bits of an output times 2^-53."""
    def rotl(v, k):
        return ((v << k) | (v >> (64 - k))) & MASK

    state, s = seed, []
    for _ in range(4):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        s.append(z ^ (z >> 31))
    for _ in range(n):
        out = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        yield (out >> 11) * 2.0**-53


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**64 - 1])
def test_draws_are_the_documented_generators(seed):
    # Four equal weights: the draw is the first token whose cumulative weight exceeds 4u,
    # i.e. floor(4u), exactly (powers of two).
    x = np.zeros(4, dtype=np.float32)
    expected = [int(u * 4) for u in xoshiro_uniforms(seed, 500)]
    assert draws(c_sampler(**OPEN, seed=seed), x, 500).tolist() == expected


def test_equal_seeds_equal_draws_and_reset_reproduces_them():
    x = (np.random.default_rng(9).standard_normal(5000) * 2).astype(np.float32)
    settings = dict(temperature=1.0, top_k=0, top_p=0.9, min_p=0.0, repeat_penalty=1.3, penalty_last_n=16)
    a, b, other = (c_sampler(**settings, seed=seed) for seed in (42, 42, 43))

    def run(sampler):
        out = []
        for _ in range(200):
            out.append(sampler.sample(x))
            sampler.accept(out[-1])
        return out

    first = run(a)
    assert first == run(b)
    assert first != run(other)
    a.reset()
    assert run(a) == first
