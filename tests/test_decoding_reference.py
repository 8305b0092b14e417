"""Brute-force CTC references for the decoding tests (slow, obviously correct),
imported by the other test_decoding_* modules, and their own sanity checks."""

from __future__ import annotations

import itertools
import math

import numpy as np


def collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    out = []
    previous = None
    for c in path:
        if c != previous and c != blank:
            out.append(c)
        previous = c
    return tuple(out)


def labelling_probabilities(probs: np.ndarray, blank: int) -> dict[tuple[int, ...], float]:
    """Probability of every labelling, summed over all C**T alignments (T <= 6)."""
    steps, classes = probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        p = math.prod(float(probs[t, c]) for t, c in enumerate(path))
        key = collapse(path, blank)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def text_of(labels: tuple[int, ...], charset: str, blank: int) -> str:
    """Text of class indices under the blank convention of the decoders."""
    return "".join(charset[c if c < blank else c - 1] for c in labels)


def test_collapse_merges_repeats_before_dropping_blanks():
    # "aa-ab" -> "ab"? no: a,a merge to a; blank; a; b -> "aab".
    assert collapse((0, 0, 2, 0, 1), blank=2) == (0, 0, 1)
    assert collapse((0, 0, 0), blank=2) == (0,)
    assert collapse((2, 2), blank=2) == ()


def test_brute_force_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=4)
    assert math.isclose(sum(labelling_probabilities(probs, 2).values()), 1.0, rel_tol=1e-9)


def random_probs(rng: np.random.Generator, steps: int, classes: int, peak: float = 0.0) -> np.ndarray:
    """A (steps, classes) softmax; `peak` > 0 makes one class per frame dominate."""
    logits = rng.normal(size=(steps, classes))
    if peak:
        logits[np.arange(steps), rng.integers(0, classes, steps)] += peak
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
