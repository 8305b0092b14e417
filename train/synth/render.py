"""Drawing text as ink: fonts glyph by glyph, Hershey pen strokes, real MNIST digits.

Every function returns an ink-coverage mask: uint8, 255 = full ink, 0 = paper, with room
around the writing; the caller crops it. All randomness comes from the generator given.

Fonts are too regular to pass for handwriting, so each glyph is drawn on its own: its
size, its height above the baseline and its distance to the previous glyph vary a little
around the font's own metrics (kerning kept), and the baseline wobbles along the line.
Numbers inside font text may be written with real MNIST digits, so digits appear in
context rather than only as digit strings.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .hands import FontFace, hershey_face, mnist_by_digit, mnist_digits, pil_font

NUMERIC = frozenset("0123456789/.:,-")


def gaps(rng: np.random.Generator, n: int, space: float) -> list[float]:
    """Widths of the spaces between `n` words: handwriting spaces words unevenly."""
    scale = float(rng.uniform(0.7, 1.5))  # some writers space widely, some tightly
    return [space * scale * float(rng.uniform(0.7, 1.8)) for _ in range(n)]


@functools.lru_cache(maxsize=65536)
def _glyph(path: str, size: int, ch: str) -> tuple[np.ndarray, int, int]:
    """A glyph's ink and its top-left offset from the pen position on the baseline."""
    from PIL import Image, ImageDraw

    font = pil_font(path, size)
    left, top, right, bottom = font.getbbox(ch, anchor="ls")
    if right <= left or bottom <= top:
        return np.zeros((0, 0), np.uint8), 0, 0
    image = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(image).text((-left, -top), ch, fill=255, font=font, anchor="ls")
    return np.asarray(image), left, top


@functools.lru_cache(maxsize=65536)
def _advance(path: str, size: int, prev: str, ch: str) -> float:
    """How far the pen moves for `ch` after `prev`, kerning included."""
    font = pil_font(path, size)
    if not prev:
        return float(font.getlength(ch))
    return float(font.getlength(prev + ch) - font.getlength(prev))


def _mnist_glyph(digit: int, split: str, height: float, rng: np.random.Generator) -> np.ndarray:
    """One real MNIST digit, cropped to its ink and scaled to `height` pixels."""
    import cv2

    images, _ = mnist_digits()
    pool = mnist_by_digit(split)[digit]
    img = images[int(pool[int(rng.integers(len(pool)))])]
    rows, cols = np.nonzero(img > 30)
    crop = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    s = height * float(rng.uniform(0.85, 1.1)) / crop.shape[0]
    return cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                      interpolation=cv2.INTER_LINEAR)


def _compose(pieces: list[tuple[np.ndarray, float, float]], pad: int) -> np.ndarray:
    """Paste (ink, x, y) pieces (top-left corners, any sign) onto one canvas with `pad` around."""
    pieces = [p for p in pieces if p[0].size]
    if not pieces:
        return np.zeros((2 * pad + 1, 2 * pad + 1), np.uint8)
    x0 = min(x for _, x, _ in pieces)
    y0 = min(y for _, _, y in pieces)
    x1 = max(x + ink.shape[1] for ink, x, _ in pieces)
    y1 = max(y + ink.shape[0] for ink, _, y in pieces)
    canvas = np.zeros((int(math.ceil(y1 - y0)) + 2 * pad + 1, int(math.ceil(x1 - x0)) + 2 * pad + 1), np.uint8)
    for ink, x, y in pieces:
        cx, cy = int(round(x - x0)) + pad, int(round(y - y0)) + pad
        region = canvas[cy : cy + ink.shape[0], cx : cx + ink.shape[1]]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
    return canvas


def draw_font(text: str, face: FontFace, x_height: float, rng: np.random.Generator,
              mnist_split: str | None = None, jitter: float = 1.0) -> np.ndarray:
    """Draw `text` glyph by glyph in `face`; numbers may be drawn in MNIST digits.

    `jitter` scales the per-glyph variation (0: the font as designed).
    """
    size = max(8, int(round(x_height / face.x_height)))
    font = pil_font(face.path, size)
    scale_sd = jitter * float(rng.uniform(0.0, 0.07))  # per-glyph size
    space_sd = jitter * float(rng.uniform(0.0, 0.04)) * size  # per-glyph spacing
    lift_sd = jitter * float(rng.uniform(0.0, 0.03)) * size  # per-glyph height off the baseline
    tracking = jitter * float(rng.uniform(-0.02, 0.06)) * size  # the whole hand's letter spacing
    wobble = jitter * float(rng.uniform(0.0, 0.06)) * size  # slow wave of the baseline
    period = float(rng.uniform(4.0, 12.0)) * size
    phase = float(rng.uniform(0, 2 * math.pi))
    words = text.split(" ")
    word_gaps = gaps(rng, len(words) - 1, float(font.getlength(" ")) or size * 0.3)
    mnist_p = 0.5 if mnist_split is not None else 0.0
    pieces: list[tuple[np.ndarray, float, float]] = []
    x = 0.0
    for i, word in enumerate(words):
        drift = float(rng.normal(0, size * 0.03))
        mnist = bool(word) and mnist_p > 0 and set(word) <= NUMERIC and any(c.isdigit() for c in word) \
            and rng.random() < mnist_p
        prev = ""
        for ch in word:
            base = drift + wobble * math.sin(phase + 2 * math.pi * x / period)
            if mnist and ch.isdigit():
                assert mnist_split is not None
                ink = _mnist_glyph(int(ch), mnist_split, x_height * 1.45, rng)
                gap = size * float(rng.uniform(0.02, 0.12))
                pieces.append((ink, x + gap, base - ink.shape[0] + float(rng.normal(0, lift_sd))))
                x += ink.shape[1] + 2 * gap
                prev = ""
                continue
            s = max(6, int(round(size * (1.0 + float(rng.normal(0, scale_sd))))))
            ink, left, top = _glyph(face.path, s, ch)
            pieces.append((ink, x + left, base + top + float(rng.normal(0, lift_sd))))
            x += _advance(face.path, size, prev, ch) + tracking + float(rng.normal(0, space_sd))
            prev = ch
        x += word_gaps[i] if i < len(word_gaps) else 0.0
    return _compose(pieces, pad=size)


def draw_hershey(text: str, face: str, x_height: float, rng: np.random.Generator,
                 jitter: float = 1.0) -> np.ndarray:
    """Draw `text` as Hershey pen strokes, each stroke moved, scaled and bent a little."""
    import cv2

    font, _ = hershey_face(face)
    unit = x_height / 9.0  # Hershey script faces: x-height about 9 units, caps 21
    pen = rng.uniform(0.06, 0.18) * (0.6 if face == "scriptc" else 1.0)  # scriptc strokes are doubled
    thickness = max(1, int(round(x_height * pen)))
    pad = 2 * x_height + thickness
    polylines, x = [], 0.0
    words = text.split(" ")
    word_gaps = gaps(rng, len(words) - 1, 11.0)  # ink-to-ink, in font units
    bend = jitter * float(rng.uniform(0.0, 0.5))  # font units of smooth wander along a stroke
    for i, word in enumerate(words):
        strokes = [np.asarray(s, dtype=np.float32) for s in font.strokes_for_text(word) if len(s) > 1]
        if strokes:
            left = min(float(s[:, 0].min()) for s in strokes)
            right = max(float(s[:, 0].max()) for s in strokes)
            dy = float(rng.normal(0, 0.4))
            for s in strokes:
                centre = s.mean(axis=0)
                k = 1.0 + jitter * float(rng.normal(0, 0.05))
                s = (s - centre) * np.float32(k) + centre
                s = s + np.float32(jitter * rng.normal(0, 0.3, 2))
                if bend > 0:
                    s = s + np.cumsum(rng.normal(0, bend / max(1, len(s)) ** 0.5, s.shape), axis=0).astype(np.float32)
                polylines.append(s + np.float32([x - left, dy]))
            x += right - left
        x += word_gaps[i] if i < len(word_gaps) else 0
    width = int(x * unit + 2 * pad) + 1
    height = int(33 * unit + 2 * pad) + 1  # cap line -12 to descender line 21
    canvas = np.zeros((height, width), np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = np.float32([unit, unit]) * (1 << shift)
    offset = np.float32([pad, pad + 12 * unit]) * (1 << shift)
    pts = [np.round(p * scale + offset).astype(np.int32) for p in polylines]
    cv2.polylines(canvas, pts, False, 255, thickness, cv2.LINE_AA, shift)
    return canvas


def draw_mnist(text: str, split: str, x_height: float, rng: np.random.Generator) -> np.ndarray:
    """Real MNIST digits side by side; separators (/ : . - ,) drawn with a matching pen."""
    import cv2

    pen = int(rng.integers(2, 4))
    h = 20  # MNIST digits are size-normalised to a 20-pixel box
    pieces: list[tuple[np.ndarray, int]] = []  # (ink, vertical offset)
    for ch in text:
        if ch.isdigit():
            crop = _mnist_glyph(int(ch), split, h * float(rng.uniform(0.9, 1.05)), rng)
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
    digit_gaps = [int(rng.integers(0, 6)) for _ in pieces]  # touching digits, never one over another
    width = sum(p.shape[1] for p, _ in pieces) + sum(digit_gaps) + 20
    canvas = np.zeros((h + 20, max(width, 1)), np.uint8)
    x = 10
    for (ink, top), gap in zip(pieces, digit_gaps):
        y = 8 + top
        region = canvas[y : y + ink.shape[0], x : x + ink.shape[1]]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
        x = max(0, x + ink.shape[1] + gap)
    # MNIST digits stand about as tall as capitals: 20 px -> 1.45 x-heights
    s = x_height * 1.45 / h
    return cv2.resize(canvas, (max(1, round(canvas.shape[1] * s)), max(1, round(canvas.shape[0] * s))),
                      interpolation=cv2.INTER_LINEAR)
