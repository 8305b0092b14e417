"""What decoding yields: `Decoded`, one per sequence, and the `Decoder` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from .alphabet import Alphabet


@dataclass(frozen=True)
class Decoded:
    """One decoded text line or word, with the evidence for it.

    Attributes:
        text: the recognised text.
        confidence: line confidence in [0, 1]: the probability of this labelling
            (``exp(log_prob)``).
        char_confidences: one value in [0, 1] per character of ``text``: the highest
            probability the network gave that character over the frames it spans.
        time_steps: the frame index where each character of ``text`` was emitted
            (for highlighting the character in the image).
        log_prob: natural log of the probability of this labelling. Beam search and
            the lexicon decoders report the CTC probability (the sum over all
            alignments, computed by the forward algorithm); greedy reports the log
            probability of the single best path.
        nbest: the alternatives, best first, including this one, when n-best was
            asked for; empty otherwise.
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    time_steps: tuple[int, ...]
    log_prob: float
    nbest: tuple[Decoded, ...] = ()


class Decoder(Protocol):
    """A CTC decoder: (B, T, C) probabilities and optional (B,) valid frame counts ->
    one `Decoded` per row, in order. Made by `build_decoder`; it may raise for a bad
    batch (the pipeline then reports that batch's images as failed)."""

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None, /) -> list[Decoded]: ...


def build_results(
    probs: np.ndarray,
    lengths: np.ndarray,
    alphabet: Alphabet,
    batch_index: np.ndarray,
    owner: np.ndarray,
    labels: np.ndarray,
    steps: np.ndarray,
    log_probs: np.ndarray,
) -> list[Decoded]:
    """Turn flat arrays of emitted characters into one `Decoded` per hypothesis.

    Args:
        probs: (B, T, C) softmax the hypotheses were decoded from.
        lengths: (B,) valid time steps per sequence.
        alphabet: maps classes to characters.
        batch_index: (N,) sequence of `probs` each hypothesis belongs to.
        owner: (M,) hypothesis of each emitted character, non-decreasing.
        labels: (M,) class of each emitted character.
        steps: (M,) frame where each character was emitted, non-decreasing per
            hypothesis.
        log_probs: (N,) log probability of each hypothesis.
    """
    count = len(batch_index)
    per_owner = np.bincount(owner, minlength=count) if len(owner) else np.zeros(count, np.int64)
    ends = np.cumsum(per_owner)
    starts = ends - per_owner
    confidences = _char_confidences(probs, lengths, batch_index, owner, labels, steps)
    codepoints = alphabet.codepoints
    if codepoints is not None:
        all_text = codepoints[labels].tobytes().decode("utf-32-le")
        texts = [all_text[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    else:
        texts = [alphabet.decode(labels[s:e]) for s, e in zip(starts.tolist(), ends.tolist())]
    conf_list = confidences.tolist()
    step_list = steps.tolist()
    line_conf = np.exp(np.minimum(log_probs, 0.0)).tolist()
    results = []
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        results.append(
            Decoded(
                text=texts[i],
                confidence=line_conf[i],
                char_confidences=tuple(conf_list[s:e]),
                time_steps=tuple(step_list[s:e]),
                log_prob=float(log_probs[i]),
            )
        )
    return results


def _char_confidences(
    probs: np.ndarray, lengths: np.ndarray, batch_index: np.ndarray, owner: np.ndarray,
    labels: np.ndarray, steps: np.ndarray,
) -> np.ndarray:
    # A character's confidence is its highest probability between the frame where it
    # was emitted and the frame where the next character was (or the sequence ends):
    # CTC often emits a character a frame before its probability peaks.
    total = len(labels)
    if total == 0:
        return np.zeros(0, dtype=np.float64)
    seq = batch_index[owner]
    ends = lengths[seq].copy()
    same_next = owner[1:] == owner[:-1]
    ends[:-1] = np.where(same_next, steps[1:], ends[:-1])
    spans = np.maximum(ends - steps, 1)
    offsets = np.cumsum(spans) - spans
    frames = np.arange(int(spans.sum())) - np.repeat(offsets, spans) + np.repeat(steps, spans)
    frames = np.minimum(frames, np.maximum(lengths[np.repeat(seq, spans)] - 1, 0))
    values = probs[np.repeat(seq, spans), frames, np.repeat(labels, spans)]
    return np.clip(np.maximum.reduceat(values.astype(np.float64), offsets), 0.0, 1.0)
