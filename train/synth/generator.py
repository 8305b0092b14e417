"""`SynthGenerator`: one synthetic sample as a pure function of (configuration, index).

The trip of one sample, all driven by one NumPy generator seeded from ``(seed, index)``:

1. text (`text`): a word, or a line of 3-9 words, of English prose with numbers and
   punctuation, fitted to the charset; or a string of real MNIST digits;
2. hand (`hands`): a vendored handwriting font, a Hershey stroke face, or MNIST;
3. ink (`render`): drawn glyph by glyph (fonts) or stroke by stroke (Hershey);
4. augmentation (`augment`): slant, skew, warp, pen width and pressure, neighbouring
   lines cut in, then paper, light, ruling, blur, noise, JPEG or binarisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from htr.runtime.constants import SEED_LINE_CHARSET, SEED_WORD_CHARSET

from . import augment as aug_mod
from .augment import AUGMENT, AugmentRanges
from .hands import MNIST_HAND, Hand, check_split, font_face, hand_coverage, hands_for_split, mnist_digits
from .render import draw_font, draw_hershey, draw_mnist
from .text import _digit_string_text, _line_text, _random_text, _word_text, english_vocabulary, fit_to_charset

KINDS: tuple[str, ...] = ("words", "lines")
_KIND_SALT = {"words": 1, "lines": 2}


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
        split: which hands: ``"train"``, ``"val"``, ``"test"``, ``"heldout"`` (val + test)
            or ``"all"``.
        seed: with the sample index, fixes every random choice.
        digit_fraction: share of samples that are real MNIST digit strings.
        augment: slant, rotation, warp, stroke width, paper, ink, blur and noise.
        ranges: what augmentation draws from (`augment.STYLES` has presets).
    """

    kind: str = "words"
    charset: str = SEED_WORD_CHARSET
    split: str = "train"
    seed: int = 0
    digit_fraction: float = 0.1
    augment: bool = True
    ranges: AugmentRanges = field(default=AUGMENT)


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
        ranges: AugmentRanges | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        check_split(split)
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
        self.config = SynthConfig(kind, charset, split, int(seed), float(digit_fraction), bool(augment),
                                  ranges if ranges is not None else AUGMENT)
        self.hands = tuple(h for h in hands_for_split(split) if hand_coverage(h))
        if not self.hands:
            raise RuntimeError(
                f"no handwriting hands of split {split!r} are available: pip install 'htr[train]' "
                "(the vendored fonts under train/fonts and hershey-fonts)"
            )
        self._coverage = {h.name: hand_coverage(h) for h in self.hands}
        self._has_digits = any(c.isdigit() for c in charset)
        self._vocab = english_vocabulary()
        self._mnist_split = split if split != "all" else "train"
        if self._has_digits:
            mnist_digits()  # load before any fork so worker processes share it

    def __repr__(self) -> str:
        return f"SynthGenerator({self.config!r})"

    def __getstate__(self) -> SynthConfig:  # pickles as its configuration; caches rebuild
        return self.config

    def __setstate__(self, config: SynthConfig) -> None:
        self.__init__(config.kind, config.charset, config.split, config.seed,  # type: ignore[misc]
                      config.digit_fraction, config.augment, config.ranges)

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
            ink = draw_mnist(text, self._mnist_split, x_height, rng)
            return Sample(self._finish(ink, rng, x_height, None), text, MNIST_HAND)
        ink = self._draw(text, hand, x_height, rng)
        return Sample(self._finish(ink, rng, x_height, hand), text, hand.name)

    def text(self, index: int) -> str:
        """The text of `sample(index)`, without drawing it (for language-model text)."""
        return self._label(index)[2]

    def _jitter(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.config.ranges.glyph_jitter)) if self.config.augment else 0.0

    def _draw(self, text: str, hand: Hand, x_height: float, rng: np.random.Generator) -> np.ndarray:
        jitter = self._jitter(rng)
        if hand.source == "hershey":
            return draw_hershey(text, hand.package, x_height, rng, jitter)
        face = font_face(hand.name)
        assert face is not None  # only hands with coverage are kept
        mnist = self._mnist_split if self._has_digits else None
        return draw_font(text, face, x_height, rng, mnist, jitter)

    def _label(self, index: int) -> tuple[np.random.Generator, float, str, Hand | None]:
        """Sample `index`'s generator (advanced past the text), x-height, text and hand
        (None: real MNIST digits)."""
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, int(index), _KIND_SALT[cfg.kind]])
        x_height = rng.uniform(*cfg.ranges.x_height)
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

    def _neighbour_ink(self, hand: Hand | None, x_height: float, rng: np.random.Generator) -> np.ndarray:
        """Ink of a few other words in the same hand: the line above or below."""
        if hand is None:
            return draw_mnist(_digit_string_text(rng, self.config.charset, "lines"), self._mnist_split, x_height, rng)
        able = self._coverage[hand.name]
        words = [w for w in (fit_to_charset(_word_text(rng, self._vocab), able) for _ in range(8)) if w]
        return self._draw(" ".join(words) or "x", hand, x_height, rng)

    def _finish(self, ink: np.ndarray, rng: np.random.Generator, x_height: float, hand: Hand | None) -> np.ndarray:
        cfg = self.config
        aug = cfg.ranges
        room = int(x_height * 0.4) + 2  # for the warps to move ink into
        ink = aug_mod.crop(ink, (room, room, room, room))
        if cfg.augment:
            ink = aug_mod.geometry(ink, rng, cfg.kind, aug)
            if rng.random() < aug.elastic_p:
                ink = aug_mod.elastic(ink, rng, x_height, aug)
            ink = aug_mod.pen_width(ink, rng, x_height, aug)
            ink = aug_mod.pressure(ink, rng, aug)
            ink = aug_mod.crop(ink, (0, 0, 0, 0))
            ink = aug_mod.neighbours(ink, rng, x_height, aug, lambda: self._neighbour_ink(hand, x_height, rng))
        margins = rng.integers(aug.margin[0], aug.margin[1] + 1, 4)
        return aug_mod.lay_on_paper(aug_mod.crop(ink, tuple(int(m) for m in margins)), rng, x_height,
                                    cfg.augment, aug)
