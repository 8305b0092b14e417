"""CTC decoding in NumPy: greedy, prefix beam search, lexicon and language models.

    from htr.runtime.decoding import greedy_decode, beam_search_decode, make_decoder

Every decoder takes the per-frame softmax of a CTC model, (T, C) or (B, T, C), the
charset (class order, blank excluded) and the blank index, and returns `Decoded`
results. Only NumPy and the standard library are used here.
"""

from __future__ import annotations

from .alphabet import Alphabet
from .beam import beam_search_decode
from .ctc import ctc_log_probability
from .greedy import greedy_decode
from .result import Decoded

__all__ = [
    "Alphabet",
    "Decoded",
    "beam_search_decode",
    "ctc_log_probability",
    "greedy_decode",
]
