"""The default English lexicon, built from the `wordfreq` package.

`wordfreq` ships its frequency tables inside the package, so building the list never
touches the network. The list is written once to the user cache directory
(``$HTR_CACHE_DIR``, else ``$XDG_CACHE_HOME/htr``, else ``~/.cache/htr``; on Windows
``%LOCALAPPDATA%\\htr``) and read from there afterwards, so `wordfreq` is only
needed the first time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .constants import CACHE_SUBDIR, DEFAULT_WORDLIST_LANGUAGE, DEFAULT_WORDLIST_SIZE
from .lexicon import Lexicon

#: Punctuation that is a "word" of its own in word-level data sets such as IAM.
PUNCTUATION_TOKENS = tuple(".,;:!?'\"-()&#*+/")
#: Frequency given to each punctuation token (wordfreq's scale: 'the' is ~0.05).
PUNCTUATION_FREQUENCY = 0.005
#: Capitalised variants ("The") get this share of the lower-case word's frequency.
CAPITALISED_SHARE = 0.2


class WordlistUnavailable(RuntimeError):
    """The default lexicon cannot be built: `wordfreq` is not installed."""


def cache_dir() -> Path:
    """Where htr keeps files it builds for the user (not created here)."""
    if os.environ.get("HTR_CACHE_DIR"):
        return Path(os.environ["HTR_CACHE_DIR"])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / CACHE_SUBDIR
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / CACHE_SUBDIR


def default_lexicon(
    language: str = DEFAULT_WORDLIST_LANGUAGE, size: int = DEFAULT_WORDLIST_SIZE
) -> Lexicon:
    """The `size` most frequent words of `language` with their frequencies, plus
    capitalised variants and punctuation tokens. Cached after the first call."""
    path = cache_dir() / f"wordlist-{language}-{size}.tsv"
    if path.is_file():
        try:
            return Lexicon.from_file(path)
        except ValueError:
            pass  # a damaged cache file is rebuilt below
    frequencies = build_wordlist(language, size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{w}\t{f:.6g}\n" for w, f in frequencies.items()), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only home still gets its lexicon, just not cached
    return Lexicon(frequencies)


def build_wordlist(language: str, size: int) -> dict[str, float]:
    """Word -> frequency from `wordfreq` (WordlistUnavailable if it is missing)."""
    try:
        import wordfreq
    except ImportError:
        raise WordlistUnavailable(
            "the default lexicon needs the 'wordfreq' package: pip install wordfreq "
            "(or pass your own word list with --lexicon FILE)"
        ) from None
    words = wordfreq.top_n_list(language, size)
    if not words:
        raise WordlistUnavailable(f"wordfreq has no word list for language {language!r}")
    frequencies: dict[str, float] = {}
    for word in words:
        if any(ch.isdigit() for ch in word):
            continue
        freq = wordfreq.word_frequency(word, language)
        frequencies[word] = frequencies.get(word, 0.0) + freq
    for word, freq in list(frequencies.items()):
        variant = "I" if word == "i" else word[:1].upper() + word[1:]
        if variant != word:
            frequencies[variant] = frequencies.get(variant, 0.0) + freq * CAPITALISED_SHARE
    for mark in PUNCTUATION_TOKENS:
        frequencies.setdefault(mark, PUNCTUATION_FREQUENCY)
    return frequencies
