"""Sampling and stop strings, on fixed logits (no model needed)."""

import numpy as np
import pytest

from edgellama.generate import StopStringMatcher, common_prefix_length
from edgellama.sampling import Sampler, SamplingParams


def feed_all(matcher, pieces):
    out, stopped = "", False
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out += text
        if stopped:
            return out, True
    return out + matcher.flush(), False


def test_stop_string_split_across_pieces_is_found_and_withheld():
    out, stopped = feed_all(StopStringMatcher(["<|end|>"]), ["Hello <", "|e", "nd", "|> tail"])
    assert stopped and out == "Hello "


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    out, stopped = feed_all(StopStringMatcher(["STOP"]), ["a ST", "O", "x b"])
    assert not stopped and out == "a STOx b"


def test_earliest_of_several_stop_strings_wins():
    out, stopped = feed_all(StopStringMatcher(["bb", "a"]), ["xxbba"])
    assert stopped and out == "xx"


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0


LOGITS = np.log(np.array([0.5, 0.25, 0.15, 0.07, 0.03]))


def draw(params, n=20000, seed=0):
    sampler = Sampler(params, seed)
    return np.bincount([sampler(LOGITS) for _ in range(n)], minlength=len(LOGITS)) / n


def test_temperature_zero_is_argmax():
    assert Sampler(SamplingParams(temperature=0.0), seed=0)(np.array([0.1, 3.0, -1.0])) == 1


def test_plain_sampling_follows_the_softmax():
    freq = draw(SamplingParams(temperature=1.0, top_k=0, top_p=1.0))
    assert np.allclose(freq, np.exp(LOGITS), atol=0.015)


def test_top_k_keeps_the_k_most_likely():
    freq = draw(SamplingParams(temperature=1.0, top_k=2, top_p=1.0))
    assert freq[2:].sum() == 0
    assert np.allclose(freq[:2], [2 / 3, 1 / 3], atol=0.015)


def test_top_p_keeps_the_smallest_nucleus():
    freq = draw(SamplingParams(temperature=1.0, top_k=0, top_p=0.8))  # 0.5+0.25 < 0.8 <= 0.9
    assert freq[3:].sum() == 0
    assert np.allclose(freq[:3], np.array([0.5, 0.25, 0.15]) / 0.9, atol=0.015)


def test_seeded_sampler_is_reproducible():
    params = SamplingParams(temperature=1.0)
    s1, s2 = Sampler(params, 42), Sampler(params, 42)
    assert [s1(LOGITS) for _ in range(50)] == [s2(LOGITS) for _ in range(50)]


@pytest.mark.parametrize("top_p", [0.0, 1.5, -0.1])
def test_invalid_top_p_is_rejected(top_p):
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=top_p)
