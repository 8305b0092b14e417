"""What every decoder may assume about its input, checked in one place.

CTC decoders read per-step probabilities: finite floats in [0, 1] whose classes sum
to 1 at each step. Logits, log-probabilities, integers or NaN would decode to confident
garbage, and a huge step count or beam width would try to allocate tens of GiB; each is
refused here with a `ValueError` saying what was expected. The pipeline calls
`check_probabilities` once per batch, before any decoder runs.
"""

from __future__ import annotations

import numpy as np

from .constants import MAX_BEAM_WIDTH

#: Output steps one image may have (a 4096-pixel-wide line at stride 4 has 1,024).
MAX_TIME_STEPS = 20_000
#: How far a step's class probabilities may sum from 1 (float16 softmax rounds this much).
SUM_TOLERANCE = 1e-2


def check_probabilities(probs: np.ndarray, blank: int | None = None, beam_width: int | None = None,
                        check_sums: bool = True) -> np.ndarray:
    """`probs` (T, C) or (B, T, C) if it is a CTC softmax (float32 and float64 kept, other
    floats as float32), else ValueError.

    Refuses: a non-float dtype (ints, bools), another number of axes, NaN or infinity,
    values outside [0, 1] (logits, log-probabilities), steps whose classes do not sum to 1
    (within SUM_TOLERANCE), more than MAX_TIME_STEPS steps, a blank index outside the
    classes, and a beam width outside 1..MAX_BEAM_WIDTH.
    """
    array = np.asarray(probs)
    if array.dtype.kind != "f":
        raise ValueError(f"expected per-step probabilities as floats, got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"expected probabilities of shape (T, C) or (B, T, C), got shape {array.shape}")
    steps, classes = array.shape[-2], array.shape[-1]
    if steps > MAX_TIME_STEPS:
        raise ValueError(f"{steps:,} time steps per image, expected at most {MAX_TIME_STEPS:,}")
    if classes < 1:
        raise ValueError("expected at least one class (the blank) per step, got 0")
    if blank is not None and not 0 <= blank < classes:
        raise ValueError(f"blank index {blank} is outside the {classes} classes")
    if beam_width is not None and not 1 <= beam_width <= MAX_BEAM_WIDTH:
        raise ValueError(f"beam width {beam_width:,}, expected 1..{MAX_BEAM_WIDTH:,}")
    if array.size == 0:
        return _float(array)
    if not np.isfinite(array).all():
        raise ValueError("probabilities contain NaN or infinity (the model's output is broken)")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0 + SUM_TOLERANCE:
        raise ValueError(
            f"values range over [{low:.3g}, {high:.3g}], expected probabilities in [0, 1] "
            "(logits or log-probabilities? apply a softmax first)"
        )
    if not check_sums:
        return _float(array)
    sums = array.sum(axis=-1, dtype=np.float64)
    worst = float(np.abs(sums - 1.0).max())
    if worst > SUM_TOLERANCE:
        raise ValueError(f"a step's class probabilities sum to {1.0 + worst:.3g} or {1.0 - worst:.3g}, expected 1 (a softmax)")
    return _float(array)


def _float(array: np.ndarray) -> np.ndarray:
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)
