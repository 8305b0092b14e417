"""Augmentation: what a hand, a pen, paper, a scanner and a phone camera do to writing.

Two layers, each drawing from `AugmentRanges`:

- on the ink mask (`warp_ink`): slant both ways, skew, stretch, elastic wobble, pen width
  from hairline to marker, pen pressure, and parts of the neighbouring lines' descenders
  and ascenders cut in at the top and bottom;
- on the page (`lay_on_paper`): grey or textured paper, uneven light, ruled lines, ink
  level and low contrast, blur, noise, JPEG, and binarised scans.

Presets: `AUGMENT` (training), `HARD` (the hardest scan style, for test sets), `CLEAN`
(almost none: slant, warp and paper off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class AugmentRanges:
    """The ranges augmentation draws from (uniform unless said otherwise).

    Attributes:
        x_height: x-height of the writing in pixels (sets the natural image size).
        glyph_jitter: scale of the per-glyph variation of size, spacing and baseline.
        shear: slant, as x shift per pixel of height (positive leans right).
        rotation_deg: rotation of a word; lines use a third of it.
        stretch: horizontal scale (narrow to wide writing).
        elastic_px: largest elastic displacement, in pixels per x-height of 20.
        elastic_p: probability of an elastic warp.
        thin_p: probability of a thinner pen; bold_p: of a thicker one, up to `bold_px`
            pixels per x-height of 20 (a marker).
        pressure_p: probability of uneven pen pressure; pressure: the faintest ink then.
        neighbour_p: probability of a neighbouring line's strokes cut in above or below.
        blur_p, blur_sigma: probability and sigma of a Gaussian blur.
        paper: paper brightness; texture_amp: its low-frequency variation.
        light: largest brightness change across the image (uneven light, vignetting).
        ruled_p: probability of ruled lines.
        ink: ink darkness at full coverage (0 black); min_contrast: paper minus ink, at least.
        noise_sigma: per-pixel Gaussian noise.
        jpeg_p, jpeg_quality: probability and quality of a JPEG round trip.
        binarise_p: probability of a black-and-white scan.
        margin: margin around the tight crop, per side, in pixels.
    """

    x_height: tuple[float, float] = (14.0, 28.0)
    glyph_jitter: tuple[float, float] = (0.3, 1.3)
    shear: tuple[float, float] = (-0.4, 0.5)
    rotation_deg: tuple[float, float] = (-3.0, 3.0)
    stretch: tuple[float, float] = (0.75, 1.25)
    elastic_px: tuple[float, float] = (0.5, 2.2)
    elastic_p: float = 0.5
    thin_p: float = 0.15
    bold_p: float = 0.3
    bold_px: float = 3.0
    pressure_p: float = 0.3
    pressure: tuple[float, float] = (0.45, 0.9)
    neighbour_p: float = 0.3
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    paper: tuple[float, float] = (185.0, 252.0)
    texture_amp: tuple[float, float] = (0.0, 20.0)
    light: tuple[float, float] = (0.0, 40.0)
    ruled_p: float = 0.2
    ink: tuple[float, float] = (0.0, 130.0)
    min_contrast: float = 45.0
    noise_sigma: tuple[float, float] = (0.0, 8.0)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (20, 90)
    binarise_p: float = 0.08
    margin: tuple[int, int] = (2, 10)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_values(self, **values: object) -> "AugmentRanges":
        """A copy with some ranges changed (unknown names are a `ValueError`)."""
        unknown = set(values) - set(self.names())
        if unknown:
            raise ValueError(f"unknown augmentation ranges: {', '.join(sorted(unknown))}")
        return replace(self, **values)  # type: ignore[arg-type]


AUGMENT = AugmentRanges()
# The hardest style that a person still reads without effort: every effect at the top of
# its training range or beyond, none so strong that the writing is lost.
HARD = AugmentRanges(
    glyph_jitter=(0.8, 1.5), shear=(-0.55, 0.6), rotation_deg=(-5.0, 5.0), stretch=(0.7, 1.3),
    elastic_px=(1.0, 2.5), elastic_p=0.8, thin_p=0.25, bold_p=0.35, bold_px=2.5, pressure_p=0.5,
    pressure=(0.45, 0.85), neighbour_p=0.5, blur_p=0.7, blur_sigma=(0.4, 1.1), paper=(170.0, 245.0),
    texture_amp=(5.0, 22.0), light=(10.0, 45.0), ruled_p=0.4, ink=(20.0, 130.0), min_contrast=50.0,
    noise_sigma=(2.0, 9.0), jpeg_p=0.6, jpeg_quality=(20, 60), binarise_p=0.15,
)
CLEAN = AugmentRanges(
    glyph_jitter=(0.0, 0.3), shear=(-0.05, 0.05), rotation_deg=(-0.5, 0.5), stretch=(0.95, 1.05),
    elastic_p=0.0, thin_p=0.0, bold_p=0.0, pressure_p=0.0, neighbour_p=0.0, blur_p=0.0,
    paper=(240.0, 252.0), texture_amp=(0.0, 3.0), light=(0.0, 5.0), ruled_p=0.0, ink=(0.0, 40.0),
    noise_sigma=(0.0, 2.0), jpeg_p=0.0, binarise_p=0.0,
)
STYLES: dict[str, AugmentRanges] = {"default": AUGMENT, "hard": HARD, "clean": CLEAN}


def ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the pixels with real ink; w = 0 if there are none."""
    import cv2

    _, mask = cv2.threshold(ink, 40, 255, cv2.THRESH_BINARY)
    return cv2.boundingRect(mask)


def crop(ink: np.ndarray, margins: tuple[int, int, int, int]) -> np.ndarray:
    """Crop to the ink, then pad by (top, bottom, left, right) pixels."""
    import cv2

    x, y, w, h = ink_box(ink)
    if w == 0:
        return ink
    t, b, l, r = (int(m) for m in margins)
    return cv2.copyMakeBorder(ink[y : y + h, x : x + w], t, b, l, r, cv2.BORDER_CONSTANT, value=0)


def geometry(ink: np.ndarray, rng: np.random.Generator, kind: str, aug: AugmentRanges) -> np.ndarray:
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


def elastic(ink: np.ndarray, rng: np.random.Generator, x_height: float, aug: AugmentRanges) -> np.ndarray:
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


def pen_width(ink: np.ndarray, rng: np.random.Generator, x_height: float, aug: AugmentRanges) -> np.ndarray:
    """A thinner pen (hairline) or a thicker one (up to a marker); thinning never erases."""
    import cv2

    r = rng.random()
    if r < aug.thin_p:
        thin = cv2.erode(ink, np.ones((2, 2), np.uint8))
        return thin if int(thin.sum()) > 0.5 * int(ink.sum()) else ink
    if r < aug.thin_p + aug.bold_p:
        px = max(1, int(round(rng.uniform(0.5, aug.bold_px) * x_height / 20.0)))
        return cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (px + 1, px + 1)))
    return ink


def pressure(ink: np.ndarray, rng: np.random.Generator, aug: AugmentRanges) -> np.ndarray:
    """Uneven pen pressure: the ink fades and darkens slowly along the writing."""
    import cv2

    if rng.random() >= aug.pressure_p:
        return ink
    h, w = ink.shape
    low = rng.uniform(*aug.pressure)
    field = rng.random((2, int(rng.integers(3, 10))), dtype=np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    return (ink.astype(np.float32) * (low + (1.0 - low) * field)).astype(np.uint8)


def neighbours(ink: np.ndarray, rng: np.random.Generator, x_height: float, aug: AugmentRanges,
               draw_other: Callable[[], np.ndarray]) -> np.ndarray:
    """Cut in the descenders of the line above or the ascenders of the line below."""
    if rng.random() >= aug.neighbour_p:
        return ink
    other = draw_other()
    x, y, w, h = ink_box(other)
    if w == 0:
        return ink
    other = other[y : y + h, x : x + w]
    band = int(round(x_height * rng.uniform(0.25, 0.7)))
    band = max(1, min(band, h - 1))
    H, W = ink.shape
    start = int(rng.integers(0, max(1, w - W + 1)))
    piece = other[:, start : start + W]
    out = np.zeros((H + band, W), np.uint8)
    if rng.random() < 0.6:  # the line above: its lowest `band` rows (descenders) at the top
        out[band:] = ink
        frag = piece[h - band :]
        np.maximum(out[:band, : frag.shape[1]], frag, out=out[:band, : frag.shape[1]])
    else:  # the line below: its highest rows (ascenders, capitals) at the bottom
        out[:H] = ink
        frag = piece[:band]
        np.maximum(out[H:, : frag.shape[1]], frag, out=out[H:, : frag.shape[1]])
    return out


def lay_on_paper(ink: np.ndarray, rng: np.random.Generator, x_height: float, augment: bool,
                 aug: AugmentRanges) -> np.ndarray:
    """Lay the ink on paper and scan or photograph it; returns uint8 grey."""
    import cv2

    h, w = ink.shape
    alpha = ink.astype(np.float32) * (1.0 / 255.0)
    if not augment:
        return np.clip(255.0 - 255.0 * alpha + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < aug.blur_p:
        alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(*aug.blur_sigma))
    paper_level = rng.uniform(*aug.paper)
    amp = rng.uniform(*aug.texture_amp)
    texture = rng.standard_normal((int(rng.integers(2, 5)), int(rng.integers(2, 9))), dtype=np.float32)
    paper = paper_level + amp * cv2.resize(texture, (w, h), interpolation=cv2.INTER_LINEAR)
    light = rng.uniform(*aug.light)
    if light > 0.5:  # a gradient across the image and a darker corner
        gx, gy = np.meshgrid(np.linspace(-0.5, 0.5, w, dtype=np.float32), np.linspace(-0.5, 0.5, h, dtype=np.float32))
        theta = rng.uniform(0, 2 * math.pi)
        paper = paper + np.float32(light) * (np.cos(theta) * gx + np.sin(theta) * gy)
    if rng.random() < aug.ruled_p:
        rule_level = rng.uniform(25.0, 90.0)
        thickness = int(rng.integers(1, 3))
        rules = np.zeros((h, w), np.uint8)
        baseline = h * rng.uniform(0.6, 0.85)
        spacing = x_height * rng.uniform(2.6, 3.6)
        tilt = rng.uniform(-0.01, 0.01) * w
        y = baseline - spacing * math.floor(baseline / spacing)
        while y < h:
            cv2.line(rules, (0, int(round(y))), (w - 1, int(round(y + tilt))), 255, thickness, cv2.LINE_AA)
            y += spacing
        paper = paper - np.float32(rule_level / 255.0) * rules.astype(np.float32)
    ink_level = min(rng.uniform(*aug.ink), paper_level - aug.min_contrast)
    image = paper + (ink_level - paper) * alpha
    sigma = rng.uniform(*aug.noise_sigma)
    binarise = rng.random() < aug.binarise_p
    if sigma > 0.5 and not binarise:  # a black-and-white scanner thresholds before noise matters
        image += rng.standard_normal((h, w), dtype=np.float32) * np.float32(sigma)
    out = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    if binarise:
        _, out = cv2.threshold(out, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if rng.random() < aug.jpeg_p:
        q = int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out
