"""Character and word error rates (Levenshtein distance over characters and over words)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class ErrorRates:
    """Totals over a set: CER = char_errors / chars, WER = word_errors / words."""

    char_errors: int
    chars: int
    word_errors: int
    words: int
    samples: int

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars if self.chars else 0.0

    @property
    def wer(self) -> float:
        return self.word_errors / self.words if self.words else 0.0


def error_rates(pairs: Iterable[tuple[str, str]]) -> ErrorRates:
    """Error rates over (reference, hypothesis) pairs."""
    ce = nc = we = nw = n = 0
    for ref, hyp in pairs:
        ce += edit_distance(ref, hyp)
        nc += len(ref)
        ref_words = ref.split()
        we += edit_distance(ref_words, hyp.split())
        nw += len(ref_words)
        n += 1
    return ErrorRates(ce, nc, we, nw, n)
