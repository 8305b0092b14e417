"""`Lexicon`: the words a lexicon decoder may read, with their frequencies.

Letters (``str.isalpha``) are word characters: lexicon entries are split at other
characters in lines mode ("don't" -> "don", "t"), and kept whole in words mode.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .alphabet import Alphabet
    from .trie import Trie

#: A word, for lexicon lookups and word bigrams: a run of letters.
_WORD_RE = re.compile(r"[^\W\d_]+")


class Lexicon:
    """Words with frequencies (1 each when the source has none)."""

    def __init__(self, frequencies: Mapping[str, float]):
        words = {w: float(f) for w, f in frequencies.items() if w and not w.isspace()}
        if not words:
            raise ValueError("the lexicon is empty")
        self.frequencies: dict[str, float] = words

    @classmethod
    def from_words(cls, words: Iterable[str]) -> Lexicon:
        """A lexicon from words; a word listed n times gets frequency n."""
        return cls(Counter(w.strip() for w in words if w.strip()))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Lexicon:
        """Read one word per line, optionally followed by a tab or space and its
        frequency (``the 23135851162``). Blank lines and ``# `` comments (hash and
        space) are skipped, so ``#`` alone can still be a word."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read the lexicon ({err})") from None
        freqs: dict[str, float] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("# "):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) == 2:
                try:
                    freqs[parts[0]] = freqs.get(parts[0], 0.0) + float(parts[1])
                    continue
                except ValueError:
                    pass
            freqs[line] = freqs.get(line, 0.0) + 1.0
        if not freqs:
            raise ValueError(f"{path}: the lexicon has no words")
        return cls(freqs)

    @classmethod
    def coerce(cls, source: Lexicon | str | os.PathLike[str] | Iterable[str] | Mapping[str, float]) -> Lexicon:
        """A `Lexicon` from a lexicon, a file path, a word->frequency map or words."""
        if isinstance(source, Lexicon):
            return source
        if isinstance(source, (str, os.PathLike)):
            return cls.from_file(source)
        if isinstance(source, Mapping):
            return cls(source)
        return cls.from_words(source)

    def __contains__(self, word: str) -> bool:
        return word in self.frequencies

    def __len__(self) -> int:
        return len(self.frequencies)

    def trie(self, alphabet: Alphabet, mode: str) -> Trie:
        """The lexicon's prefix trie over `alphabet`'s classes (built on each call)."""
        from .trie import Trie

        return Trie.build(self, alphabet, split_words=(mode == "lines"))
