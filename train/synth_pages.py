"""Synthetic handwritten pages with their ground truth (line polygons, baselines, texts).

A page is composed from `htr.train.synth.SynthGenerator` line samples drawn without
augmentation (dark ink on white), laid out on a page of its own: margins, line spacing,
ruled or plain paper, a margin rule, a little tilt and waviness per line, then the whole
sheet photographed: rotated up to `max_rotation_deg`, slight perspective, uneven light and
vignetting, a dark table or scanner edge in the margins, specks, blur and noise.

    >>> pages = PageGenerator(split="heldout", seed=0)
    >>> page = pages.page(3)          # the same page for the same (split, seed, index)
    >>> page.image.shape, len(page.lines), page.lines[0].text
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from htr.train.synth import SynthGenerator

Point = tuple[int, int]


@dataclass(frozen=True)
class PageLine:
    """One line of a synthetic page: its text and where it is (page pixel coordinates).

    Attributes:
        text: what is written.
        polygon: the four corners of the line's ink box after the page's warp, clockwise
            from the top left.
        baseline: the line the writing sits on, left to right.
    """

    text: str
    polygon: tuple[Point, ...]
    baseline: tuple[Point, ...]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs) + 1, max(ys) + 1


@dataclass(frozen=True)
class SynthPage:
    """A page image (uint8 grey) and its lines in reading order."""

    image: np.ndarray
    lines: tuple[PageLine, ...]
    ruled: bool
    rotation_deg: float

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class PageLayout:
    """The ranges page composition draws from.

    Attributes:
        dpi: resolution; the page is A4 (210 x 297 mm) at this resolution.
        pitch_mm: distance between lines (ruled paper's spacing).
        x_height: x-height of the writing as a share of the pitch.
        lines: how many lines a page holds at most (fewer if they do not fit).
        ruled_p: probability of ruled paper.
        max_rotation_deg: the sheet's rotation, either way.
        perspective: largest corner displacement, as a share of the page side.
    """

    dpi: float = 300.0
    pitch_mm: tuple[float, float] = (8.0, 10.5)
    x_height: tuple[float, float] = (0.2, 0.27)
    lines: tuple[int, int] = (18, 28)
    ruled_p: float = 0.5
    max_rotation_deg: float = 3.0
    perspective: float = 0.005


class PageGenerator:
    """Deterministic synthetic pages: `page(i)` is the same for the same split, seed and layout."""

    def __init__(self, split: str = "train", seed: int = 0, layout: PageLayout = PageLayout(),
                 charset: str | None = None):
        self.split, self.seed, self.layout = split, int(seed), layout
        self.lines = SynthGenerator(kind="lines", split=split, seed=seed, augment=False, charset=charset)

    def page(self, index: int) -> SynthPage:
        """Compose page `index` (>= 0)."""
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        lay = self.layout
        rng = np.random.default_rng([self.seed, int(index), 0x9A6E])
        mm = lay.dpi / 25.4
        width, height = int(round(210 * mm)), int(round(297 * mm))
        pitch = rng.uniform(*lay.pitch_mm) * mm
        x_height = pitch * rng.uniform(*lay.x_height)
        left = rng.uniform(0.08, 0.14) * width
        right = width - rng.uniform(0.05, 0.09) * width
        top = rng.uniform(0.07, 0.12) * height
        n_fit = int((height * 0.92 - top) / pitch)
        n_lines = max(1, min(n_fit, int(rng.integers(lay.lines[0], lay.lines[1] + 1))))

        ink = np.zeros((height, width), np.float32)
        boxes: list[tuple[str, tuple[np.ndarray, np.ndarray], float]] = []
        sample = int(rng.integers(0, 10_000_000))
        for k in range(n_lines):
            base_y = top + (k + 1) * pitch + rng.uniform(-0.06, 0.06) * pitch
            start = left + rng.uniform(0.0, 0.03) * width
            last_in_paragraph = rng.random() < 0.15
            target = (right - start) * (rng.uniform(0.2, 0.7) if last_in_paragraph else rng.uniform(0.8, 1.0))
            words, strip, base, sample = self._line_strip(sample, x_height, target, right - start, rng)
            placed = _place(ink, strip, base, start, base_y, rng.uniform(-0.7, 0.7), rng)
            if placed is not None:
                boxes.append((words, placed, base_y))
        ruled = bool(rng.random() < lay.ruled_p)
        image, warp, rotation = self._sheet(ink, top, pitch, n_lines, left, ruled, rng)
        lines = []
        for text, (corners, baseline), _ in boxes:
            poly = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), warp).reshape(-1, 2)
            base = cv2.perspectiveTransform(baseline.reshape(-1, 1, 2), warp).reshape(-1, 2)
            lines.append(PageLine(text, _points(poly, width, height), _points(base, width, height)))
        return SynthPage(image, tuple(lines), ruled, rotation)

    def _line_strip(self, sample: int, x_height: float, target: float, room: float,
                    rng: np.random.Generator) -> tuple[str, np.ndarray, int, int]:
        """Ink (float 0..1, baseline at the last row of `strip`'s x-band) for one page line:
        line samples scaled to the page's x-height and joined with word gaps until `target`
        wide. Returns (text, strip, its baseline row, the next sample index)."""
        pieces: list[tuple[np.ndarray, int]] = []
        texts: list[str] = []
        width = 0.0
        gap = int(round(x_height * rng.uniform(0.7, 1.1)))
        while True:
            s = self.lines.sample(sample)
            sample += 1
            alpha = (255.0 - s.image.astype(np.float32)) / 255.0
            ys, xs = np.nonzero(alpha > 0.2)
            if ys.size == 0:
                continue
            alpha = alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            xh, base = _x_band(alpha)
            f = x_height / max(xh, 1.0)
            new = (max(1, round(alpha.shape[1] * f)), max(1, round(alpha.shape[0] * f)))
            if new[0] > room:  # one sample wider than the line: shrink it to fit
                f *= room / new[0] * 0.98
                new = (max(1, int(alpha.shape[1] * f)), max(1, round(alpha.shape[0] * f)))
            if pieces and width + gap + new[0] > room:
                break
            pieces.append((cv2.resize(alpha, new, interpolation=cv2.INTER_LINEAR), int(round(base * f))))
            texts.append(s.text)
            width += new[0] + (gap if len(pieces) > 1 else 0)
            if width >= target:
                break
        above = max(b for _, b in pieces)
        below = max(p.shape[0] - b for p, b in pieces)
        strip = np.zeros((above + below, int(width) + 1), np.float32)
        x = 0
        for p, b in pieces:
            y = above - b
            strip[y : y + p.shape[0], x : x + p.shape[1]] = np.maximum(strip[y : y + p.shape[0], x : x + p.shape[1]], p)
            x += p.shape[1] + gap
        return " ".join(texts), strip, above, sample

    def _sheet(self, ink: np.ndarray, top: float, pitch: float, n_lines: int, left: float, ruled: bool,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        """Paper, ruling, ink and the photograph of it all; returns (image, 3x3 warp, rotation)."""
        h, w = ink.shape
        lay = self.layout
        paper_level = rng.uniform(205, 250)
        texture = rng.standard_normal((6, 4)).astype(np.float32)
        paper = paper_level + rng.uniform(0, 8) * cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)
        if ruled:
            rule = np.zeros((h, w), np.float32)
            thick = max(1, int(round(lay.dpi / 200)))
            y = top + pitch
            for _ in range(int((h - y) / pitch)):
                cv2.line(rule, (0, int(round(y))), (w - 1, int(round(y))), 1.0, thick)
                y += pitch
            if rng.random() < 0.6:  # the margin rule
                x = int(left - rng.uniform(0.01, 0.03) * w)
                cv2.line(rule, (x, 0), (x, h - 1), 1.0, thick)
            rule = cv2.GaussianBlur(rule, (0, 0), 0.6)
            paper = paper - rng.uniform(30, 90) * rule
        ink = cv2.GaussianBlur(ink, (0, 0), rng.uniform(0.4, 1.0) * lay.dpi / 300)
        ink_level = rng.uniform(10, 90)
        page = paper + (ink_level - paper) * np.clip(ink, 0, 1)
        # the photograph: rotation, perspective, the table around the sheet
        rotation = float(rng.uniform(-lay.max_rotation_deg, lay.max_rotation_deg))
        rot = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), rotation, 1.0), [0, 0, 1]])
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        jitter = rng.uniform(-lay.perspective, lay.perspective, (4, 2)) * [w, h]
        persp = cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32))
        warp = persp @ rot
        table = rng.uniform(30, 120)
        image = cv2.warpPerspective(page, warp, (w, h), flags=cv2.INTER_LINEAR, borderValue=float(table))
        # uneven light: a gradient and a vignette
        yy, xx = np.mgrid[0:h:16, 0:w:16].astype(np.float32)
        gx, gy = rng.uniform(-0.15, 0.15, 2)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        light = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5) - rng.uniform(0.0, 0.2) * r2 / 2
        image = image * cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
        # marginal noise: specks, and sometimes a dark scanner edge
        for _ in range(int(rng.integers(0, 40))):
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.circle(image, (cx, cy), int(rng.integers(1, max(2, int(lay.dpi / 100)) + 1)), float(rng.uniform(40, 150)), -1)
        if rng.random() < 0.3:
            side = int(rng.integers(4))
            band = int(rng.uniform(0.005, 0.02) * w)
            level = float(rng.uniform(20, 80))
            if side == 0:
                image[:, :band] = level
            elif side == 1:
                image[:, w - band :] = level
            elif side == 2:
                image[:band, :] = level
            else:
                image[h - band :, :] = level
        image = image + rng.standard_normal((h, w)).astype(np.float32) * rng.uniform(1, 5)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8), warp, rotation


def _x_band(alpha: np.ndarray) -> tuple[float, int]:
    """(x-height, baseline row) of a line's ink: its densest band of rows."""
    profile = (alpha > 0.3).sum(axis=1).astype(np.float64)
    core = np.nonzero(profile >= 0.5 * profile.max())[0]
    return float(core.max() - core.min() + 1), int(core.max()) + 1


def _place(canvas: np.ndarray, strip: np.ndarray, base: int, x: float, base_y: float,
           tilt_deg: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Draw a line strip onto the page with its baseline at `base_y`, tilted a little; returns
    (4 corners of its ink box, baseline end points) in page coordinates, or None if off the page."""
    sh, sw = strip.shape
    m = cv2.getRotationMatrix2D((0.0, float(base)), tilt_deg, 1.0)
    m[0, 2] += x
    m[1, 2] += base_y - base
    h, w = canvas.shape
    # warp only into the strip's bounding region of the page
    corners = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float64) @ m[:, :2].T + m[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    local = m.copy()
    local[:, 2] -= [x0, y0]
    drawn = cv2.warpAffine(strip, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
    np.maximum(canvas[y0:y1, x0:x1], drawn, out=canvas[y0:y1, x0:x1])
    ys, xs = np.nonzero(drawn > 0.25)
    if ys.size == 0:
        return None
    # the ink's own box, in the line's frame (so the box turns with the tilt)
    inv = cv2.invertAffineTransform(local)
    pts = np.stack([xs, ys], 1).astype(np.float64) @ inv[:, :2].T + inv[:, 2]
    lx0, ly0 = pts.min(0)
    lx1, ly1 = pts.max(0)
    box = np.array([[lx0, ly0], [lx1, ly0], [lx1, ly1], [lx0, ly1]])
    baseline = np.array([[lx0, base], [lx1, base]], np.float64)
    to_page = lambda p: p @ m[:, :2].T + m[:, 2]  # noqa: E731
    return to_page(box).astype(np.float32), to_page(baseline).astype(np.float32)


def _points(points: np.ndarray, width: int, height: int) -> tuple[Point, ...]:
    return tuple((int(np.clip(round(float(x)), 0, width - 1)), int(np.clip(round(float(y)), 0, height - 1)))
                 for x, y in points)


def write_pages(out: str | Path, count: int, seed: int = 0, split: str = "train",
                layout: PageLayout = PageLayout(), charset: str | None = None,
                progress: Callable[[int], None] | None = None) -> Path:
    """Write `count` pages into `out`: page-NNNNN.jpg, its PAGE-XML ground truth (.xml) and
    its text (.txt, one line per line). Returns the folder."""
    from htr.runtime.pages import LineResult, PageResult
    from htr.runtime.segment import TextLine
    from htr.runtime.serialize import serialize

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    generator = PageGenerator(split, seed, layout, charset)
    for i in range(count):
        page = generator.page(i)
        stem = f"page-{i:05d}"
        image_path = folder / f"{stem}.jpg"
        if not cv2.imwrite(str(image_path), page.image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise OSError(f"{image_path}: cannot write")
        h, w = page.image.shape
        result = PageResult(
            path=image_path, width=w, height=h,
            lines=tuple(LineResult(TextLine(ln.polygon, ln.baseline, ln.bbox), ln.text, None) for ln in page.lines),
        )
        _write_text(folder / f"{stem}.xml", serialize(result, "page-xml"))
        _write_text(folder / f"{stem}.txt", page.text + "\n")
        if progress:
            progress(i + 1)
    return folder


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
