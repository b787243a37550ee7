"""The sampling chain on fixed logits: chi-square tests against analytic distributions, penalties,
logit bias, seeds, and the partial-sort helpers against full sorts."""

import numpy as np
import pytest
from scipy import stats

from edgellama.errors import ModelOutputError

from edgellama.sampling import (Sampler, SamplingParams, log_softmax_at, smallest_set_reaching,
                                top_k_indices)

P = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
LOGITS = np.log(P).astype(np.float32) + 3.0  # an offset must not matter
N_DRAWS = 20000


def params(**kw):
    base = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)
    base.update(kw)
    return SamplingParams(**base)


def counts(p, logits=LOGITS, n=N_DRAWS, seed=0):
    sampler = Sampler(p, seed)
    return np.bincount([sampler(logits) for _ in range(n)], minlength=len(logits))


def assert_follows(observed, expected):
    """Tokens outside the support are never drawn; inside, a chi-square test at the 0.1% level."""
    expected = np.asarray(expected, dtype=np.float64)
    support = expected > 0
    assert observed[~support].sum() == 0, f"drew tokens outside the support: {observed}"
    exp_counts = expected[support] / expected[support].sum() * observed.sum()
    if support.sum() > 1:
        pvalue = stats.chisquare(observed[support], exp_counts).pvalue
        assert pvalue > 1e-3, f"observed {observed} vs expected {exp_counts} (p={pvalue:.2e})"


def renorm(mask):
    q = np.where(mask, P, 0.0)
    return q / q.sum()


def test_plain_softmax():
    assert_follows(counts(params()), P)


def test_temperature_sharpens_as_a_power():
    # softmax(log p / T) = p^(1/T), renormalised.
    q = P ** 2
    assert_follows(counts(params(temperature=0.5)), q / q.sum())


def test_top_k():
    assert_follows(counts(params(top_k=3)), renorm(np.arange(6) < 3))


def test_top_p_keeps_the_smallest_nucleus():
    # 0.4 < 0.6 <= 0.4 + 0.25: two tokens.
    assert_follows(counts(params(top_p=0.6)), renorm(np.arange(6) < 2))
    # exactly reaching the mass needs no extra token: 0.4 + 0.25 + 0.15 = 0.8
    assert_follows(counts(params(top_p=0.8)), renorm(np.arange(6) < 3))


def test_min_p_is_relative_to_the_most_likely():
    # threshold 0.2 * 0.4 = 0.08: keeps 0.4, 0.25, 0.15, 0.1
    assert_follows(counts(params(min_p=0.2)), renorm(np.arange(6) < 4))


def test_typical_p_can_exclude_the_most_likely_token():
    entropy = -(P * np.log(P)).sum()
    deviation = np.abs(-np.log(P) - entropy)
    assert list(np.argsort(deviation)[:3]) == [1, 2, 0]  # the analytic order this test relies on
    # 0.25 < 0.35 <= 0.25 + 0.15: tokens 1 and 2, the mode (0.4) is not typical.
    assert_follows(counts(params(typical_p=0.35)), renorm(np.isin(np.arange(6), [1, 2])))
    assert_follows(counts(params(typical_p=0.7)), renorm(np.isin(np.arange(6), [0, 1, 2])))


def test_steps_compose_on_the_renormalised_distribution():
    # top-k 4 -> {.4,.25,.15,.1}/.9; top-p 0.7 on that: .444, .722 -> two tokens.
    assert_follows(counts(params(top_k=4, top_p=0.7)), renorm(np.arange(6) < 2))


def test_greedy_at_temperature_zero_ignores_the_generator():
    s = Sampler(params(temperature=0.0), seed=123)
    assert all(s(LOGITS) == 0 for _ in range(20))


def test_same_seed_same_draws_other_seed_other_draws():
    p = params(temperature=1.2, top_k=5, top_p=0.97, min_p=0.01)
    s1, s2, s3 = Sampler(p, 7), Sampler(p, 7), Sampler(p, 8)
    d1, d2, d3 = ([s(LOGITS) for _ in range(100)] for s in (s1, s2, s3))
    assert d1 == d2 and d1 != d3


def test_repetition_frequency_and_presence_penalties():
    logits = np.array([2.0, 1.0, -1.0, 0.5], dtype=np.float32)
    s = Sampler(SamplingParams(repeat_penalty=2.0, frequency_penalty=0.1, presence_penalty=0.3))
    out = s.adjusted_logits(logits, history=[1, 1, 2])
    # token 1: 1.0 / 2 - 2 * 0.1 - 0.3; token 2: -1.0 * 2 - 0.1 - 0.3; others untouched.
    assert np.allclose(out, [2.0, 0.5 - 0.2 - 0.3, -2.0 - 0.1 - 0.3, 0.5])
    assert logits[1] == 1.0  # the caller's logits are not modified


def test_penalties_look_only_at_the_window():
    logits = np.array([2.0, 1.0, -1.0, 0.5], dtype=np.float32)
    s = Sampler(SamplingParams(repeat_penalty=2.0, penalty_last_n=1))
    assert np.allclose(s.adjusted_logits(logits, history=[0, 1, 2]), [2.0, 1.0, -2.0, 0.5])
    off = Sampler(SamplingParams(repeat_penalty=2.0, penalty_last_n=0))
    assert np.array_equal(off.adjusted_logits(logits, history=[0, 1, 2]), logits)


def test_repetition_penalty_changes_the_greedy_choice():
    logits = np.array([3.0, 2.0, 0.0], dtype=np.float32)
    s = Sampler(SamplingParams(temperature=0.0, repeat_penalty=2.0))
    assert s(logits, history=[]) == 0
    assert s(logits, history=[0]) == 1  # 3/2 < 2


def test_logit_bias_bans_and_boosts():
    ban = Sampler(params(temperature=0.0, logit_bias={0: float("-inf")}))
    assert ban(LOGITS) == 1
    boost = Sampler(params(logit_bias={5: 100.0}), seed=0)
    assert all(boost(LOGITS) == 5 for _ in range(50))
    everything = Sampler(params(logit_bias={i: float("-inf") for i in range(6)}))
    with pytest.raises(ValueError, match="banned"):
        everything(LOGITS)


def test_logprob_is_the_models_log_softmax():
    token, logprob = Sampler(params(temperature=0.0)).sample(LOGITS)
    assert token == 0 and logprob == pytest.approx(np.log(0.4), abs=1e-5)
    assert log_softmax_at(LOGITS, 5) == pytest.approx(np.log(0.04), abs=1e-5)


@pytest.mark.parametrize("scale", [0.01, 1.0, 3.0, 30.0, 300.0])
@pytest.mark.parametrize("n", [1, 7, 256, 257, 49152, 128256])
def test_log_softmax_at_is_within_1e_6_of_float64(n, scale):
    """The core's two vectorized passes (fast exps summed in float lanes, blocks in double) against
    numpy in float64, at the largest, smallest, first, last and a middle logit, ragged block ends
    included; with a huge spread most exps underflow and the top token's log-probability is ~0."""
    x = (np.random.default_rng(n).standard_normal(n) * scale).astype(np.float32)
    x64 = x.astype(np.float64)
    lse = x64.max() + np.log(np.exp(x64 - x64.max()).sum())
    for token in {0, n - 1, n // 2, int(np.argmax(x)), int(np.argmin(x))}:
        assert abs(log_softmax_at(x, token) - (x64[token] - lse)) <= 1e-6, token


def test_log_softmax_at_rejects_bad_tokens():
    with pytest.raises(IndexError, match="outside"):
        log_softmax_at(LOGITS, len(LOGITS))
    with pytest.raises(IndexError, match="outside"):
        log_softmax_at(LOGITS, -1)
    with pytest.raises(ValueError, match="non-empty"):
        log_softmax_at(np.zeros(0, np.float32), 0)


@pytest.mark.parametrize("n,k", [(128256, 40), (49152, 1), (1000, 999), (5000, 300)])
def test_top_k_indices_match_a_full_sort(n, k):
    x = np.random.default_rng(n + k).standard_normal(n).astype(np.float32) * 3
    assert set(top_k_indices(x, k).tolist()) == set(np.argsort(-x)[:k].tolist())


@pytest.mark.parametrize("mass", [0.05, 0.5, 0.95, 0.999, 1.0])
def test_smallest_set_reaching_matches_a_full_sort(mass):
    rng = np.random.default_rng(3)
    z = rng.standard_normal(50000) * 2.5
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    need = int(np.searchsorted(np.cumsum(probs[order]), mass * (1 - 1e-12))) + 1
    got = smallest_set_reaching(-probs, probs, mass)
    assert len(got) == min(need, len(probs))
    assert set(got.tolist()) == set(order[:len(got)].tolist())


def test_top_p_on_a_large_vocabulary_samples_only_the_nucleus():
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal(128256) * 2).astype(np.float32)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    nucleus = set(order[:int(np.searchsorted(np.cumsum(probs[order]), 0.5)) + 1].tolist())
    s = Sampler(params(top_p=0.5), seed=1)
    assert {s(logits) for _ in range(300)} <= nucleus


@pytest.mark.parametrize("bad", [dict(min_p=-0.1), dict(typical_p=0.0), dict(repeat_penalty=0.0),
                                 dict(penalty_last_n=-2), dict(frequency_penalty=float("nan"))])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)


def test_a_nan_outside_the_top_k_candidates_is_refused():
    logits = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    logits[1] = np.nan  # far from the top 40: top-k alone would never look at it
    with pytest.raises(ModelOutputError):
        Sampler(SamplingParams(), seed=0).choose(logits)


def test_top_p_at_a_huge_temperature_on_a_large_vocabulary():
    # The logits' spread divided by 1e38 is a range float32 cannot invert: the histogram's scale
    # must not overflow (the draw then is close to uniform over the vocabulary).
    logits = np.random.default_rng(1).normal(size=4096).astype(np.float32)
    sampler = Sampler(SamplingParams(temperature=1e38, top_k=0, min_p=0.0, top_p=0.9), seed=0)
    draws = {sampler.choose(logits) for _ in range(50)}
    assert len(draws) > 40 and all(0 <= t < 4096 for t in draws)
