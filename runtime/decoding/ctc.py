"""The CTC forward algorithm: the exact probability of a labelling.

Used to report the true log probability of what a decoder returns, and by tests as
the reference every decoder's scores are checked against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .alphabet import Alphabet, as_batch, log_probs


def ctc_log_probability(
    probs: np.ndarray,
    text: str | Sequence[str],
    charset: str | Sequence[str],
    blank: int,
    lengths: np.ndarray | Sequence[int] | None = None,
) -> float | np.ndarray:
    """Log probability that CTC output `probs` reads `text` (summed over alignments).

    Args:
        probs: (T, C) softmax with one `text` string, or (B, T, C) with one string
            per sequence.
        text: the labelling(s); every character must be in `charset`.
        charset, blank: as for `greedy_decode`.
        lengths: optional (B,) valid frames per sequence.

    Returns:
        A float for one sequence, a (B,) array for a batch; -inf when the text cannot
        be aligned (e.g. more characters than frames).
    """
    alphabet = Alphabet.from_charset(charset, blank)
    probs, lengths, batched = as_batch(probs, alphabet, lengths)
    texts = [text] if isinstance(text, str) else list(text)
    if len(texts) != probs.shape[0]:
        raise ValueError(f"got {len(texts)} texts for a batch of {probs.shape[0]} sequences")
    labels = [alphabet.encode(t) for t in texts]
    logp = log_probs(probs, lengths, alphabet.blank, dtype=np.float64)
    scores = forward_log_probs(logp, np.arange(len(labels)), labels, alphabet.blank)
    return scores if batched else float(scores[0])


def forward_log_probs(
    logp: np.ndarray,
    batch_index: np.ndarray,
    labels: Sequence[np.ndarray],
    blank: int,
) -> np.ndarray:
    """Forward algorithm for N labellings at once, vectorised over them.

    Args:
        logp: (B, T, C) log probabilities; frames past a sequence's end must be
            certain blanks (see `alphabet.log_probs`).
        batch_index: (N,) the sequence of `logp` each labelling belongs to.
        labels: N arrays of class indices (no blanks).
        blank: the blank class.

    Returns:
        (N,) float64 log probabilities.
    """
    count = len(labels)
    if count == 0:
        return np.zeros(0)
    sizes = np.array([len(x) for x in labels], dtype=np.int64)
    width = 2 * int(sizes.max(initial=0)) + 1
    # The extended labelling puts a blank before, between and after the characters.
    extended = np.full((count, width), blank, dtype=np.int64)
    for i, label in enumerate(labels):
        extended[i, 1 : 2 * len(label) : 2] = label
    # A path may skip the blank between two characters only if they differ: that is
    # why a doubled letter ("ll") needs at least one blank frame between its halves.
    can_skip = np.zeros((count, width), dtype=bool)
    can_skip[:, 2:] = (extended[:, 2:] != blank) & (extended[:, 2:] != extended[:, :-2])
    steps = logp.shape[1]
    # Probability space with per-frame rescaling (Rabiner): the same sums as log
    # space, but multiplications instead of a logaddexp per element.
    flat_index = (batch_index[:, None, None] * steps + np.arange(steps)[None, :, None]) * logp.shape[
        2
    ] + extended[:, None, :]
    # float32 exp is several times faster than float64 and exact enough for emissions.
    emit = np.exp(logp.ravel()[flat_index].astype(np.float32)).astype(np.float64)  # (N, T, S)
    alpha = np.zeros((count, width + 2))  # two always-zero columns in front
    alpha[:, 2] = emit[:, 0, 0]
    if width > 1:
        alpha[:, 3] = emit[:, 0, 1]
    log_scale = np.zeros(count)
    dead = np.zeros(count, dtype=bool)
    skip = can_skip.astype(np.float64)
    for t in range(steps):
        if t > 0:
            grown = alpha[:, 2:] + alpha[:, 1:-1] + alpha[:, :-2] * skip
            alpha[:, 2:] = grown * emit[:, t]
        scale = alpha.sum(axis=1)
        dead |= scale <= 0
        scale = np.where(scale > 0, scale, 1.0)
        alpha /= scale[:, None]
        log_scale += np.log(scale)
    rows = np.arange(count)
    last = 2 * sizes + 2
    final = alpha[rows, last] + np.where(sizes > 0, alpha[rows, last - 1], 0.0)
    with np.errstate(divide="ignore"):
        result = np.log(final) + log_scale
    result[dead] = -np.inf
    return result
