"""Page image -> text lines in reading order (classical: NumPy + OpenCV, no learned model).

The steps, on a copy scaled down to at most `SegmentOptions.max_pixels` pixels:

1. background normalisation (divide by a dilated, blurred paper estimate) so uneven light,
   vignetting and stains do not change the threshold; then Otsu, clamped so a blank page
   stays blank;
2. clean-up: ruling (long thin horizontal and vertical runs; a stroke through words is
   kept), specks, and dark bands that touch the border (table, scanner edge) are removed
   from the ink mask;
3. deskew: the angle whose horizontal projection of the ink pixels is sharpest;
4. in the deskewed frame, the smoothed horizontal projection gives one peak per line;
5. between neighbouring peaks, a separating path (a seam found by dynamic programming
   through the ink cost, at most one row up or down per step) so that an ascender that
   touches the descender above is given to its own line;
6. a 'line' that is a little ink next to a neighbour's writing (descenders cut off by a
   rule, the bar of a tall capital) is given to that neighbour and the paths are found again;
7. each line's region is the band between its two paths, tightened to its ink (specks far
   above or below it left out); its outline (polygon), baseline and bounding box are mapped
   back to page coordinates.

`cut_lines` cuts each line out of the full-resolution page along its polygon (other lines
masked to paper), deskewed, for the line model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Point = tuple[int, int]


@dataclass(frozen=True)
class SegmentOptions:
    """How pages are segmented.

    Attributes:
        max_pixels: the page is segmented on a copy scaled down to at most this many pixels
            (coordinates are mapped back); huge pages cost no more than this.
        max_skew_deg: largest skew searched for (either way).
        min_line_height: lines whose ink is less tall than this many pixels (in the
            scaled copy) are dropped as noise.
        line_margin: padding around each line's ink, as a share of its height, inside
            the separating paths.
    """

    max_pixels: int = 600_000
    max_skew_deg: float = 5.0
    min_line_height: int = 4
    line_margin: float = 0.04


@dataclass(frozen=True)
class TextLine:
    """One text line, in page pixel coordinates.

    Attributes:
        polygon: the line's outline, clockwise from the top left, (x, y) points.
        baseline: the line the writing sits on, left to right, (x, y) points.
        bbox: (x0, y0, x1, y1) of the polygon, x1 and y1 exclusive.
    """

    polygon: tuple[Point, ...]
    baseline: tuple[Point, ...]
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class Segmentation:
    """A page's lines in reading order (top to bottom, one column).

    Attributes:
        width, height: the page's size in pixels.
        angle: the skew found, in degrees (positive: the writing rises to the right).
        scale: the scale of the copy the page was segmented on (1.0: full size).
        lines: the text lines.
    """

    width: int
    height: int
    angle: float
    scale: float
    lines: tuple[TextLine, ...]


DEFAULT_OPTIONS = SegmentOptions()


def segment_page(gray: np.ndarray, options: SegmentOptions = DEFAULT_OPTIONS) -> Segmentation:
    """Find the text lines of a page (2-D uint8 grey, dark ink on light paper).

    A blank page gives no lines; an image that is a single line gives one.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 grey image, got {gray.dtype} with shape {gray.shape}")
    height, width = gray.shape
    # an integer factor: OpenCV's area resampling is fastest (and exact) for those
    factor = max(1, math.ceil(math.sqrt(height * width / float(options.max_pixels))))
    small = gray
    scale = 1.0
    if factor > 1:
        size = (max(1, width // factor), max(1, height // factor))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        scale = 1.0 / factor
    ink = ink_mask(small)
    if not ink.any():
        return Segmentation(width, height, 0.0, scale, ())
    if ink.size > 200_000:  # the skew is found on a copy half as big again (any ink in 2 x 2)
        half = cv2.resize(ink, (ink.shape[1] // 2, ink.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cleaned, first_h, _ = _remove_noise(cv2.threshold(half, 0, 255, cv2.THRESH_BINARY)[1])
        first_h *= 2
    else:
        cleaned, first_h, _ = _remove_noise(ink)
    angle = estimate_skew(cleaned, options.max_skew_deg)
    rot = _rotation(small.shape, angle)
    upright = cv2.warpAffine(ink, rot, (small.shape[1], small.shape[0]), flags=cv2.INTER_NEAREST, borderValue=0)
    # ruling is removed once levelled (a tilted rule breaks into short runs)
    upright, text_h, labels = _remove_noise(_remove_ruling(upright, first_h))
    lines = _find_lines(upright, text_h, labels, options)
    # map from the deskewed small frame back to the page: undo the rotation, then the scale
    back = cv2.invertAffineTransform(rot)
    found = tuple(_to_page(polygon, baseline, back, scale, width, height) for polygon, baseline in lines)
    return Segmentation(width, height, float(angle), scale, tuple(line for line in found if line is not None))


# --------------------------------------------------------------------------- ink


def normalise_background(gray: np.ndarray, kernel: int = 21) -> np.ndarray:
    """Divide the page by its paper (a dilation wider than any stroke, then blurred): paper
    becomes 255 whatever the light, ink keeps its contrast. uint8."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel, kernel))
    paper = cv2.blur(cv2.dilate(gray, k), (kernel, kernel))
    paper = cv2.max(paper, 1)
    result: np.ndarray = cv2.divide(gray, paper, scale=255.0)  # uint8, saturated at 255
    return result


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """uint8 mask (255 = ink): background-normalised and thresholded (ruling and noise are
    still in it; they help find the skew and are removed once the page is levelled)."""
    norm = normalise_background(gray)
    otsu, _ = cv2.threshold(norm, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Clamp: on a blank page Otsu splits the paper's own noise; ink is far darker than that.
    threshold = float(np.clip(otsu, 90, 190))
    # ink: below the threshold (a whole grey level, so "<= threshold - 1")
    mask: np.ndarray = cv2.threshold(norm, math.ceil(threshold) - 1, 255, cv2.THRESH_BINARY_INV)[1]
    return mask


def _remove_ruling(ink: np.ndarray, text_h: float = 0.0) -> np.ndarray:
    """Remove ruled lines and margin lines: runs of ink far longer than any letter.

    The mask is first thickened across the run (3 px), so a rule that still drifts a pixel
    over its length, or breaks up where it is faint, reads as one run; only the ink under
    the runs found is removed. In a strip (an image of a line), a horizontal run with writing
    both just above and just below it along most of its length is a stroke through the words
    (crossed-out writing), not a rule: it stays, or the letters it crosses would be cut in
    two halves that read as two lines. `text_h`: the writing's scale if known (a page's; 0: measured here).
    """
    h, w = ink.shape
    out = ink
    bridged = None
    # a page's rules are a tenth of its width at least; an image of a single line is
    # narrow, and its rule (all its writing sits on it) is still far longer than a letter
    narrow = w // 10 < 40
    wide = max(w // 10, 40)
    for length, horizontal in ((wide if wide <= 0.9 * w else 0, True), (h // 10, False)):
        if length < 40:
            continue
        if bridged is None:  # 3 pixels along the run and 3 across (the same both ways)
            bridged = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
        along = (length, 1) if horizontal else (1, length)
        runs = cv2.morphologyEx(bridged, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, along))
        if not cv2.countNonZero(runs):
            continue
        if horizontal and 3 * h <= w:
            # a strip (a line's image): a stroke through its words is no rule. Not on a page:
            # there a rule the writing drifts across, broken by the page's own warp into
            # pieces, reads the same, and a rule left in costs more than a struck word split
            runs = _without_strikes(ink, runs, narrow, text_h)
        out = cv2.bitwise_and(out, cv2.bitwise_not(runs))
    return out


def _without_strikes(ink: np.ndarray, runs: np.ndarray, narrow: bool, text_h: float) -> np.ndarray:
    """`runs` less those that are not rules: strokes through words (ink within a letter's
    height both above and below them in more than half of their columns), and, in a
    `narrow` image (where a run need only be 40 pixels long), runs no thinner than the
    letters (small joined-up writing). The letter's height is measured on the ink the runs
    leave, as a stroke through the words or a rule they sit on joins them all into one piece
    (on a page, with many pieces, `text_h` measured before is as good and costs nothing)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    rest = cv2.bitwise_and(ink, cv2.bitwise_not(runs))
    if text_h > 0 and ink.size > 200_000:
        d = max(3, int(text_h))
    else:
        _, _, pieces, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
        tall = pieces[1:, cv2.CC_STAT_HEIGHT][pieces[1:, cv2.CC_STAT_AREA] >= 4]
        d = max(3, int(np.median(tall))) if tall.size else 3
    h = ink.shape[0]
    out = runs
    for i in range(1, n):
        x, y, cw, ch = stats[i, :4]
        mine = labels[y : y + ch, x : x + cw] == i
        if not (narrow and np.median(mine.sum(axis=0)) >= d):
            above = rest[max(0, y - d) : y, x : x + cw].any(axis=0)
            below = rest[y + ch : min(h, y + ch + d), x : x + cw].any(axis=0)
            if np.mean(above & below) <= 0.5:
                continue
            # a stroke through words starts and ends in them; a rule runs on past the writing
            written = np.nonzero(above | below)[0]
            if written[0] > 2 * d or cw - 1 - written[-1] > 2 * d:
                continue
        if out is runs:
            out = runs.copy()
        out[y : y + ch, x : x + cw][mine] = 0
    return out


def _remove_noise(ink: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Drop specks, and on page-like images dark bands along the border (table, scanner edge).

    Returns the cleaned mask, the text's scale: the median height of its components
    (about a letter, or a word of joined-up writing; 0 when no ink is left), and the
    components' labels (int32, valid where the mask is set).
    """
    h, w = ink.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 1:
        return ink, 0.0, labels
    areas = stats[1:, cv2.CC_STAT_AREA]
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    widths = stats[1:, cv2.CC_STAT_WIDTH]
    # the text's scale: median height of the components that are neither specks nor flat
    # pieces of a rule
    real = heights[(areas >= 4) & (widths < 6 * heights)]
    text_h = float(np.median(real)) if real.size else 1.0
    keep = np.ones(n, bool)
    keep[0] = False
    min_area = max(4.0, 0.04 * text_h * text_h)
    keep[1:] &= areas >= min_area
    # what is left of a faint rule: long, flat pieces no letter has
    keep[1:] &= ~((heights <= max(3.0, 0.2 * text_h)) & (widths >= 2 * text_h))
    if text_h < h / 4:  # a page, not a single line: clear what lies along its border
        x, y = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
        cw = stats[1:, cv2.CC_STAT_WIDTH]
        touches = (x == 0) | (y == 0) | (x + cw >= w) | (y + heights >= h)
        big = (heights > 3 * text_h) | (cw > w / 3) | (areas > 0.6 * cw * heights)
        keep[1:] &= ~(touches & big)
        # blobs far denser and larger than writing (ink spills, holes punched)
        blob = (areas > 0.5 * cw * heights) & (heights > 1.5 * text_h) & (cw < 4 * heights)
        keep[1:] &= ~blob
    if not keep.any():
        return np.zeros_like(ink), 0.0, labels
    kept = heights[keep[1:]]
    lut = np.where(keep, 255, 0).astype(np.uint8)  # one lookup per pixel, uint8 out
    return lut[labels], float(np.median(kept)), labels


# --------------------------------------------------------------------------- skew


def estimate_skew(ink: np.ndarray, max_deg: float = 5.0) -> float:
    """The skew angle in degrees whose horizontal projection of the ink is sharpest."""
    iy, ix = np.nonzero(ink)
    if iy.size < 10:
        return 0.0
    if iy.size > 30_000:  # a sample is enough for the profile's shape (every k-th pixel)
        k = -(-iy.size // 30_000)
        iy, ix = iy[::k], ix[::k]
    xs = ix.astype(np.float32) - ink.shape[1] / 2.0
    # rows shifted down by the most any tilt searched can lift a pixel: never negative
    ys = iy.astype(np.float32) + (float(np.abs(xs).max()) * math.tan(math.radians(max_deg + 1.0)) + 1.0)

    def sharpness(deg: float) -> float:
        # row each pixel falls in once the page is turned by -deg (the writing levelled)
        rows = (ys + xs * math.tan(math.radians(deg))).astype(np.intp)
        hist = np.bincount(rows)
        return float(np.dot(hist, hist))

    step = 0.5
    candidates = np.arange(-max_deg, max_deg + 1e-6, step)
    best = max(candidates, key=sharpness)
    for _ in range(2):  # refine around the best, a quarter of the step, two steps either way
        step /= 4
        candidates = best + step * np.arange(-2, 3)
        best = max(candidates, key=sharpness)
    return float(best)


def _rotation(shape: tuple[int, ...], angle: float) -> np.ndarray:
    """The 2x3 affine matrix that levels writing skewed by `angle` degrees (about the centre)."""
    h, w = shape[:2]
    matrix: np.ndarray = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -angle, 1.0)
    return matrix


# --------------------------------------------------------------------------- lines


def _smooth(profile: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / max(sigma, 0.5)) ** 2)
    return np.convolve(profile, kernel / kernel.sum(), mode="same")


def _line_peaks(profile: np.ndarray, text_h: float) -> list[int]:
    """Rows where lines run: peaks of the smoothed projection, apart and prominent."""
    p = _smooth(profile, max(1.0, 0.3 * text_h))
    if p.max() <= 0:
        return []
    interior = (p[1:-1] >= p[:-2]) & (p[1:-1] > p[2:])
    peaks = [i + 1 for i in np.nonzero(interior)[0] if p[i + 1] > 0.03 * p.max()]
    if len(p) >= 2:  # a line cut flush at the image's top or bottom edge
        if p[0] > p[1] and p[0] > 0.03 * p.max():
            peaks.insert(0, 0)
        if p[-1] > p[-2] and p[-1] > 0.03 * p.max():
            peaks.append(len(p) - 1)
    # merge peaks whose valley between them is shallow (two bands of one line)
    changed = True
    while changed and len(peaks) > 1:
        changed = False
        for k in range(len(peaks) - 1):
            a, b = peaks[k], peaks[k + 1]
            valley = float(p[a : b + 1].min())
            low = min(p[a], p[b])
            if valley > 0.55 * low or b - a < 0.6 * text_h:
                peaks.pop(k + 1 if p[a] >= p[b] else k)
                changed = True
                break
    return peaks


def _separating_paths(cost: np.ndarray, peaks: list[int]) -> np.ndarray:
    """One path per gap between neighbouring peaks: path[k, x] is the row of path k at column
    x, found by dynamic programming through `cost` (ink), moving at most one row per column,
    staying strictly between the two peaks. All gaps are solved at once."""
    h, w = cost.shape
    n = len(peaks) - 1
    tops = np.array(peaks[:-1]) + 1
    bottoms = np.array(peaks[1:])
    band = int((bottoms - tops).max())
    band = max(band, 1)
    rows = tops[:, None] + np.arange(band)[None, :]  # (n, band)
    valid = rows < bottoms[:, None]
    rows = np.minimum(rows, h - 1)
    # prefer the middle of the gap a little, so a path across empty paper stays centred
    mid = (tops + bottoms - 1) / 2.0
    half = np.maximum((bottoms - tops) / 2.0, 1.0)
    centre = 0.5 * ((rows - mid[:, None]) / half[:, None]) ** 2
    local = np.ascontiguousarray((cost[rows, :] + centre[:, :, None].astype(np.float32)).transpose(2, 0, 1))
    local[:, ~valid] = np.inf  # (w, n, band) float32
    # forward: acc[x] = local[x] + the least of acc[x - 1] one row up, level, one row down
    # (three array operations a column, on rows padded with inf; the moves are recovered
    # on the way back)
    acc = np.full((w, n, band + 2), np.inf, np.float32)
    acc[0, :, 1:-1] = local[0]
    best = np.empty((n, band), np.float32)
    for x in range(1, w):
        prev = acc[x - 1]
        np.minimum(prev[:, :-2], prev[:, 1:-1], out=best)
        np.minimum(best, prev[:, 2:], out=best)
        np.add(best, local[x], out=acc[x, :, 1:-1])
    # back: from each path's cheapest end, the move that gave the least (level first, then
    # up, then down on ties, as a forward pass keeping its choices would have it)
    path = np.zeros((n, w), np.int64)
    idx = np.argmin(acc[-1, :, 1:-1], axis=1) + 1  # padded row
    lanes = np.arange(n)[:, None]
    moves = np.array([0, -1, 1])
    offsets = np.array([0, -1, 1])[None, :]
    for x in range(w - 1, 0, -1):
        path[:, x] = idx
        idx = idx + moves[np.argmin(acc[x - 1][lanes, idx[:, None] + offsets], axis=1)]
    path[:, 0] = idx
    path -= 1
    return tops[:, None] + path


def _find_lines(ink: np.ndarray, text_h: float, labels: np.ndarray, options: SegmentOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """(polygon, baseline) of each line in the deskewed frame, float (x, y) arrays, top to bottom."""
    h, w = ink.shape
    if text_h <= 0:
        return []
    peaks = _line_peaks(np.count_nonzero(ink, axis=1).astype(np.float64), text_h)
    if not peaks:
        return []
    # seams on a coarser grid of columns: `step` pixels per column is plenty for a path
    step = max(1, int(round(text_h / 4)))
    cols = (w + step - 1) // step
    padded = np.zeros((h, cols * step), np.uint8)
    padded[:, :w] = ink
    # any ink in a group of `step` columns (area resampling with an integer factor is fast)
    coarse = (cv2.resize(padded, (cols, h), interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
    cost = cv2.GaussianBlur(coarse, (0, 0), sigmaX=1.0, sigmaY=max(1.0, text_h / 8)) * 4.0 + coarse * 8.0
    ys_all, xs_all = np.nonzero(ink)
    comp_all = labels[ys_all, xs_all]
    for _ in range(len(peaks)):
        bounds, seams, parts = _assign(ys_all, xs_all, comp_all, cost, peaks, step, h, text_h)
        joined = _fragments(parts)
        if not joined:
            break
        peaks = [p for k, p in enumerate(peaks) if k not in joined]
    lines: list[tuple[np.ndarray, np.ndarray]] = []
    for k, (ly, lx, lc) in enumerate(parts):
        if ly.size < 4:
            continue
        ly, lx = _without_strays(ly, lx, lc)
        y0, y1 = int(ly.min()), int(ly.max()) + 1
        x0, x1 = int(lx.min()), int(lx.max()) + 1
        if y1 - y0 < options.min_line_height:
            continue
        pad = max(1, int(round(options.line_margin * (y1 - y0))))
        y0p, y1p = max(0, y0 - pad), min(h, y1 + pad)
        x0p, x1p = max(0, x0 - pad), min(w, x1 + pad)
        c0, c1 = x0p // step, (x1p - 1) // step
        columns = np.arange(c0, c1 + 1)
        upper = np.maximum(bounds[k][columns] + 1, y0p)
        lower = np.minimum(bounds[k + 1][columns], y1p)
        lower = np.maximum(lower, upper + 1)
        xs_left = np.maximum(columns * step, x0p)
        xs_right = np.minimum((columns + 1) * step, x1p)
        top_pts = np.stack([np.stack([xs_left, upper], 1), np.stack([xs_right, upper], 1)], 1).reshape(-1, 2)
        bot_pts = np.stack([np.stack([xs_right, lower], 1), np.stack([xs_left, lower], 1)], 1).reshape(-1, 2)[::-1]
        polygon = np.vstack([top_pts, bot_pts]).astype(np.float64)
        polygon = _simplify(polygon)
        lines.append((polygon, _baseline(ly, lx, x0, x1)))
    return lines


def _assign(ys: np.ndarray, xs: np.ndarray, comp: np.ndarray, cost: np.ndarray, peaks: list[int], step: int,
            h: int, text_h: float) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Separating paths between the peaks, and each line's ink pixels (ys, xs) between them
    (specks far to the side dropped). Returns (bounds, seams, parts): line k lies between
    bounds[k] and bounds[k + 1] (rows per coarse column)."""
    cols = cost.shape[1]
    if len(peaks) > 1:
        seams = _separating_paths(cost, peaks)
    else:
        seams = np.zeros((0, cols), np.int64)
    top_edge = np.full((1, cols), -1, np.int64)
    bottom_edge = np.full((1, cols), h, np.int64)
    bounds = np.vstack([top_edge, seams, bottom_edge])  # line k lies between bounds[k] and bounds[k+1]
    # which line each ink pixel belongs to: the number of paths above it in its column,
    # read from a table of (row, coarse column) built once
    cx = xs // step
    if len(seams):
        marks = np.zeros((h + 1, cols), np.int32)
        np.add.at(marks, (np.clip(seams + 1, 0, h), np.broadcast_to(np.arange(cols), seams.shape)), 1)
        owner = np.cumsum(marks, axis=0, dtype=np.int32)[ys, cx]
    else:
        owner = np.zeros(ys.size, np.int32)
    order = np.argsort(owner.astype(np.int16), kind="stable")  # a radix sort for 16-bit keys
    ys, xs, comp, owner = ys[order], xs[order], comp[order], owner[order]
    starts = np.searchsorted(owner, np.arange(len(peaks) + 1))
    # the first and last lines have no path on their far side: keep them as tall as the rest
    reach = 2.0 * text_h
    if len(peaks) > 1:
        reach = 1.5 * float(np.median(np.abs(seams - np.array(peaks[:-1])[:, None])))
    parts = []
    for k in range(len(peaks)):
        sl = slice(starts[k], starts[k + 1])
        ly, lx, lc = ys[sl], xs[sl], comp[sl]
        if k == 0 or k == len(peaks) - 1:
            sel = (ly >= peaks[k] - reach) & (ly <= peaks[k] + reach)
            ly, lx, lc = ly[sel], lx[sel], lc[sel]
        if ly.size >= 4:
            ly, lx, lc = _main_cluster(ly, lx, lc, text_h)
        parts.append((ly, lx, lc))
    return bounds, seams, parts


def _core(ys: np.ndarray) -> tuple[int, int]:
    """The rows of a line's densest band (about its x-height): where its row profile is at
    least half its peak. (top, bottom), bottom exclusive."""
    y0 = int(ys.min())
    profile = np.bincount(ys - y0)
    dense = np.nonzero(profile >= 0.5 * profile.max())[0]
    return y0 + int(dense.min()), y0 + int(dense.max()) + 1


def _fragments(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> set[int]:
    """The 'lines' that are pieces of a neighbour: a little ink (under 15% of the
    neighbour's) within 1.5 x-heights of the neighbour's densest band. Descenders cut off
    by a rule under the writing, the bar of a tall capital, accents and dots: they would
    otherwise read as a line of their own when the image is a single line."""
    info: list[tuple[int, int, int, int, int] | None] = []
    for ly, _, _ in parts:
        if ly.size < 4:
            info.append(None)
            continue
        c0, c1 = _core(ly)
        info.append((int(ly.min()), int(ly.max()) + 1, c0, c1, ly.size))
    out: set[int] = set()
    for k in range(len(parts) - 1):
        a, b = info[k], info[k + 1]
        if a is None or b is None:
            continue
        if b[4] < 0.15 * a[4] and b[0] - a[3] < 1.5 * (a[3] - a[2]):
            out.add(k + 1)  # below line k, in its descenders
        elif a[4] < 0.15 * b[4] and b[2] - a[1] < 1.5 * (b[3] - b[2]):
            out.add(k)  # above line k + 1, in its ascenders
    return out


def _without_strays(ys: np.ndarray, xs: np.ndarray, comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A line's ink without specks above or below it: small pieces (each under 2% of the
    line's ink) lying wholly more than 1.5 x-heights away from its densest band (no dot or
    accent is that far out, and a speck there would stretch the line's outline)."""
    c0, c1 = _core(ys)
    reach = 1.5 * (c1 - c0)
    ids, inverse, sizes = np.unique(comp, return_inverse=True, return_counts=True)
    small = sizes < 0.02 * ys.size
    if not small.any():
        return ys, xs
    top = np.full(ids.size, np.iinfo(np.int64).max, np.int64)
    bottom = np.full(ids.size, -1, np.int64)
    np.minimum.at(top, inverse, ys)
    np.maximum.at(bottom, inverse, ys)
    stray = small & ((bottom < c0 - reach) | (top >= c1 + reach))
    if not stray.any():
        return ys, xs
    keep = ~stray[inverse]
    return ys[keep], xs[keep]


def _main_cluster(ys: np.ndarray, xs: np.ndarray, comp: np.ndarray,
                  text_h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A line's ink without stray specks far to its left or right: runs of columns split by
    gaps wider than 4 text heights, keeping the runs with a real share of the ink."""
    order = np.argsort(xs, kind="stable")
    sx = xs[order]
    breaks = np.nonzero(np.diff(sx) > 4 * text_h)[0] + 1
    if breaks.size == 0:
        return ys, xs, comp
    groups = np.split(order, breaks)
    biggest = max(g.size for g in groups)
    keep = np.concatenate([g for g in groups if g.size >= 0.05 * biggest])
    return ys[keep], xs[keep], comp[keep]


def _baseline(ys: np.ndarray, xs: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """The baseline of a line's ink: the lower edge of its densest band (the x-height band)."""
    y0 = int(ys.min())
    profile = np.bincount(ys - y0).astype(np.float64)
    core = np.nonzero(profile >= 0.5 * profile.max())[0]
    yb = y0 + int(core.max()) + 1
    return np.array([[x0, yb], [x1, yb]], np.float64)


def _simplify(polygon: np.ndarray) -> np.ndarray:
    """Drop points on straight runs (the polygon keeps its shape to a pixel)."""
    approx = cv2.approxPolyDP(polygon.astype(np.float32).reshape(-1, 1, 2), 0.7, True)
    points: np.ndarray = approx.reshape(-1, 2).astype(np.float64)
    return points


def _to_page(polygon: np.ndarray, baseline: np.ndarray, back: np.ndarray, scale: float,
             width: int, height: int) -> TextLine | None:
    """A line's deskewed-frame geometry in page pixel coordinates (None if it falls off the page)."""

    def transform(points: np.ndarray) -> np.ndarray:
        pts = points @ back[:, :2].T + back[:, 2]
        pts = pts / scale
        pts[:, 0] = np.clip(np.round(pts[:, 0]), 0, width - 1)
        pts[:, 1] = np.clip(np.round(pts[:, 1]), 0, height - 1)
        rounded: np.ndarray = pts.astype(np.int64)
        return rounded

    poly = transform(polygon)
    base = transform(baseline)
    x0, y0 = poly.min(0)
    x1, y1 = poly.max(0) + 1
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return TextLine(
        polygon=tuple((int(x), int(y)) for x, y in poly),
        baseline=tuple((int(x), int(y)) for x, y in base),
        bbox=(int(x0), int(y0), int(x1), int(y1)),
    )


# --------------------------------------------------------------------------- cutting


def cut_lines(gray: np.ndarray, segmentation: Segmentation, margin: int = 4,
              max_height: int | None = None) -> list[np.ndarray]:
    """Each line as its own deskewed image (2-D uint8, dark ink on white), in reading order.

    Each line is cut along its polygon from the page levelled by the skew found (only the
    line's own box is warped); whatever lies outside the polygon (the neighbouring lines'
    ascenders and descenders) becomes paper, its paper is brought to white, and ruled lines
    under the writing are removed. With `max_height`, a taller line is scaled down to that
    height in the same warp (the model shrinks it anyway; this saves the work).
    """
    if not segmentation.lines:
        return []
    h, w = gray.shape
    if (w, h) != (segmentation.width, segmentation.height):
        raise ValueError(f"segmentation is of a {segmentation.width}x{segmentation.height} page, got {w}x{h}")
    rot = _rotation(gray.shape, segmentation.angle)
    out: list[np.ndarray] = []
    for line in segmentation.lines:
        poly = np.asarray(line.polygon, np.float64) @ rot[:, :2].T + rot[:, 2]
        x0, y0 = np.floor(poly.min(0)).astype(int) - margin
        x1, y1 = np.ceil(poly.max(0)).astype(int) + margin + 1
        f = 1.0 if max_height is None else min(1.0, max_height / float(max(1, y1 - y0)))
        cw, ch = max(2, int(round((x1 - x0) * f))), max(2, int(round((y1 - y0) * f)))
        shifted = rot.copy()
        shifted[:, 2] -= [x0, y0]
        shifted *= f
        # linear, as the model's own resize to its input height is
        crop = cv2.warpAffine(gray, shifted, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = np.zeros((ch, cw), np.uint8)
        cv2.fillPoly(mask, [np.round((poly - [x0, y0]) * f).astype(np.int32)], 255)
        out.append(_whiten(crop, mask))
    return out


def _whiten(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paper to white (a gain from the crop's bright pixels), outside `mask` to white, and
    long horizontal rules removed."""
    # the paper's level: the 90th percentile of the polygon's pixels (every third row and
    # column is plenty for it)
    sub, inside = np.ascontiguousarray(crop[::3, ::3]), np.ascontiguousarray(mask[::3, ::3])
    hist = cv2.calcHist([sub], [0], inside, [256], [0, 256]).ravel()
    if hist.sum() <= 0:
        hist = cv2.calcHist([sub], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(hist)
    paper = float(np.searchsorted(cumulative, 0.9 * cumulative[-1])) if cumulative[-1] > 0 else 255.0
    gain = 255.0 / max(paper, 32.0)
    level: np.ndarray = cv2.convertScaleAbs(crop, alpha=gain)
    cv2.bitwise_or(level, cv2.bitwise_not(mask), dst=level)  # outside the polygon: 255
    # rules: ink runs across a quarter of the line, looked for on a copy 8x narrower (a
    # group of 8 columns is ink where its mean is dark: most of it inked, a gap of a pixel
    # or two in a faint rule bridged), a row up and down bridged where the rule drifts
    height, width = crop.shape
    cols = width // 8
    length = cols // 4
    if length >= 8:
        narrow = cv2.resize(level, (cols, height), interpolation=cv2.INTER_AREA)
        narrow = cv2.threshold(narrow, 199, 255, cv2.THRESH_BINARY_INV)[1]
        narrow = cv2.dilate(narrow, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3)))
        runs = cv2.morphologyEx(narrow, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1)))
        rows = np.nonzero(runs.max(axis=1))[0]
        if rows.size:
            # only the rows the rules are on are looked at in full
            r0, r1 = int(rows[0]), int(rows[-1]) + 1
            band = cv2.resize(runs[r0:r1], (width, r1 - r0), interpolation=cv2.INTER_NEAREST)
            ink = cv2.threshold(level[r0:r1], 199, 255, cv2.THRESH_BINARY_INV)[1]
            # a rule is a few pixels tall; the strokes that cross it keep their ink above and below
            cv2.max(level[r0:r1], cv2.bitwise_and(band, ink), dst=level[r0:r1])
    return level
