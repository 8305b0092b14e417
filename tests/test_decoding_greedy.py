"""Greedy (best path) decoding: hand-worked matrices and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_decoding_reference import collapse, text_of

from htr.runtime.decoding import Decoded, greedy_decode


def test_two_by_three_matrix_worked_by_hand():
    # Charset "ab", blank = 2. Two frames, each: a 0.4, b 0.0, blank 0.6.
    # Best path: blank, blank (0.6 * 0.6 = 0.36) -> "" (beam search finds "a":
    # paths aa, a-, -a sum to 0.16 + 0.24 + 0.24 = 0.64).
    probs = np.array([[0.4, 0.0, 0.6], [0.4, 0.0, 0.6]])
    result = greedy_decode(probs, "ab", blank=2)
    assert result.text == ""
    assert math.isclose(result.log_prob, math.log(0.36))
    assert math.isclose(result.confidence, 0.36)
    assert result.char_confidences == () and result.time_steps == ()


def test_repeats_merge_unless_a_blank_separates_them():
    a, b, blank = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
    assert greedy_decode(np.array([a, a, b]), "ab", 2).text == "ab"
    assert greedy_decode(np.array([a, blank, a, b, b]), "ab", 2).text == "aab"


def test_confidences_and_time_steps_per_character():
    probs = np.array(
        [
            [0.1, 0.1, 0.8],  # blank
            [0.7, 0.1, 0.2],  # a emitted at frame 1
            [0.9, 0.05, 0.05],  # still a, more sure
            [0.1, 0.6, 0.3],  # b at frame 3
        ]
    )
    result = greedy_decode(probs, "ab", 2)
    assert result.text == "ab"
    assert result.time_steps == (1, 3)
    assert result.char_confidences == pytest.approx((0.9, 0.6))
    assert result.log_prob == pytest.approx(math.log(0.8 * 0.7 * 0.9 * 0.6))


def test_blank_first_convention_of_keras3_models():
    # blank = 0: class 1 is "a", class 2 is "b".
    probs = np.array([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    assert greedy_decode(probs, "ab", blank=0).text == "ab"


def test_batch_with_lengths_ignores_padding():
    a, b, blank = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
    batch = np.array([[a, b, b, a], [b, blank, a, a]])
    results = greedy_decode(batch, "ab", 2, lengths=np.array([2, 4]))
    assert [r.text for r in results] == ["ab", "ba"]
    assert results[0].log_prob == 0.0


def test_zero_length_sequence_is_empty():
    probs = np.full((2, 3, 3), 1 / 3)
    results = greedy_decode(probs, "ab", 2, lengths=[0, 3])
    assert results[0].text == "" and results[0].confidence == 1.0


def test_class_count_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match=r"5 classes.*3 characters \+ 1 blank = 4 classes"):
        greedy_decode(np.full((3, 5), 0.2), "abc", 3)


@pytest.mark.parametrize(
    "probs, lengths, message",
    [
        (np.zeros((2, 2, 2, 3)), None, "dimensions"),
        (np.full((2, 3), np.nan), None, "NaN"),
        (np.full((2, 4, 3), 1 / 3), [1, 2, 3], "one entry per sequence"),
        (np.full((2, 4, 3), 1 / 3), [1, 5], r"\[0, 4\]"),
    ],
)
def test_bad_input_raises_value_error(probs, lengths, message):
    with pytest.raises(ValueError, match=message):
        greedy_decode(probs, "ab", 2, lengths=lengths)


def test_bad_blank_index():
    with pytest.raises(ValueError, match="blank index 3"):
        greedy_decode(np.full((2, 3), 1 / 3), "ab", 3)


def softmax_arrays(max_steps: int = 12, max_classes: int = 6):
    """Hypothesis strategy: (T, C) arrays of non-negative numbers (rows need not sum
    to 1: decoders must not care)."""
    return st.tuples(st.integers(1, max_steps), st.integers(2, max_classes)).flatmap(
        lambda shape: arrays(np.float64, shape, elements=st.floats(0, 1, allow_subnormal=False))
    )


@settings(max_examples=150, deadline=None)
@given(probs=softmax_arrays(), blank_first=st.booleans())
def test_any_valid_input_decodes_to_the_collapsed_best_path(probs, blank_first):
    classes = probs.shape[1]
    blank = 0 if blank_first else classes - 1
    charset = "abcdefgh"[: classes - 1]
    result = greedy_decode(probs, charset, blank)
    assert isinstance(result, Decoded)
    expected = collapse(tuple(probs.argmax(axis=1)), blank)
    assert result.text == text_of(expected, charset, blank)
    assert len(result.char_confidences) == len(result.text) == len(result.time_steps)
    assert 0.0 <= result.confidence <= 1.0
    assert all(0.0 <= c <= 1.0 for c in result.char_confidences)
    assert list(result.time_steps) == sorted(set(result.time_steps))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_batch_equals_one_at_a_time(batch, steps, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), size=(batch, steps))
    lengths = rng.integers(0, steps + 1, batch)
    together = greedy_decode(probs, "abc", 3, lengths=lengths)
    for i in range(batch):
        if lengths[i] == 0:
            assert together[i].text == ""
            continue
        alone = greedy_decode(probs[i, : lengths[i]], "abc", 3)
        assert together[i].text == alone.text
        assert together[i].time_steps == alone.time_steps
        assert together[i].char_confidences == alone.char_confidences
        assert together[i].log_prob == pytest.approx(alone.log_prob)
