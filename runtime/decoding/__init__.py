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
from .factory import make_decoder
from .greedy import greedy_decode
from .lexicon import Lexicon, LexiconDecoder, lexicon_decode
from .lm import CharLM
from .result import Decoded
from .spell import spell_correct
from .wordlist import WordlistUnavailable, default_lexicon

__all__ = [
    "Alphabet",
    "CharLM",
    "Decoded",
    "Lexicon",
    "LexiconDecoder",
    "WordlistUnavailable",
    "beam_search_decode",
    "ctc_log_probability",
    "default_lexicon",
    "greedy_decode",
    "lexicon_decode",
    "make_decoder",
    "spell_correct",
]
