"""CTC prefix beam search in log space, vectorised over the batch and the beams.

Every sequence keeps `beam_width` prefixes. A prefix's probability is split into
paths ending in a blank (`pb`) and paths ending in its last character (`pnb`), so
that "a" followed by "a" can be told apart from "a", blank, "a". Each frame every
beam can stay (blank, or its last character repeated) or grow by one of the frame's
`top_k` most probable characters; the `beam_width` best of all these candidates,
per sequence, survive. All of this is a handful of NumPy operations per frame on
(batch, beam, top_k) arrays: there is no Python loop over sequences, beams or
characters. A scorer (language model, lexicon) scores every candidate on that grid
but builds the state of only the beams that survive the frame.

Prefixes are identified by a 64-bit polynomial hash of their characters plus their
length, which is how a grown prefix that already exists as another beam is found
and merged with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .alphabet import Alphabet, as_batch
from .constants import DEFAULT_BEAM_WIDTH, DEFAULT_NBEST, DEFAULT_PRUNE_THRESHOLD, DEFAULT_TOP_K
from .ctc import forward_log_probs
from .options import BeamOptions, LMSource
from .result import Decoded, build_results

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_DEAD_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)
State = tuple[np.ndarray, ...]


class BeamScorer(Protocol):
    """Extra per-beam state and score added to the CTC score (a language model, a
    lexicon). States are tuples of arrays; a score of -inf forbids a step."""

    def start(self, batch: int, width: int) -> State:
        """The state of the empty prefix, as (batch, width) arrays."""

    def score(self, state: State, chars: np.ndarray) -> np.ndarray:
        """(B, K, J) score of appending class `chars[b, j]` to beam (b, k), for
        (B, K) states and (B, J) classes."""

    def advance(self, state: State, chars: np.ndarray) -> State:
        """The states after appending class `chars[b, k]` to beam (b, k), for the
        few extensions the search keeps (scoring every candidate's state would
        waste most of the work)."""

    def finish(self, state: State) -> np.ndarray:
        """(B, K) score added when a beam ends the sequence (-inf: it may not)."""


@dataclass(frozen=True)
class BeamSearchResult:
    """The final beams of a batch, best first along axis 1.

    labels: (B, K, T) class emitted by each beam at each frame, -1 where none.
    ctc: (B, K) CTC prefix log probability.
    score: (B, K) ranking score: ctc + scorer score + finish score.
    state: the scorer's state of each beam.
    """

    labels: np.ndarray
    ctc: np.ndarray
    score: np.ndarray
    state: State


def beam_search_decode(
    probs: np.ndarray,
    charset: str | Sequence[str],
    blank: int,
    beam_width: int = DEFAULT_BEAM_WIDTH,
    lengths: np.ndarray | Sequence[int] | None = None,
    *,
    nbest: int = DEFAULT_NBEST,
    lm: LMSource | None = None,
    lm_weight: float | None = None,
    prune_threshold: float = DEFAULT_PRUNE_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
) -> Decoded | list[Decoded]:
    """Decode CTC output with prefix beam search (`BeamOptions` through `build_decoder`).

    Args:
        probs: per-frame softmax, (T, C) or (B, T, C), C == len(charset) + 1.
        charset: the output characters in class order, blank excluded.
        blank: index of the CTC blank class.
        beam_width: prefixes kept per sequence.
        lengths: optional (B,) number of valid frames per sequence.
        nbest: hypotheses returned in `Decoded.nbest` (1: none, just the best).
        lm: optional character language model: a `CharLM`, an htr-lm file, or a
            bundled LM's name ("words", "lines").
        lm_weight: weight of the LM's log probability in the beam score (None: the
            weight stored in the LM file, else `DEFAULT_LM_WEIGHT`).
        prune_threshold: characters below this probability in a frame cannot
            extend a prefix in that frame.
        top_k: only the `top_k` most probable characters of a frame can extend a
            prefix in that frame.

    Returns:
        One `Decoded` for (T, C) input, a list for (B, T, C). `log_prob` is the
        exact CTC log probability of the returned text (forward algorithm).
    """
    from .factory import build_decoder

    options = BeamOptions(beam_width=beam_width, nbest=nbest, lm=lm, lm_weight=lm_weight,
                          prune_threshold=prune_threshold, top_k=top_k)
    alphabet = Alphabet.from_charset(charset, blank)
    batch, valid, batched = as_batch(probs, alphabet, lengths)
    results = build_decoder(options, alphabet, blank)(batch, valid)
    return results if batched else results[0]


def prefix_beam_search(
    logp: np.ndarray,
    blank: int,
    beam_width: int,
    top_k: int = DEFAULT_TOP_K,
    prune_threshold: float = DEFAULT_PRUNE_THRESHOLD,
    scorer: BeamScorer | None = None,
) -> BeamSearchResult:
    """Run the search on (B, T, C) log probabilities (padded frames certain blanks)."""
    batch, steps, classes = logp.shape
    width = int(beam_width)
    neg_inf = np.float32(-np.inf)
    dtype = logp.dtype
    # The frame's candidate characters: its top_k non-blank classes above threshold.
    k = max(1, min(int(top_k), classes - 1))
    chars_only = logp.copy()
    chars_only[:, :, blank] = -np.inf
    if k < classes - 1:
        cands = top_indices(chars_only.reshape(batch * steps, classes), k).reshape(batch, steps, k)
    else:
        cands = np.broadcast_to(
            np.delete(np.arange(classes), blank), (batch, steps, classes - 1)
        ).copy()
    cand_logp = np.take_along_axis(chars_only, cands, axis=2)
    if prune_threshold > 0:
        cand_logp[cand_logp < np.log(prune_threshold)] = -np.inf
    del chars_only

    rows = np.arange(batch)[:, None]
    slots = np.arange(width, dtype=np.uint64)[None, :]
    pb = np.full((batch, width), neg_inf, dtype=dtype)
    pb[:, 0] = 0.0
    pnb = np.full((batch, width), neg_inf, dtype=dtype)
    last = np.full((batch, width), -1, dtype=np.int64)
    length = np.zeros((batch, width), dtype=np.int64)
    hashes = np.zeros((batch, width), dtype=np.uint64)
    parent_hash = np.zeros((batch, width), dtype=np.uint64)
    extra = np.zeros((batch, width), dtype=dtype)  # scorer's accumulated score
    state = scorer.start(batch, width) if scorer is not None else ()
    src_history = np.empty((steps, batch, width), dtype=np.int32)
    emit_history = np.empty((steps, batch, width), dtype=np.int32)

    # Beams are gathered by flat index (`x.reshape(-1)[i]`), several times faster
    # than NumPy's 2-D fancy indexing `x[rows, i]` on arrays this small.
    beam_base = rows * width
    flat_logp = logp.reshape(-1)
    frame_base = rows * (steps * classes)
    frame_cands = np.ascontiguousarray(cands.transpose(1, 0, 2))  # (T, B, k)
    frame_cand_logp = np.ascontiguousarray(cand_logp.transpose(1, 0, 2))

    with np.errstate(invalid="ignore", over="ignore"):
        for t in range(steps):
            total = np.logaddexp(pb, pnb)
            alive = total > neg_inf
            # (-1 gathers a neighbour's value, which `last >= 0` discards.)
            last_logp = np.where(last >= 0, flat_logp[frame_base + (t * classes) + last], neg_inf)
            stay_pb = total + logp[:, t, blank, None]
            stay_pnb = pnb + last_logp

            # A beam whose parent prefix is also a beam gets the parent's paths that
            # grow by its last character this frame (they would otherwise be a
            # duplicate candidate).
            # (Dead beams carry unique sentinel hashes, so they never match.)
            parent = (hashes[:, None, :] == parent_hash[:, :, None]).argmax(axis=2)
            parent_at = beam_base + parent
            has_parent = (hashes.reshape(-1)[parent_at] == parent_hash) & alive & (length > 0)
            parent_base = np.where(
                last.reshape(-1)[parent_at] == last,
                pb.reshape(-1)[parent_at],
                total.reshape(-1)[parent_at],
            )
            from_parent = np.where(has_parent, parent_base + last_logp, neg_inf)
            # When most of a beam's mass now comes from its parent, its last character
            # is better placed at this frame: record that path for time steps.
            moved = from_parent > np.logaddexp(stay_pb, stay_pnb)
            stay_pnb = np.logaddexp(stay_pnb, from_parent)

            chars = frame_cands[t]
            char_logp = frame_cand_logp[t]
            # Growing by the beam's own last character needs a blank in between, so
            # only paths ending in blank (pb) count; every other character extends all.
            is_last = last[:, :, None] == chars[:, None, :]
            grow_pnb = np.where(is_last, pb[:, :, None], total[:, :, None]) + char_logp[:, None, :]
            # The parent's candidate that would spell a beam's prefix again is dropped
            # (its paths were added to that beam above).
            child = np.flatnonzero(is_last & has_parent[:, :, None])  # b, k, j order
            grow_pnb.reshape(-1)[parent_at.reshape(-1)[child // k] * k + child % k] = neg_inf

            stay_score = np.logaddexp(stay_pb, stay_pnb)
            if scorer is not None:
                grow_extra = extra[:, :, None] + scorer.score(state, chars)
                stay_score = stay_score + extra
                grow_score = grow_pnb + grow_extra
            else:
                grow_score = grow_pnb
            scores = np.concatenate([stay_score, grow_score.reshape(batch, -1)], axis=1)
            top = top_indices(scores, width)

            grown = top >= width
            flat = np.where(grown, top - width, 0)
            src = np.where(grown, flat // k, top)
            at = beam_base + src  # the source beam of each new one
            grown_at = beam_base * k + flat  # its candidate in the (B, K, k) arrays
            char = chars.reshape(-1)[rows * k + flat % k]
            pb = np.where(grown, neg_inf, stay_pb.reshape(-1)[at])
            pnb = np.where(grown, grow_pnb.reshape(-1)[grown_at], stay_pnb.reshape(-1)[at])
            old_hash = hashes.reshape(-1)[at]
            hashes = np.where(grown, old_hash * _HASH_MULTIPLIER + (char + 1).astype(np.uint64), old_hash)
            parent_hash = np.where(grown, old_hash, parent_hash.reshape(-1)[at])
            last = np.where(grown, char, last.reshape(-1)[at])
            length = length.reshape(-1)[at] + grown
            # A dead beam (picked only when fewer than `width` candidates are
            # possible) may repeat a live beam's prefix: give it a hash no prefix has.
            dead = scores.reshape(-1)[rows * scores.shape[1] + top] == neg_inf
            if dead.any():
                hashes = np.where(dead, _DEAD_HASH - slots, hashes)
            if scorer is not None:
                extra = np.where(grown, grow_extra.reshape(-1)[grown_at], extra.reshape(-1)[at])
                kept = tuple(s.reshape(-1)[at] for s in state)
                advanced = scorer.advance(kept, char)
                state = tuple(np.where(grown, a, s) for s, a in zip(kept, advanced))
            moved_here = ~grown & moved.reshape(-1)[at]
            src_history[t] = np.where(moved_here, parent.reshape(-1)[at], src)
            emit_history[t] = np.where(grown, char, np.where(moved_here, last, -1))

    ctc = np.logaddexp(pb, pnb)
    score = ctc + extra
    if scorer is not None:
        score = score + scorer.finish(state)
    order = np.argsort(-score, axis=1, kind="stable")
    labels = np.empty((batch, width, steps), dtype=np.int32)
    slot = order
    for t in range(steps - 1, -1, -1):
        at = beam_base + slot
        labels[:, :, t] = emit_history[t].reshape(-1)[at]
        slot = src_history[t].reshape(-1)[at]
    return BeamSearchResult(
        labels=labels,
        ctc=np.take_along_axis(ctc, order, 1),
        score=np.take_along_axis(score, order, 1),
        state=tuple(np.take_along_axis(s, order, 1) for s in state),
    )


def top_indices(values: np.ndarray, count: int) -> np.ndarray:
    """Column indices of the `count` largest values of each row, largest first.

    For the small counts of a beam search, `count` passes of argmax are several
    times faster than `np.argpartition`, whose cost per row dominates here.
    """
    rows, cols = values.shape
    if count >= cols or rows * cols <= 4096:
        return np.argsort(-values, axis=1, kind="stable")[:, :count]
    if count > 32:
        part = np.argpartition(-values, count - 1, axis=1)[:, :count]
        order = np.argsort(-np.take_along_axis(values, part, 1), axis=1, kind="stable")
        return np.take_along_axis(part, order, 1)
    # Impossible candidates (-inf) become the lowest finite value, so that a taken
    # column (set to -inf) can never be taken twice.
    work = np.maximum(values, np.finfo(values.dtype).min)
    out = np.empty((rows, count), dtype=np.int64)
    index = np.arange(rows)
    for i in range(count):
        best = work.argmax(axis=1)
        out[:, i] = best
        work[index, best] = -np.inf
    return out


def finish_hypotheses(
    probs: np.ndarray,
    lengths: np.ndarray,
    alphabet: Alphabet,
    logp: np.ndarray,
    labels: np.ndarray,
    score: np.ndarray,
    nbest: int,
) -> list[Decoded]:
    """Build `Decoded` results from the best `nbest` beams of each sequence.

    `labels` is (B, K, T) as in `BeamSearchResult`, beams sorted best first; beams
    with a score of -inf are dropped (the best one is always kept).
    """
    batch = labels.shape[0]
    keep = min(nbest, labels.shape[1])
    chosen = labels[:, :keep]
    usable = np.isfinite(score[:, :keep])
    usable[:, 0] = True
    flat = chosen.reshape(batch * keep, -1)
    owner, step = np.nonzero(flat >= 0)
    classes = flat[owner, step]
    batch_index = np.repeat(np.arange(batch), keep)
    split = np.searchsorted(owner, np.arange(batch * keep + 1))
    sequences = [classes[split[i] : split[i + 1]] for i in range(batch * keep)]
    exact = forward_log_probs(logp, batch_index, sequences, alphabet.blank)
    hyps = build_results(probs, lengths, alphabet, batch_index, owner, classes, step, exact)
    if keep == 1:
        return hyps
    results = []
    for b in range(batch):
        alternatives = [hyps[b * keep + j] for j in range(keep) if usable[b, j]]
        results.append(_with_nbest(alternatives[0], tuple(alternatives)))
    return results


def _with_nbest(best: Decoded, alternatives: tuple[Decoded, ...]) -> Decoded:
    return Decoded(
        text=best.text,
        confidence=best.confidence,
        char_confidences=best.char_confidences,
        time_steps=best.time_steps,
        log_prob=best.log_prob,
        nbest=alternatives,
    )


class CombinedScorer:
    """Several beam scorers at once: scores add, states concatenate."""

    def __init__(self, scorers: Sequence[BeamScorer]):
        self.scorers = tuple(scorers)
        # How many arrays each scorer's state has (fixed per scorer), found once here so
        # that decoding never writes to the decoder (it may run in several threads).
        self.sizes = tuple(len(s.start(1, 1)) for s in self.scorers)

    def start(self, batch: int, width: int) -> State:
        """Concatenated start states."""
        return tuple(a for s in self.scorers for a in s.start(batch, width))

    def _split(self, state: State) -> list[State]:
        out: list[State] = []
        at = 0
        for size in self.sizes:
            out.append(tuple(state[at : at + size]))
            at += size
        return out

    def score(self, state: State, chars: np.ndarray) -> np.ndarray:
        """Sum of the scorers' scores."""
        parts = [scorer.score(part, chars) for scorer, part in zip(self.scorers, self._split(state))]
        total: np.ndarray = parts[0]
        for more in parts[1:]:
            total = total + more
        return total

    def advance(self, state: State, chars: np.ndarray) -> State:
        """Concatenated advanced states."""
        return tuple(a for s, p in zip(self.scorers, self._split(state)) for a in s.advance(p, chars))

    def finish(self, state: State) -> np.ndarray:
        """Sum of the scorers' finishing scores."""
        parts = [s.finish(p) for s, p in zip(self.scorers, self._split(state))]
        total: np.ndarray = parts[0]
        for more in parts[1:]:
            total = total + more
        return total
