"""Lexicon decoding: prefix-trie constrained beam search.

Two modes:

- ``words``: the image shows one word, and the result is the lexicon word that best
  explains the CTC output (beam search over the trie, not an edit-distance lookup
  after the fact). It never returns a word outside the lexicon.
- ``lines``: word beam search (Scheidl, Fiel and Sablatnig, ICFHR 2018, "Words"
  mode): letters must spell lexicon words, while every other character of the
  charset (space, digits, punctuation) is free between words. An optional word
  bigram model, learned from a text file, scores each word as it is completed.

The lexicon is `lexicon.Lexicon`, its trie `trie.Trie`, the word model
`word_lm.WordBigram`; this module holds the scorer that keeps beams on the trie and the
decoder built from them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .alphabet import Alphabet, as_batch, log_probs
from .beam import BeamScorer, BeamSearchResult, CombinedScorer, State, finish_hypotheses, prefix_beam_search
from .constants import (
    DEFAULT_BEAM_WIDTH,
    DEFAULT_LEXICON_MODE,
    DEFAULT_NBEST,
    DEFAULT_PRUNE_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_WORD_LM_WEIGHT,
)
from .ctc import forward_log_probs
from .lexicon import Lexicon
from .options import LexiconOptions, LexiconSource, LMSource
from .result import Decoded, build_results
from .trie import Trie
from .word_lm import WordBigram


class LexiconScorer:
    """Beam search scorer that keeps beams on the trie (see module docstring).

    State per beam: the trie node of the word being spelled (-1 between words, lines
    mode only) and the last completed word (for the bigram model).
    """

    def __init__(self, trie: Trie, alphabet: Alphabet, mode: str, word_lm: WordBigram | None, weight: float):
        self.trie = trie
        self.mode = mode
        strings = alphabet.class_strings
        self.word_char = np.array(
            [bool(s) and (s.isalpha() if mode == "lines" else True) for s in strings]
        )
        self.word_lm = word_lm
        self.weight = np.float32(weight)
        # Without bigrams a word's score depends on its trie node only: tabulate it.
        self._node_closing = None
        if word_lm is not None and self.weight != 0 and word_lm.lam == 0.0:
            every = np.arange(len(trie.word_of))
            self._node_closing = self._closing_score(every, np.full(len(every), -1))

    def start(self, batch: int, width: int) -> State:
        """Words mode starts inside a word at the root; lines mode between words."""
        node = np.full((batch, width), 0 if self.mode == "words" else -1, dtype=np.int32)
        return node, np.full((batch, width), -1, dtype=np.int32)

    def _closing_score(self, node: np.ndarray, previous: np.ndarray) -> np.ndarray:
        if self.word_lm is None or self.weight == 0:
            return np.zeros(node.shape, dtype=np.float32)
        if self._node_closing is not None:
            return np.asarray(self._node_closing[np.maximum(node, 0)])
        word = self.trie.word_of[np.maximum(node, 0)]
        closes = (node >= 0) & (word >= 0)
        score = self.weight * self.word_lm.log_prob(previous, word)
        return np.where(closes, score, 0.0).astype(np.float32)

    def score(self, state: State, chars: np.ndarray) -> np.ndarray:
        """0 for allowed extensions, -inf for the rest, plus the word LM's score
        where an extension completes a word."""
        node, previous = state
        at = np.maximum(node, 0)  # between words (lines mode), a letter starts at the root
        spells = self.trie.has_child(at[:, :, None], chars[:, None, :])
        if self.mode == "words":
            return np.asarray(np.where(spells, np.float32(0.0), np.float32(-np.inf)))
        # Any other character is allowed between words and after a complete word,
        # where it closes the word.
        inside = node >= 0
        closable = ~inside | self.trie.complete[at]
        allowed = np.where(self.word_char[chars][:, None, :], spells, closable[:, :, None])
        if self.word_lm is not None and self.weight != 0:
            closing = np.where(inside, self._closing_score(node, previous), np.float32(0.0))
            gain = np.where(self.word_char[chars][:, None, :], np.float32(0.0), closing[:, :, None])
            return np.asarray(np.where(allowed, gain, np.float32(-np.inf)))
        return np.asarray(np.where(allowed, np.float32(0.0), np.float32(-np.inf)))

    def advance(self, state: State, chars: np.ndarray) -> State:
        """Trie node after each appended character (-1 between words) and the last
        completed word."""
        node, previous = state
        at = np.maximum(node, 0)
        is_word_char = self.word_char[chars]
        new_node = np.where(is_word_char, self.trie.child(at, chars), -1).astype(np.int32)
        if self.word_lm is not None and self.weight != 0:
            closes = ~is_word_char & (node >= 0)
            previous = np.where(closes, self.trie.word_of[at], previous).astype(np.int32)
        return new_node, previous

    def finish(self, state: State) -> np.ndarray:
        """A beam may end only after a complete word (or between words, lines mode)."""
        node, previous = state
        complete = (node >= 0) & self.trie.complete[np.maximum(node, 0)]
        ok = complete if self.mode == "words" else (node < 0) | complete
        return np.where(ok, self._closing_score(node, previous), np.float32(-np.inf)).astype(np.float32)


def lexicon_decode(
    probs: np.ndarray,
    charset: str | Sequence[str],
    blank: int,
    lexicon: LexiconSource,
    beam_width: int = DEFAULT_BEAM_WIDTH,
    lengths: np.ndarray | Sequence[int] | None = None,
    *,
    mode: str | None = DEFAULT_LEXICON_MODE,
    nbest: int = DEFAULT_NBEST,
    bigram_text: str | os.PathLike[str] | Iterable[str] | None = None,
    word_weight: float = DEFAULT_WORD_LM_WEIGHT,
    lm: LMSource | None = None,
    lm_weight: float | None = None,
    prune_threshold: float = DEFAULT_PRUNE_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
) -> Decoded | list[Decoded]:
    """Decode with the lexicon as a constraint (`LexiconOptions` through `build_decoder`).

    Args:
        probs, charset, blank, beam_width, lengths, nbest, prune_threshold, top_k:
            as for `beam_search_decode`.
        lexicon: a `Lexicon`, a word-list file (one word per line, optionally with
            a frequency), a word -> frequency mapping, or an iterable of words.
        mode: "words" (one lexicon word per image) or "lines" (word beam search);
            None: "lines" when the charset has a space, else "words" (what
            `make_decoder` and the CLIs do).
        bigram_text: a text file (or lines) to learn word bigrams from; lines mode.
        word_weight: weight of the word bigram log probability.
        lm, lm_weight: an optional character LM, as for `beam_search_decode`.

    Returns:
        One `Decoded` for (T, C) input, a list for (B, T, C); `log_prob` is the CTC
        log probability of the returned text.
    """
    from .factory import build_decoder

    options = LexiconOptions(lexicon=lexicon, mode=mode, bigram=bigram_text, word_weight=word_weight,
                             beam_width=beam_width, nbest=nbest, lm=lm, lm_weight=lm_weight,
                             prune_threshold=prune_threshold, top_k=top_k)
    alphabet = Alphabet.from_charset(charset, blank)
    checked, valid, batched = as_batch(probs, alphabet, lengths)
    results = build_decoder(options, alphabet, blank)(checked, valid)
    return results if batched else results[0]


class LexiconDecoder:
    """A lexicon decoder with its trie and word model built once (`build_decoder` makes
    it from `LexiconOptions`); `char_lm` is an optional character LM scorer added on."""

    def __init__(self, alphabet: Alphabet, options: LexiconOptions, lexicon: Lexicon,
                 char_lm: BeamScorer | None = None):
        mode = options.mode_for(alphabet.chars)
        self.alphabet = alphabet
        self.lexicon = lexicon
        self.trie = lexicon.trie(alphabet, mode)
        self.mode = mode
        self.beam_width, self.nbest = int(options.beam_width), int(options.nbest)
        self.prune_threshold, self.top_k = options.prune_threshold, int(options.top_k)
        bigram_text = options.bigram
        word_lm = None
        if bigram_text is not None:
            if isinstance(bigram_text, (str, os.PathLike)):
                path = Path(bigram_text)
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as err:
                    raise ValueError(f"{path}: cannot read the bigram text ({err})") from None
            else:
                lines = list(bigram_text)
            freqs = np.array([self.lexicon.frequencies.get(w, 1.0) for w in self.trie.words])
            word_lm = WordBigram.from_text(self.trie, lines, freqs)
        elif len(set(self.lexicon.frequencies.values())) > 1:
            # A frequency list: score each completed word by its unigram probability.
            freqs = np.array([self.lexicon.frequencies.get(w, 0.0) for w in self.trie.words])
            word_lm = WordBigram(self.trie, freqs / freqs[freqs > 0].min(), Counter())
        scorers: list[BeamScorer] = [LexiconScorer(self.trie, self.alphabet, mode, word_lm, options.word_weight)]
        if char_lm is not None:
            scorers.append(char_lm)
        self.scorer = scorers[0] if len(scorers) == 1 else CombinedScorer(scorers)

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        """Decode a (B, T, C) batch."""
        checked, lengths, _ = as_batch(probs, self.alphabet, lengths)
        return self.decode_batch(checked, lengths)

    def decode_batch(self, probs: np.ndarray, lengths: np.ndarray) -> list[Decoded]:
        """Decode checked input (see `alphabet.as_batch`)."""
        logp = log_probs(probs, lengths, self.alphabet.blank)
        search = prefix_beam_search(
            logp, self.alphabet.blank, self.beam_width, self.top_k, self.prune_threshold, self.scorer
        )
        results = finish_hypotheses(
            probs, lengths, self.alphabet, logp, search.labels, search.score, self.nbest
        )
        for b in np.nonzero(~np.isfinite(search.score[:, 0]))[0]:
            results[b] = self._complete(probs, lengths, logp, search, int(b))
        return results

    def _complete(self, probs: np.ndarray, lengths: np.ndarray, logp: np.ndarray, search: BeamSearchResult,
                  b: int) -> Decoded:
        # No beam ended on a whole word (the output is far from every lexicon word,
        # or the beam is too narrow): finish the likeliest beam with the most
        # frequent word below its trie node, so the result is still a lexicon word.
        best = int(np.argmax(search.ctc[b]))
        row = search.labels[b, best]
        steps = np.nonzero(row >= 0)[0]
        node = max(int(search.state[0][b, best]), 0)
        spelled = self.trie.encoded[self.trie.best_word[node]]
        suffix = spelled[self.trie.depth[node] :]
        last = int(max(lengths[b], 1)) - 1
        after = (steps[-1] + 1) if len(steps) else 0
        extra_steps = np.minimum(after + np.arange(len(suffix)), last)
        classes = np.concatenate([row[steps], suffix]).astype(np.int64)
        steps = np.concatenate([steps, extra_steps]).astype(np.int64)
        index = np.array([b])
        log_prob = forward_log_probs(logp, index, [classes], self.alphabet.blank)
        owner = np.zeros(len(classes), dtype=np.int64)
        return build_results(probs, lengths, self.alphabet, index, owner, classes, steps, log_prob)[0]
