"""Map CTC output classes to characters, and check decoder inputs against them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .checks import check_probabilities
from .constants import MIN_PROBABILITY


@dataclass(frozen=True)
class Alphabet:
    """The output classes of a CTC model: the characters plus one blank class.

    Class ``i`` is ``chars[i]`` for ``i < blank`` and ``chars[i - 1]`` for ``i > blank``.
    """

    chars: tuple[str, ...]
    blank: int
    #: each class's code point (the blank's 0) when every class is one code point, else
    #: None; computed once at construction (decoding a whole array through UTF-32 is ~50x
    #: faster than joining strings).
    codepoints: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        strings = self.class_strings
        single = all(len(s) == 1 for i, s in enumerate(strings) if i != self.blank)
        points = np.array([ord(s) if s else 0 for s in strings], dtype="<u4") if single else None
        object.__setattr__(self, "codepoints", points)  # the one write, while constructing

    @classmethod
    def from_charset(cls, charset: str | Sequence[str] | Alphabet, blank: int) -> Alphabet:
        """Build an alphabet; `blank` must be a class index in [0, len(charset)]."""
        if isinstance(charset, Alphabet):
            return charset
        chars = tuple(charset)
        if not all(isinstance(c, str) and c for c in chars):
            raise ValueError("charset must be a string or a sequence of non-empty strings")
        if not chars:
            raise ValueError("charset is empty: a CTC model needs at least one character")
        blank = int(blank)
        if not 0 <= blank <= len(chars):
            raise ValueError(
                f"blank index {blank} is outside the {len(chars) + 1} classes "
                f"({len(chars)} characters + 1 blank)"
            )
        return cls(chars, blank)

    @property
    def num_classes(self) -> int:
        """Number of output classes, blank included."""
        return len(self.chars) + 1

    @property
    def class_strings(self) -> tuple[str, ...]:
        """The string of every class, '' for the blank."""
        return self.chars[: self.blank] + ("",) + self.chars[self.blank :]

    def class_of(self, char: str) -> int:
        """Class index of one character (ValueError when it is not in the charset)."""
        index = self.chars.index(char)
        return index if index < self.blank else index + 1

    def encode(self, text: str) -> np.ndarray:
        """Class indices of `text` (every character must be in the charset)."""
        lookup = {c: i for i, c in enumerate(self.class_strings) if c}
        try:
            return np.array([lookup[c] for c in text], dtype=np.int64)
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the charset") from None

    def decode(self, classes: Sequence[int] | np.ndarray) -> str:
        """Text of a sequence of (non-blank) class indices."""
        classes = np.asarray(classes, dtype=np.int64)
        if self.codepoints is not None:
            return str(self.codepoints[classes].tobytes().decode("utf-32-le"))
        strings = self.class_strings
        return "".join(strings[c] for c in classes.tolist())


def as_batch(
    probs: np.ndarray, alphabet: Alphabet, lengths: np.ndarray | Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check a (T, C) or (B, T, C) softmax array and its lengths.

    Returns the probabilities as (B, T, C), the valid length of each sequence, and
    whether the input was batched. Shape and charset mismatches raise ValueError
    naming both sizes.
    """
    probs = np.asarray(probs)
    if probs.ndim not in (2, 3):
        raise ValueError(
            f"probs must have shape (T, C) or (B, T, C), got {probs.ndim} dimensions {probs.shape}"
        )
    batched = probs.ndim == 3
    if not batched:
        probs = probs[None]
    batch, steps, classes = probs.shape
    if classes != alphabet.num_classes:
        raise ValueError(
            f"probs have {classes} classes but the charset has {len(alphabet.chars)} "
            f"characters + 1 blank = {alphabet.num_classes} classes"
        )
    if steps == 0:
        raise ValueError("probs have 0 time steps")
    # floats in [0, 1], finite, a bounded number of steps (frames past a sequence's length
    # are padding, so a frame's sum is not checked here)
    probs = check_probabilities(probs, check_sums=False)
    if lengths is None:
        lengths = np.full(batch, steps, dtype=np.int64)
    else:
        lengths = np.asarray(lengths)
        if lengths.ndim == 0 and not batched:
            lengths = lengths.reshape(1)
        if lengths.shape != (batch,):
            raise ValueError(
                f"lengths must have one entry per sequence: got shape {lengths.shape} "
                f"for a batch of {batch}"
            )
        if not np.issubdtype(lengths.dtype, np.integer):
            if not np.all(np.equal(np.mod(lengths, 1), 0)):
                raise ValueError("lengths must be integers")
        lengths = lengths.astype(np.int64)
        if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
            raise ValueError(
                f"lengths must lie in [0, {steps}] (the number of time steps), "
                f"got values from {lengths.min()} to {lengths.max()}"
            )
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contain NaN or infinite values")
    return probs, lengths, batched


def log_probs(
    probs: np.ndarray, lengths: np.ndarray, blank: int, dtype: type = np.float32
) -> np.ndarray:
    """Natural logs of (B, T, C) probabilities, with frames past each sequence's
    length replaced by a certain blank (log 1 for blank, log 0 for the rest).

    A certain-blank frame leaves the probability of every labelling unchanged, so
    padded batches decode exactly like their unpadded sequences.
    """
    logp = np.log(np.maximum(probs.astype(dtype, copy=False), MIN_PROBABILITY))
    steps = probs.shape[1]
    padded = np.arange(steps)[None, :] >= lengths[:, None]
    if padded.any():
        logp[padded] = -np.inf
        logp[padded, blank] = 0.0
    return logp
