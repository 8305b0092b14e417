"""`make_decoder`: one decoder by name, with its options checked and its lexicon and
language models loaded once (what the CLI uses)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from .alphabet import Alphabet, as_batch, log_probs
from .beam import check_search_options, finish_hypotheses, prefix_beam_search
from .constants import (
    DECODER_NAMES,
    DEFAULT_BEAM_WIDTH,
    DEFAULT_LEXICON_MODE,
    DEFAULT_PRUNE_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_WORD_LM_WEIGHT,
)
from .greedy import greedy_decode_batch
from .result import Decoded

Decoder = Callable[[np.ndarray, "np.ndarray | None"], list[Decoded]]

_OPTIONS = {
    "greedy": {"spell", "chars"},
    "beam": {"beam_width", "nbest", "lm", "lm_weight", "prune_threshold", "top_k", "spell", "chars"},
    "lexicon": {
        "beam_width", "nbest", "lm", "lm_weight", "prune_threshold", "top_k",
        "lexicon", "mode", "bigram", "word_weight", "chars",
    },
}

#: Named character sets for the ``chars`` option: the characters of each that the
#: model has (so ``digits`` works with a word model that has no space).
CHAR_SETS = {"digits": "0123456789 /.,:-"}


def make_decoder(name: str, charset: str | Sequence[str], blank: int, **options) -> Decoder:
    """A decoder `f(probs, lengths=None) -> list[Decoded]` for (B, T, C) input.

    Names and options:

    - ``greedy``: ``spell`` (a lexicon for the spelling post-pass, see below).
    - ``beam``: ``beam_width``, ``nbest``, ``lm`` (character LM path or `CharLM`),
      ``lm_weight``, ``prune_threshold``, ``top_k``, ``spell``.
    - ``lexicon``: the beam options (without ``spell``) plus ``lexicon`` (file,
      word list, `Lexicon`; None: the default English list from `wordfreq`),
      ``mode`` ("words" or "lines"), ``bigram`` (text file for word bigrams,
      lines mode) and ``word_weight``.

    ``spell`` may be a lexicon (file, words, `Lexicon`) or True for the default
    English list. Every decoder also takes ``chars``: only these characters may be
    read (a string of them, or a name in `CHAR_SETS`), e.g. a column of dates. Options
    set to None take their defaults. Unknown names or options raise ValueError.
    """
    if name not in DECODER_NAMES:
        raise ValueError(f"unknown decoder {name!r}: choose one of {', '.join(DECODER_NAMES)}")
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - _OPTIONS[name]
    if unknown:
        raise ValueError(
            f"decoder {name!r} has no option(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(sorted(_OPTIONS[name]))}"
        )
    alphabet = Alphabet.from_charset(charset, blank)
    chars = options.pop("chars", None)
    if chars is not None:
        keep = allowed_classes(alphabet, chars)
        return restrict_to(make_decoder(name, alphabet.chars, alphabet.blank, **options), keep)
    if name == "lexicon":
        from .lexicon import LexiconDecoder

        lexicon = options.pop("lexicon", None)
        if lexicon is None:
            from .wordlist import default_lexicon

            lexicon = default_lexicon()
        return LexiconDecoder(
            alphabet.chars,
            alphabet.blank,
            lexicon,
            beam_width=options.get("beam_width", DEFAULT_BEAM_WIDTH),
            mode=options.get("mode", DEFAULT_LEXICON_MODE),
            nbest=options.get("nbest", 1),
            bigram_text=options.get("bigram"),
            word_weight=options.get("word_weight", DEFAULT_WORD_LM_WEIGHT),
            lm=options.get("lm"),
            lm_weight=options.get("lm_weight"),
            prune_threshold=options.get("prune_threshold", DEFAULT_PRUNE_THRESHOLD),
            top_k=options.get("top_k", DEFAULT_TOP_K),
        )
    spell = _spell_pass(options.pop("spell", None))
    if name == "greedy":
        def decode(probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
            checked, lengths, _ = as_batch(probs, alphabet, lengths)
            return spell(greedy_decode_batch(checked, lengths, alphabet))

        return decode
    return _beam_decoder(alphabet, spell, **options)


def allowed_classes(alphabet: Alphabet, chars: str) -> np.ndarray:
    """Boolean mask of the classes `chars` leaves readable (the blank always is).

    `chars` is a string of characters, each of which the model must have, with ranges
    such as ``0-9`` or ``a-z`` (a ``-`` first or last is itself), or a name in
    `CHAR_SETS` (whose characters the model lacks are left out)."""
    if not isinstance(chars, str) or not chars:
        raise ValueError("chars must be a non-empty string of characters or a set name "
                         f"({', '.join(CHAR_SETS)})")
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
    out, i = [], 0
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


def restrict_to(decode: Decoder, keep: np.ndarray) -> Decoder:
    """`decode` reading only the classes in the boolean mask `keep`: the others'
    probability is set to 0 and every frame renormalised before decoding."""
    def restricted(probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        probs = np.asarray(probs)
        if probs.ndim not in (2, 3) or probs.shape[-1] != keep.size:
            return decode(probs, lengths)  # let the decoder name the mismatch
        kept = np.where(keep, probs.astype(np.float32, copy=False), np.float32(0.0))
        kept /= np.maximum(kept.sum(axis=-1, keepdims=True), np.float32(1e-30))
        return decode(kept, lengths)

    return restricted


def _beam_decoder(
    alphabet: Alphabet,
    spell: Callable[[list[Decoded]], list[Decoded]],
    beam_width: int = DEFAULT_BEAM_WIDTH,
    nbest: int = 1,
    lm: "os.PathLike | str | object | None" = None,
    lm_weight: float | None = None,
    prune_threshold: float = DEFAULT_PRUNE_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
) -> Decoder:
    check_search_options(beam_width, nbest, prune_threshold, top_k)
    scorer = None
    if lm is not None:
        from .lm import CharLMScorer, load_lm

        model = load_lm(lm)
        scorer = CharLMScorer(model, alphabet, weight=model.weight_or(lm_weight))

    def decode(probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        checked, lengths, _ = as_batch(probs, alphabet, lengths)
        logp = log_probs(checked, lengths, alphabet.blank)
        search = prefix_beam_search(logp, alphabet.blank, beam_width, top_k, prune_threshold, scorer)
        return spell(finish_hypotheses(checked, lengths, alphabet, logp, search.labels, search.score, nbest))

    return decode


def _spell_pass(source) -> Callable[[list[Decoded]], list[Decoded]]:
    if source is None or source is False:
        return lambda results: results
    from dataclasses import replace

    from .lexicon import Lexicon
    from .spell import spell_correct, spell_index

    if source is True:
        from .wordlist import default_lexicon

        source = default_lexicon()
    index = spell_index(Lexicon.coerce(source))

    def correct(results: list[Decoded]) -> list[Decoded]:
        # Corrected text keeps the decoder's scores; per-character fields only
        # survive where the length did not change.
        out = []
        for r in results:
            text = spell_correct(r.text, index)
            if text == r.text:
                out.append(r)
            elif len(text) == len(r.text):
                out.append(replace(r, text=text, nbest=()))
            else:
                out.append(replace(r, text=text, char_confidences=(), time_steps=(), nbest=()))
        return out

    return correct
