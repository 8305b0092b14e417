"""Greedy (best path) CTC decoding, vectorised over the whole batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .alphabet import Alphabet, as_batch
from .constants import MIN_PROBABILITY
from .result import Decoded, build_results


def greedy_decode(
    probs: np.ndarray,
    charset: str | Sequence[str],
    blank: int,
    lengths: np.ndarray | Sequence[int] | None = None,
) -> Decoded | list[Decoded]:
    """Decode CTC output by taking the most probable class in every frame.

    Repeated classes are merged and blanks dropped (with ``-`` the blank, the best
    path "aa-ab" reads "aab"), so a doubled letter survives only with a blank between
    its two halves. The same decoder as ``build_decoder(GreedyOptions(), ...)``.

    Args:
        probs: per-frame softmax, (T, C) for one sequence or (B, T, C) for a batch,
            with C == len(charset) + 1.
        charset: the output characters in class order, blank excluded.
        blank: index of the CTC blank class.
        lengths: optional (B,) number of valid frames per sequence; later frames
            are ignored.

    Returns:
        One `Decoded` for a (T, C) input, a list for a (B, T, C) input. Its
        `log_prob` is the log probability of the best path.
    """
    alphabet = Alphabet.from_charset(charset, blank)
    probs, lengths, batched = as_batch(probs, alphabet, lengths)
    results = greedy_decode_batch(probs, lengths, alphabet)
    return results if batched else results[0]


def greedy_decode_batch(
    probs: np.ndarray, lengths: np.ndarray, alphabet: Alphabet
) -> list[Decoded]:
    """`greedy_decode` on checked (B, T, C) input (see `alphabet.as_batch`)."""
    batch, steps, _ = probs.shape
    blank = alphabet.blank
    best = probs.argmax(axis=2)
    best_prob = np.take_along_axis(probs, best[:, :, None], axis=2)[:, :, 0]
    valid = np.arange(steps)[None, :] < lengths[:, None]
    log_best = np.log(np.maximum(best_prob.astype(np.float64), MIN_PROBABILITY))
    log_prob = np.where(valid, log_best, 0.0).sum(axis=1)
    previous = np.empty_like(best)
    previous[:, 0] = -1
    previous[:, 1:] = best[:, :-1]
    emitted = (best != blank) & (best != previous) & valid
    owner, step = np.nonzero(emitted)
    labels = best[owner, step]
    return build_results(
        probs, lengths, alphabet, np.arange(batch), owner, labels, step, log_prob
    )
