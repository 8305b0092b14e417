"""The decoders' options: one frozen dataclass per decoder, checked when it is made.

`build_decoder` (factory.py) turns any of them into a decoder; the CLIs, htr-serve, the
benchmarks and the public functions (`greedy_decode`, `beam_search_decode`,
`make_decoder`) all start from these, so a default lives here and nowhere else. This
module imports nothing heavy, so the CLIs can read the defaults for their --help.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Union

from .constants import (
    DEFAULT_BEAM_WIDTH,
    DEFAULT_NBEST,
    DEFAULT_PRUNE_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_WORD_LM_WEIGHT,
    LEXICON_MODES,
    MAX_BEAM_WIDTH,
)

if TYPE_CHECKING:
    from .lexicon import Lexicon
    from .lm import CharLM

#: A character language model: an `htr-lm` file, a bundled LM's name ("words",
#: "lines"), or a loaded `CharLM`.
LMSource = Union[str, "os.PathLike[str]", "CharLM"]
#: A lexicon: a file (one word per line, optionally with a count), words, a mapping of
#: word -> frequency, or a `Lexicon`.
LexiconSource = Union[str, "os.PathLike[str]", "Lexicon", Iterable[str], Mapping[str, float]]
#: The spelling post-pass: a lexicon, True for the default English list, or None (off).
SpellSource = Union[LexiconSource, bool, None]


@dataclass(frozen=True)
class GreedyOptions:
    """Best-path decoding: the most probable class per frame, repeats merged, blanks dropped.

    Attributes:
        chars: read only these characters (a string such as ``"0-9/"`` with `tr`-style
            ranges, or a name in `CHAR_SETS` such as ``"digits"``); None: all.
        spell: spelling-correction post-pass against a lexicon (True: the default
            English list); None: off.
    """

    chars: str | None = None
    spell: SpellSource = None


@dataclass(frozen=True)
class SearchOptions:
    """What every beam search takes (`BeamOptions` and `LexiconOptions` add their own).

    Attributes:
        beam_width: prefixes kept per frame.
        nbest: hypotheses returned per sequence (in `Decoded.nbest` when above 1).
        lm: character LM (file, bundled name or `CharLM`); None: no LM.
        lm_weight: weight of the LM's log probability; None: the weight stored in the
            LM file, else `DEFAULT_LM_WEIGHT`.
        prune_threshold: a character below this probability in a frame cannot extend a
            prefix there (the frame's most probable character always can).
        top_k: most probable characters per frame that may extend a prefix.
        chars: as for `GreedyOptions`.
    """

    beam_width: int = DEFAULT_BEAM_WIDTH
    nbest: int = DEFAULT_NBEST
    lm: LMSource | None = None
    lm_weight: float | None = None
    prune_threshold: float = DEFAULT_PRUNE_THRESHOLD
    top_k: int = DEFAULT_TOP_K
    chars: str | None = None

    def __post_init__(self) -> None:
        check_search_options(self.beam_width, self.nbest, self.prune_threshold, self.top_k, self.lm_weight)


@dataclass(frozen=True)
class BeamOptions(SearchOptions):
    """CTC prefix beam search, optionally with a character language model (the fields of
    `SearchOptions`, and `spell` as for `GreedyOptions`)."""

    spell: SpellSource = None


@dataclass(frozen=True)
class LexiconOptions(SearchOptions):
    """Beam search constrained to lexicon words (a trie), scored by word frequencies:
    the fields of `SearchOptions`, and

    Attributes:
        lexicon: the words (see `LexiconSource`); None: the default English list
            (from the `wordfreq` package).
        mode: "words" (each image is one lexicon word) or "lines" (lexicon words
            separated by spaces, punctuation and digits); None: "lines" when the
            model's charset has a space, else "words".
        bigram: a text file (or lines of text) to learn word bigrams from (lines mode);
            None: unigram frequencies from the lexicon, when it has them.
        word_weight: weight of the word model's log probability.
    """

    lexicon: LexiconSource | None = None
    mode: str | None = None
    bigram: str | os.PathLike[str] | Iterable[str] | None = None
    word_weight: float = DEFAULT_WORD_LM_WEIGHT

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode is not None and self.mode not in LEXICON_MODES:
            raise ValueError(f"lexicon mode must be one of {', '.join(LEXICON_MODES)}, got {self.mode!r}")
        if not self.word_weight >= 0:
            raise ValueError(f"word_weight must be at least 0, got {self.word_weight!r}")

    def mode_for(self, charset: Iterable[str]) -> str:
        """The mode to decode in: `mode`, or from the charset when it is None."""
        if self.mode is not None:
            return self.mode
        return "lines" if " " in tuple(charset) else "words"


DecoderOptions = Union[GreedyOptions, BeamOptions, LexiconOptions]

#: Decoder name (as `make_decoder`, --decoder and htr-serve take it) -> its options.
OPTIONS: dict[str, type[GreedyOptions] | type[BeamOptions] | type[LexiconOptions]] = {
    "greedy": GreedyOptions,
    "beam": BeamOptions,
    "lexicon": LexiconOptions,
}
#: The decoders' names, in the order --help lists them.
DECODER_NAMES: tuple[str, ...] = tuple(OPTIONS)


def decoder_options(name: str, **options: Any) -> DecoderOptions:
    """The options of decoder `name` from keyword arguments; None means the default.

    Unknown names or options, and values out of range, raise ValueError."""
    kind = OPTIONS.get(name)
    if kind is None:
        raise ValueError(f"unknown decoder {name!r}: choose one of {', '.join(DECODER_NAMES)}")
    known = {f.name for f in fields(kind)}
    unknown = set(options) - known
    if unknown:
        raise ValueError(
            f"decoder {name!r} has no option(s) {', '.join(sorted(unknown))}; it takes {', '.join(sorted(known))}"
        )
    return kind(**{k: v for k, v in options.items() if v is not None})


def decoder_name(options: DecoderOptions) -> str:
    """The name of the decoder `options` are for ("greedy", "beam", "lexicon")."""
    for name, kind in OPTIONS.items():
        if type(options) is kind:
            return name
    raise TypeError(f"not decoder options: {type(options).__name__}")


def check_search_options(
    beam_width: int, nbest: int, prune_threshold: float, top_k: int, lm_weight: float | None = None
) -> None:
    """Raise ValueError for beam search options out of range."""
    if isinstance(beam_width, bool) or int(beam_width) != beam_width or not 1 <= beam_width <= MAX_BEAM_WIDTH:
        raise ValueError(f"beam_width must be an integer in 1..{MAX_BEAM_WIDTH:,}, got {beam_width!r}")
    if isinstance(nbest, bool) or int(nbest) != nbest or not 1 <= nbest <= beam_width:
        raise ValueError(f"nbest must lie in [1, beam_width={beam_width}], got {nbest!r}")
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not 0.0 <= prune_threshold < 1.0:
        raise ValueError(f"prune_threshold must lie in [0, 1), got {prune_threshold!r}")
    if lm_weight is not None and not lm_weight >= 0:
        raise ValueError(f"lm_weight must be at least 0, got {lm_weight!r}")
