"""`WordBigram`: the word model of lines-mode lexicon decoding (unigram frequencies,
optionally interpolated with bigrams counted in a text)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from .constants import WORD_BIGRAM_LAMBDA
from .lexicon import _WORD_RE
from .trie import Trie


class WordBigram:
    """Word bigram probabilities interpolated with unigram frequencies
    (Jelinek-Mercer): P(w | v) = lambda * c(v, w) / c(v) + (1 - lambda) * P(w)."""

    def __init__(self, trie: Trie, freqs: np.ndarray, pairs: Counter[tuple[int, int]], lam: float = WORD_BIGRAM_LAMBDA):
        count = len(trie.words)
        self.count = count
        self.log_unigram = np.log((freqs + 1.0) / (freqs.sum() + count))
        firsts = np.zeros(count)
        keys, values = [], []
        for (v, w), n in pairs.items():
            firsts[v] += n
            keys.append(v * count + w)
            values.append(n)
        order = np.argsort(np.array(keys, dtype=np.int64))
        self.keys = np.array(keys, dtype=np.int64)[order]
        self.pair_counts = np.array(values, dtype=np.float64)[order]
        self.firsts = firsts
        self.lam = lam if len(self.keys) else 0.0

    @classmethod
    def from_text(cls, trie: Trie, lines: Iterable[str], freqs: np.ndarray | None = None) -> WordBigram:
        """Count word pairs (consecutive lexicon words) in lines of text."""
        index = {w: i for i, w in enumerate(trie.words)}
        unigrams = np.zeros(len(trie.words))
        pairs: Counter[tuple[int, int]] = Counter()
        for line in lines:
            ids = [index.get(w, -1) for w in _WORD_RE.findall(line)]
            for i in ids:
                if i >= 0:
                    unigrams[i] += 1
            for v, w in zip(ids, ids[1:]):
                if v >= 0 and w >= 0:
                    pairs[(v, w)] += 1
        if freqs is not None:
            unigrams = unigrams + freqs / max(freqs.sum(), 1.0) * max(unigrams.sum(), 1.0)
        return cls(trie, unigrams, pairs)

    def log_prob(self, previous: np.ndarray, word: np.ndarray) -> np.ndarray:
        """log P(word | previous), broadcast; previous -1 means line start."""
        if self.lam == 0.0:
            return np.asarray(self.log_unigram[np.maximum(word, 0)])
        uni = np.exp(self.log_unigram[np.maximum(word, 0)])
        key = np.maximum(previous, 0).astype(np.int64) * self.count + np.maximum(word, 0)
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        pair = np.where(self.keys[at] == key, self.pair_counts[at], 0.0)
        first = self.firsts[np.maximum(previous, 0)]
        has = (previous >= 0) & (first > 0)
        bigram = np.where(has, pair / np.where(has, first, 1.0), 0.0)
        lam = np.where(has, self.lam, 0.0)
        return np.asarray(np.log(lam * bigram + (1.0 - lam) * uni))
