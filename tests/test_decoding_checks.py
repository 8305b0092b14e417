"""Decoder input checks: hand-made arrays that are not probabilities are refused."""

from __future__ import annotations

import numpy as np
import pytest

from htr.runtime.decoding.checks import MAX_BEAM_WIDTH, MAX_TIME_STEPS, check_probabilities

GOOD = np.array([[[0.9, 0.1], [0.2, 0.8]]], np.float32)  # (B=1, T=2, C=2)


def test_a_softmax_passes_unchanged():
    out = check_probabilities(GOOD, blank=1, beam_width=10)
    assert out.dtype == np.float32 and np.array_equal(out, GOOD)
    assert check_probabilities(GOOD[0].astype(np.float64)).dtype == np.float64  # precision kept
    assert check_probabilities(GOOD[0].astype(np.float16)).dtype == np.float32


@pytest.mark.parametrize(
    "probs,match",
    [
        (np.array([[[2.5, -1.0, 0.3]]], np.float32), "logits or log-probabilities"),
        (np.log(np.full((1, 3, 3), 1 / 3, np.float32)), "logits or log-probabilities"),
        (np.ones((1, 3, 3), np.int64), "floats"),
        (np.full((1, 2, 3), np.finfo(np.float32).max, np.float32), "expected probabilities in"),
        (np.full((1, MAX_TIME_STEPS + 1, 3), 1 / 3, np.float32), "time steps"),
    ],
)
def test_every_public_decoder_refuses_what_is_not_a_softmax(probs, match):
    from htr.runtime.decoding import beam_search_decode, greedy_decode, make_decoder

    for decode in (lambda p: greedy_decode(p, "ab", 2), lambda p: beam_search_decode(p, "ab", 2),
                   lambda p: make_decoder("beam", "ab", 2)(p)):
        with pytest.raises(ValueError, match=match):
            decode(probs)


def test_an_absurd_beam_width_is_refused_before_any_allocation():
    from htr.runtime.decoding import beam_search_decode

    with pytest.raises(ValueError, match="beam_width"):
        beam_search_decode(np.full((1, 4, 3), 1 / 3, np.float32), "ab", 2, beam_width=10**6)


@pytest.mark.parametrize(
    "probs, message",
    [
        (GOOD.astype(np.int64), "as floats, got dtype int64"),
        (GOOD > 0.5, "as floats, got dtype bool"),
        (GOOD - 0.5, r"range over \[-0.4, 0.4\].*logits or log-probabilities"),
        (np.log(GOOD), "logits or log-probabilities"),
        (GOOD * 5, "expected probabilities in"),
        (np.full((1, 2, 2), 0.3, np.float32), "sum to 1.4 or 0.6"),
        (np.full((1, 2, 2), np.finfo(np.float32).max, np.float32), "NaN or infinity|expected probabilities in"),
        (np.where(GOOD > 0.5, np.nan, GOOD), "NaN or infinity"),
        (GOOD[0, 0], r"shape \(T, C\) or \(B, T, C\), got shape \(2,\)"),
    ],
)
def test_arrays_that_are_not_probabilities_are_refused(probs, message):
    with pytest.raises(ValueError, match=message):
        check_probabilities(probs)


def test_absurd_sizes_are_refused_before_any_work():
    long = np.broadcast_to(np.float32(0.5), (1, MAX_TIME_STEPS + 1, 2))  # a view: nothing allocated
    with pytest.raises(ValueError, match="20,001 time steps per image, expected at most 20,000"):
        check_probabilities(long)
    with pytest.raises(ValueError, match=f"beam width 1,000,000, expected 1..{MAX_BEAM_WIDTH:,}"):
        check_probabilities(GOOD, beam_width=10**6)
    with pytest.raises(ValueError, match="blank index 2 is outside the 2 classes"):
        check_probabilities(GOOD, blank=2)
