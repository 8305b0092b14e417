"""`build_decoder`: the one builder of decoders, from an options dataclass.

Every entry point makes its decoders here: htr-run and htr-eval, htr-serve, the
benchmarks, `greedy_decode`, `beam_search_decode` and `make_decoder` (the name +
keywords form). Lexicons and language models are loaded once, when the decoder is
built; the decoder itself keeps no state between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .alphabet import Alphabet, as_batch, log_probs
from .beam import BeamScorer, finish_hypotheses, prefix_beam_search
from .greedy import greedy_decode_batch
from .options import (
    BeamOptions,
    DecoderOptions,
    GreedyOptions,
    LexiconOptions,
    LMSource,
    SpellSource,
    decoder_options,
)
from .result import Decoded, Decoder

#: Named character sets for the ``chars`` option: the characters of each that the
#: model has (so ``digits`` works with a word model that has no space).
CHAR_SETS = {"digits": "0123456789 /.,:-"}


def build_decoder(options: DecoderOptions, charset: str | Sequence[str] | Alphabet, blank: int) -> Decoder:
    """The decoder `options` describe, for a model with `charset` and `blank`.

    The decoder maps (B, T, C) probabilities (and optional (B,) valid lengths) to one
    `Decoded` per row. Lexicon, language model and spelling files are read here, so a
    bad file is a ValueError (naming it) now rather than at the first batch.
    """
    alphabet = Alphabet.from_charset(charset, blank)
    decoder: Decoder
    if isinstance(options, LexiconOptions):
        from .lexicon_decoder import LexiconDecoder

        lexicon = options.lexicon
        if lexicon is None:
            from .wordlist import default_lexicon

            lexicon = default_lexicon()
        from .lexicon import Lexicon

        decoder = LexiconDecoder(alphabet, options, Lexicon.coerce(lexicon),
                                 _lm_scorer(options.lm, options.lm_weight, alphabet))
    elif isinstance(options, BeamOptions):
        decoder = BeamDecoder(alphabet, options, _lm_scorer(options.lm, options.lm_weight, alphabet))
        decoder = _with_spelling(decoder, options.spell)
    elif isinstance(options, GreedyOptions):
        decoder = _with_spelling(GreedyDecoder(alphabet), options.spell)
    else:
        raise TypeError(f"not decoder options: {type(options).__name__}")
    if options.chars is not None:
        decoder = RestrictedDecoder(decoder, allowed_classes(alphabet, options.chars))
    return decoder


def make_decoder(name: str, charset: str | Sequence[str], blank: int, **options: Any) -> Decoder:
    """A decoder by name ("greedy", "beam", "lexicon") with its options as keywords.

    The keywords are the fields of `GreedyOptions`, `BeamOptions` and `LexiconOptions`;
    None means the default. Unknown names or options raise ValueError."""
    return build_decoder(decoder_options(name, **options), charset, blank)


class GreedyDecoder:
    """Best path decoding (see `greedy_decode`)."""

    def __init__(self, alphabet: Alphabet):
        self.alphabet = alphabet

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        checked, valid, _ = as_batch(probs, self.alphabet, lengths)
        return greedy_decode_batch(checked, valid, self.alphabet)


class BeamDecoder:
    """Prefix beam search (see `beam_search_decode`), with an optional scorer."""

    def __init__(self, alphabet: Alphabet, options: BeamOptions, scorer: BeamScorer | None = None):
        self.alphabet = alphabet
        self.options = options
        self.scorer = scorer

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        checked, valid, _ = as_batch(probs, self.alphabet, lengths)
        opts = self.options
        logp = log_probs(checked, valid, self.alphabet.blank)
        search = prefix_beam_search(logp, self.alphabet.blank, opts.beam_width, opts.top_k, opts.prune_threshold,
                                    self.scorer)
        return finish_hypotheses(checked, valid, self.alphabet, logp, search.labels, search.score, opts.nbest)


class RestrictedDecoder:
    """`decoder` reading only the classes in the boolean mask `keep`: the others'
    probability is set to 0 and every frame renormalised before decoding."""

    def __init__(self, decoder: Decoder, keep: np.ndarray):
        self.decoder = decoder
        self.keep = keep

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        probs = np.asarray(probs)
        if probs.ndim not in (2, 3) or probs.shape[-1] != self.keep.size:
            return self.decoder(probs, lengths)  # let the decoder name the mismatch
        kept = np.where(self.keep, probs.astype(np.float32, copy=False), np.float32(0.0))
        kept /= np.maximum(kept.sum(axis=-1, keepdims=True), np.float32(1e-30))
        return self.decoder(kept, lengths)


class SpellingDecoder:
    """`decoder` followed by spelling correction of every word against a lexicon.

    Corrected text keeps the decoder's scores; per-character fields survive only
    where the length did not change."""

    def __init__(self, decoder: Decoder, source: SpellSource):
        from .lexicon import Lexicon
        from .spell import SpellIndex

        if source is True:
            from .wordlist import default_lexicon

            source = default_lexicon()
        assert source is not None and source is not False  # _with_spelling's contract
        self.decoder = decoder
        self.index = SpellIndex(Lexicon.coerce(source))

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        from .spell import spell_correct

        out = []
        for r in self.decoder(probs, lengths):
            text = spell_correct(r.text, self.index)
            if text == r.text:
                out.append(r)
            elif len(text) == len(r.text):
                out.append(replace(r, text=text, nbest=()))
            else:
                out.append(replace(r, text=text, char_confidences=(), time_steps=(), nbest=()))
        return out


def _with_spelling(decoder: Decoder, source: SpellSource) -> Decoder:
    if source is None or source is False:
        return decoder
    return SpellingDecoder(decoder, source)


def _lm_scorer(lm: LMSource | None, weight: float | None, alphabet: Alphabet) -> BeamScorer | None:
    """The character LM scorer (bundled names resolved; the file's weight unless `weight`)."""
    if lm is None:
        return None
    from .lm import CharLMScorer, load_lm

    model = load_lm(lm)
    return CharLMScorer(model, alphabet, weight=model.weight_or(weight))


def allowed_classes(alphabet: Alphabet, chars: str) -> np.ndarray:
    """Boolean mask of the classes `chars` leaves readable (the blank always is).

    `chars` is a string of characters, each of which the model must have, with ranges
    such as ``0-9`` or ``a-z`` (a ``-`` first or last is itself), or a name in
    `CHAR_SETS` (whose characters the model lacks are left out)."""
    if not isinstance(chars, str) or not chars:
        raise ValueError(f"chars must be a non-empty string of characters or a set name ({', '.join(CHAR_SETS)})")
    have = set(alphabet.chars)
    if chars in CHAR_SETS:
        wanted = [c for c in CHAR_SETS[chars] if c in have]
        if not wanted:
            raise ValueError(f"chars {chars!r}: the model has none of {CHAR_SETS[chars]!r}")
    else:
        wanted = list(dict.fromkeys(_expand_ranges(chars)))
        missing = "".join(c for c in wanted if c not in have)
        if missing:
            raise ValueError(
                f"chars: {missing!r} not in the model's charset of {len(alphabet.chars)} characters "
                f"(expected a subset of {''.join(alphabet.chars)!r})"
            )
    keep = np.zeros(alphabet.num_classes, dtype=bool)
    keep[alphabet.blank] = True
    keep[[alphabet.class_of(c) for c in wanted]] = True
    return keep


def _expand_ranges(chars: str) -> str:
    """'0-9/' -> '0123456789/': a '-' between two characters spans them (as in `tr`)."""
    out: list[str] = []
    i = 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            lo, hi = chars[i], chars[i + 2]
            if ord(lo) > ord(hi):
                raise ValueError(f"chars: range {lo}-{hi} runs backwards")
            out.extend(map(chr, range(ord(lo), ord(hi) + 1)))
            i += 3
        else:
            out.append(chars[i])
            i += 1
    return "".join(out)
