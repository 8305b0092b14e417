"""Measuring pages: line detection (polygon IoU matching) and page-level error rates.

    match = match_lines(found_polygons, truth_polygons, width, height)   # IoU >= 0.5, one-to-one
    match.precision, match.recall, match.f1, match.pairs
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

Polygon = Sequence[tuple[int, int]]

#: Polygons are compared on masks scaled so the page's longer side has this many pixels.
IOU_RASTER_SIDE = 1000


@dataclass(frozen=True)
class LineMatch:
    """Found lines matched one-to-one to true lines at IoU >= threshold.

    Attributes:
        pairs: (found index, true index, IoU) of the matches.
        found, truth: how many lines were found and how many there are.
    """

    pairs: tuple[tuple[int, int, float], ...]
    found: int
    truth: int

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else (1.0 if not self.truth else 0.0)

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else (1.0 if not self.found else 0.0)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def polygon_iou_matrix(a: Sequence[Polygon], b: Sequence[Polygon], width: int, height: int) -> np.ndarray:
    """IoU of every polygon of `a` with every polygon of `b` (rasterised, len(a) x len(b))."""
    s = min(1.0, IOU_RASTER_SIDE / max(width, height, 1))

    def masks(polys: Sequence[Polygon]) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
        out = []
        for poly in polys:
            pts = np.round(np.asarray(poly, np.float64) * s).astype(np.int32)
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0) + 1
            m = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
            cv2.fillPoly(m, [pts - [x0, y0]], 1)
            out.append((m, (int(x0), int(y0), int(x1) + 1, int(y1) + 1)))
        return out

    ma, mb = masks(a), masks(b)
    iou = np.zeros((len(a), len(b)))
    for i, (m1, (ax0, ay0, ax1, ay1)) in enumerate(ma):
        area1 = int(m1.sum())
        for j, (m2, (bx0, by0, bx1, by1)) in enumerate(mb):
            x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
            if x0 >= x1 or y0 >= y1:
                continue
            p = m1[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
            q = m2[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
            inter = int(np.count_nonzero(p & q))
            union = area1 + int(m2.sum()) - inter
            iou[i, j] = inter / union if union else 0.0
    return iou


def match_lines(found: Sequence[Polygon], truth: Sequence[Polygon], width: int, height: int,
                threshold: float = 0.5) -> LineMatch:
    """Match found lines to true lines one-to-one, best IoU first, keeping IoU >= threshold."""
    iou = polygon_iou_matrix(found, truth, width, height)
    pairs = []
    if iou.size:
        used_f, used_t = set(), set()
        order = np.argsort(-iou, axis=None)
        for flat in order:
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < threshold:
                break
            if i in used_f or j in used_t:
                continue
            used_f.add(i)
            used_t.add(j)
            pairs.append((i, j, float(iou[i, j])))
    return LineMatch(tuple(sorted(pairs)), len(found), len(truth))
