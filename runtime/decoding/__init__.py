"""CTC decoding in NumPy: greedy, prefix beam search, lexicon and language models.

    from htr.runtime.decoding import greedy_decode, beam_search_decode, make_decoder
    from htr.runtime.decoding import BeamOptions, build_decoder

Every decoder takes the per-frame softmax of a CTC model, (T, C) or (B, T, C), the
charset (class order, blank excluded) and the blank index, and returns `Decoded`
results. Decoders are built by `build_decoder` from one of the frozen options
dataclasses (`GreedyOptions`, `BeamOptions`, `LexiconOptions`); the public functions
are thin wrappers around it. Only NumPy and the standard library are used here, and
names are imported lazily (the CLIs read the options' defaults without NumPy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .alphabet import (
        Alphabet as Alphabet,
    )
    from .beam import (
        beam_search_decode as beam_search_decode,
    )
    from .ctc import (
        ctc_log_probability as ctc_log_probability,
    )
    from .factory import (
        build_decoder as build_decoder,
    )
    from .factory import (
        make_decoder as make_decoder,
    )
    from .greedy import (
        greedy_decode as greedy_decode,
    )
    from .lexicon import (
        Lexicon as Lexicon,
    )
    from .lexicon_decoder import (
        LexiconDecoder as LexiconDecoder,
    )
    from .lexicon_decoder import (
        lexicon_decode as lexicon_decode,
    )
    from .lm import (
        CharLM as CharLM,
    )
    from .options import (
        DECODER_NAMES as DECODER_NAMES,
    )
    from .options import (
        BeamOptions as BeamOptions,
    )
    from .options import (
        DecoderOptions as DecoderOptions,
    )
    from .options import (
        GreedyOptions as GreedyOptions,
    )
    from .options import (
        LexiconOptions as LexiconOptions,
    )
    from .options import (
        decoder_options as decoder_options,
    )
    from .result import (
        Decoded as Decoded,
    )
    from .result import (
        Decoder as Decoder,
    )
    from .spell import (
        spell_correct as spell_correct,
    )
    from .wordlist import (
        WordlistUnavailable as WordlistUnavailable,
    )
    from .wordlist import (
        default_lexicon as default_lexicon,
    )


_EXPORTS = {
    "Alphabet": "alphabet",
    "CharLM": "lm",
    "Decoded": "result",
    "Decoder": "result",
    "Lexicon": "lexicon",
    "LexiconDecoder": "lexicon_decoder",
    "WordlistUnavailable": "wordlist",
    "beam_search_decode": "beam",
    "ctc_log_probability": "ctc",
    "default_lexicon": "wordlist",
    "greedy_decode": "greedy",
    "lexicon_decode": "lexicon_decoder",
    "make_decoder": "factory",
    "build_decoder": "factory",
    "spell_correct": "spell",
    "GreedyOptions": "options",
    "BeamOptions": "options",
    "LexiconOptions": "options",
    "DecoderOptions": "options",
    "decoder_options": "options",
    "DECODER_NAMES": "options",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
