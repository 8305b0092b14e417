"""Synthetic text: English prose tokens, lines, numbers and digit strings, fitted to a charset.

Every function draws from the NumPy generator it is given, so a sample's text is a pure
function of its seed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

WORD_COUNT = 30_000  # how many of wordfreq's most frequent English words to draw from
# Words are drawn with probability frequency**FREQ_EXPONENT: 1 would be natural English
# (the top 100 words fill half of all text); 0.6 keeps common words common but gives the
# rare ones, and with them rare letter sequences, a real share (top 100: about a quarter).
FREQ_EXPONENT = 0.6
LINE_WORDS = (3, 9)  # words per line, inclusive, like IAM lines
DIGIT_STRING_LENGTH = (2, 8)  # digits per MNIST digit string, inclusive

# Unicode a word list or a user may bring, mapped to the charset's ASCII look-alikes.
_ASCII_LOOKALIKES = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
        "\u2014": "-", "\u2026": ".", "\u00e9": "e", "\u00e8": "e", "\u00e0": "a",
        "\u00e1": "a", "\u00ed": "i", "\u00f3": "o", "\u00fa": "u", "\u00f1": "n",
        "\u00e7": "c", "\u00fc": "u", "\u00f6": "o", "\u00e4": "a",
    }
)

_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|[a-z](?:\.[a-z])+|[0-9]+(?:st|nd|rd|th)")

# Punctuation attached after a word and its probability (IAM-like prose).
_TRAILING = ((",", 0.075), (".", 0.055), ("?", 0.008), ("!", 0.006), (";", 0.006), (":", 0.006))
# Stand-alone punctuation tokens: IAM's words.txt has one image per punctuation mark.
_PUNCT_TOKENS = (",", ".", "\"", "'", "-", "(", ")", ";", ":", "?", "!", "&", "#", "/", "*", "+")
_PUNCT_WEIGHTS = np.array([30, 28, 8, 4, 6, 3, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1], dtype=float)
_PUNCT_CDF = np.cumsum(_PUNCT_WEIGHTS) / _PUNCT_WEIGHTS.sum()


def fit_to_charset(text: str, charset: str) -> str:
    """Return `text` with every character outside `charset` mapped or removed.

    A character not in the charset becomes its other case if that is in the charset, then
    its ASCII look-alike (curly quotes, dashes, accents), else it is dropped. Runs of spaces
    collapse to one and the ends are stripped, so the result is a valid label.
    """
    allowed = set(charset)
    out = []
    for ch in text.translate(_ASCII_LOOKALIKES):
        if ch in allowed:
            out.append(ch)
        elif ch.lower() in allowed:
            out.append(ch.lower())
        elif ch.upper() in allowed:
            out.append(ch.upper())
        elif ch.isspace():
            out.append(" ")  # a word break; removed below if the charset has no space
    fitted = " ".join("".join(out).split())
    return fitted if " " in allowed else fitted.replace(" ", "")


@dataclass(frozen=True)
class Vocabulary:
    """English words with the cumulative sampling weights that `draw` searches."""

    words: tuple[str, ...]
    cdf: np.ndarray

    def draw(self, rng: np.random.Generator) -> str:
        """One word, drawn by flattened frequency."""
        i = int(np.searchsorted(self.cdf, rng.random(), side="right"))
        return self.words[min(i, len(self.words) - 1)]


@functools.lru_cache(maxsize=1)
def english_vocabulary() -> Vocabulary:
    """The `WORD_COUNT` most frequent English words (wordfreq), weighted by `FREQ_EXPONENT`."""
    try:
        import wordfreq
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("synthetic text needs `wordfreq`: pip install 'htr[train]'") from err
    words, weights = [], []
    for word in wordfreq.top_n_list("en", WORD_COUNT):
        word = word.translate(_ASCII_LOOKALIKES)
        if not _WORD_RE.fullmatch(word) or (len(word) == 1 and word not in "ai"):
            continue
        if "." in word:
            word += "."  # wordfreq's "u.s" / "e.g" / "p.m" are written "U.S." / "e.g." / "p.m."
        words.append(word)
        weights.append(wordfreq.word_frequency(word.rstrip("."), "en") or 1e-9)
    w = np.asarray(weights, dtype=np.float64) ** FREQ_EXPONENT
    return Vocabulary(tuple(words), np.cumsum(w) / w.sum())


def _number(rng: np.random.Generator) -> str:
    """A number written the ways prose writes numbers: counts, years, dates, times, money."""
    r = rng.random()
    if r < 0.35:
        return str(int(10 ** rng.uniform(0, 3.3)))
    if r < 0.55:
        return str(int(rng.integers(1800, 2031)))
    if r < 0.65:
        return f"{rng.integers(1, 32)}/{rng.integers(1, 13)}/{rng.integers(0, 100):02d}"
    if r < 0.73:
        return f"{rng.integers(0, 24)}:{rng.integers(0, 60):02d}"
    if r < 0.83:
        return f"{rng.integers(0, 100)}.{rng.integers(0, 100):0{int(rng.integers(1, 3))}d}"
    if r < 0.90:
        return f"{rng.integers(1, 1000)},{rng.integers(0, 1000):03d}"
    if r < 0.95:
        n = int(rng.integers(1, 32))
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"
    return f"{rng.integers(1900, 2000)}-{rng.integers(0, 100):02d}"


def _word(rng: np.random.Generator, vocab: Vocabulary, number_p: float = 0.06) -> str:
    """One prose token: a word or number with realistic case and attached punctuation."""
    if rng.random() < number_p:
        word = _number(rng)
    else:
        word = vocab.draw(rng)
        if rng.random() < 0.02:
            word = f"{word}-{vocab.draw(rng)}"  # compound: "well-known"
        if rng.random() < 0.02 and "'" not in word and word[-1].isalpha():
            word += "'" if word.endswith("s") else "'s"  # possessive
        case = rng.random()
        if word == "i" or word.startswith("i'"):
            word = "I" + word[1:]
        elif case < 0.05:
            word = word.upper()
        elif case < 0.22:
            word = word[0].upper() + word[1:]
        elif case < 0.225:
            word = "&" if rng.random() < 0.5 else "#" + str(rng.integers(1, 100))
    r = rng.random()
    for mark, p in _TRAILING:
        if r < p:
            word += mark
            break
        r -= p
    r = rng.random()
    if r < 0.025:
        word = '"' + word + '"' if rng.random() < 0.4 else ('"' + word if rng.random() < 0.5 else word + '"')
    elif r < 0.037:
        word = "(" + word + ")" if rng.random() < 0.4 else ("(" + word if rng.random() < 0.5 else word + ")")
    elif r < 0.040:
        word = "'" + word + "'"
    elif r < 0.042:
        word = "*" + word
    return word


def _word_text(rng: np.random.Generator, vocab: Vocabulary) -> str:
    """A words-kind label: one token, sometimes a stand-alone punctuation mark as in IAM."""
    if rng.random() < 0.06:
        return _PUNCT_TOKENS[int(np.searchsorted(_PUNCT_CDF, rng.random(), side="right"))]
    return _word(rng, vocab)


def _line_text(rng: np.random.Generator, vocab: Vocabulary) -> str:
    """A lines-kind label: 3-9 prose tokens, often starting a sentence, sometimes ending one."""
    # Some lines are about numbers (dates, amounts, addresses): digits in context, not alone.
    number_p = 0.25 if rng.random() < 0.15 else 0.05
    words = [_word(rng, vocab, number_p) for _ in range(int(rng.integers(LINE_WORDS[0], LINE_WORDS[1] + 1)))]
    case = rng.random()
    if case < 0.03:
        words = [w.upper() for w in words]  # a heading or a form field written in capitals
    elif case < 0.08:
        words = [w[0].upper() + w[1:] for w in words]  # Title Case: names, addresses
    if rng.random() < 0.5 and words[0][0].islower():
        words[0] = words[0][0].upper() + words[0][1:]
    if rng.random() < 0.25 and words[-1][-1].isalnum():
        words[-1] += "."
    if rng.random() < 0.02:
        words.insert(int(rng.integers(1, len(words))), "-")  # a dash between words
    return " ".join(words)


def _random_text(rng: np.random.Generator, charset: str, kind: str) -> str:
    """Last resort for charsets English cannot fill (e.g. only symbols): random characters."""
    chars = [c for c in charset if c != " "]
    n = int(rng.integers(1, 9))
    text = "".join(chars[int(i)] for i in rng.integers(0, len(chars), n))
    if kind == "lines" and n > 2 and " " in charset:
        k = int(rng.integers(1, n - 1))
        text = text[:k] + " " + text[k:]
    return text



def _digit_string_text(rng: np.random.Generator, charset: str, kind: str) -> str:
    """Digits (2-8) as dates, times, decimals, phone numbers or plain numbers."""
    digits = "0123456789"
    groups = 1 if kind == "words" else int(rng.integers(2, 5))
    texts = []
    for _ in range(groups):
        n = int(rng.integers(DIGIT_STRING_LENGTH[0], DIGIT_STRING_LENGTH[1] + 1))
        s = "".join(digits[int(d)] for d in rng.integers(0, 10, n))
        r = rng.random()
        if r < 0.15 and n >= 4 and "/" in charset:  # date
            s = s[:2] + "/" + s[2:4] + ("/" + s[4:] if n > 4 else "")
        elif r < 0.25 and n == 4 and ":" in charset:  # time
            s = s[:2] + ":" + s[2:]
        elif r < 0.35 and n >= 3 and "." in charset:  # decimal
            k = int(rng.integers(1, n))
            s = s[:k] + "." + s[k:]
        elif r < 0.42 and n >= 5 and "-" in charset:  # phone / range
            s = s[:3] + "-" + s[3:]
        elif r < 0.48 and n >= 4 and "," in charset:  # thousands
            s = s[:-3] + "," + s[-3:]
        texts.append(s)
    return " ".join(texts)

