"""Spelling correction after decoding: each word not in a frequency lexicon is
replaced by the most frequent lexicon word at the smallest edit distance (1, or 2
for longer words), keeping its capitalisation.

This is the line-level seed's post-pass, for users who want that behaviour. The
lexicon decoder is the better tool: it chooses among lexicon words with the
network's own probabilities, while this pass sees only the final text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from .constants import SPELL_MAX_DISTANCE, SPELL_MIN_LENGTH_FOR_DISTANCE_2
from .lexicon import Lexicon

_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


class SpellIndex:
    """Lower-cased lexicon words indexed by their one-deletion variants."""

    def __init__(self, lexicon: Lexicon):
        self.freq: dict[str, float] = {}
        for word, f in lexicon.frequencies.items():
            low = word.lower()
            self.freq[low] = self.freq.get(low, 0.0) + f
        self.deletes: dict[str, list[str]] = {}
        for word in self.freq:
            for variant in {word} | _deletes(word):
                self.deletes.setdefault(variant, []).append(word)
        self.letters = "".join(sorted({c for w in self.freq for c in w}))

    def correct_word(self, word: str, max_distance: int = SPELL_MAX_DISTANCE) -> str:
        """The best lexicon word for `word`, or `word` itself if none is close."""
        low = word.lower()
        if low in self.freq or len(word) < 2:
            return word
        limit = max_distance if len(word) >= SPELL_MIN_LENGTH_FOR_DISTANCE_2 else min(1, max_distance)
        probes = {low} | _deletes(low)
        if limit >= 2:
            probes |= _edits(low, self.letters)
        candidates = {w for p in probes for w in self.deletes.get(p, ())}
        best, best_key = None, None
        for cand in candidates:
            d = _levenshtein(low, cand, limit)
            if d <= limit:
                key = (d, -self.freq[cand], cand)
                if best_key is None or key < best_key:
                    best, best_key = cand, key
        return word if best is None else _match_case(word, best)


def spell_correct(
    text: str,
    lexicon: Lexicon | SpellIndex | str | os.PathLike[str] | Iterable[str] | Mapping[str, float],
    max_distance: int = SPELL_MAX_DISTANCE,
) -> str:
    """Correct every word of `text` against `lexicon` (see the module docstring).

    `lexicon` may be a `Lexicon`, a prepared `SpellIndex` (fastest for many calls),
    a word-list file, a word -> frequency mapping or an iterable of words. Text
    between words (spaces, digits, punctuation) is kept as it is.
    """
    index = lexicon if isinstance(lexicon, SpellIndex) else SpellIndex(Lexicon.coerce(lexicon))
    return _WORD_RE.sub(lambda m: index.correct_word(m.group(0), max_distance), text)


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _edits(word: str, letters: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters}
    out |= {a + c + b for a, b in splits for c in letters}
    return out


def _levenshtein(a: str, b: str, limit: int) -> int:
    # Optimal string alignment: an adjacent swap ("teh") is one edit, as it is one
    # slip of the pen.
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        if min(current) > limit and (not before or min(previous) > limit):
            return limit + 1
        before, previous = previous, current
    return previous[-1]


def _match_case(original: str, word: str) -> str:
    if original.isupper() and len(original) > 1:
        return word.upper()
    if original[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
