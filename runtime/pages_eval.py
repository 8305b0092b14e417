"""Measuring pages: line detection (polygon IoU matching) and page-level error rates.

    match = match_lines(found_polygons, truth_polygons, width, height)   # IoU >= 0.5, one-to-one
    match.precision, match.recall, match.f1, match.pairs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from .segment import TextLine

if TYPE_CHECKING:
    from .pages import PageReader

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


# --------------------------------------------------------------------------- page evaluation


@dataclass(frozen=True)
class PageTruth:
    """A page image and its ground truth: texts of its lines in reading order, and their
    polygons when the truth is PAGE-XML (None for a .txt transcription)."""

    path: Path
    texts: tuple[str, ...]
    polygons: tuple[Polygon, ...] | None = None


@dataclass(frozen=True)
class PageScore:
    """One page's figures: its texts joined, line counts, detection and recognition."""

    path: str
    reference: str
    prediction: str
    lines_found: int
    lines_true: int
    char_errors: int
    match: LineMatch | None = None
    given_lines_prediction: str | None = None
    error: str | None = None


def load_page_truth(folder: Path) -> tuple[list[PageTruth], list[str]]:
    """Page images in `folder` (sorted) with a same-stem .xml (PAGE) or .txt; returns the
    pages and the names of images without ground truth."""
    from .images import is_image_file
    from .serialize import read_page_xml

    folder = Path(folder)
    pages, missing = [], []
    for image in sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)):
        xml, txt = image.with_suffix(".xml"), image.with_suffix(".txt")
        if xml.exists():
            lines = read_page_xml(xml)
            pages.append(PageTruth(image, tuple(ln.text for ln in lines), tuple(ln.polygon for ln in lines)))
        elif txt.exists():
            texts = [t.strip() for t in txt.read_text(encoding="utf-8").splitlines()]
            pages.append(PageTruth(image, tuple(t for t in texts if t)))
        else:
            missing.append(image.name)
    return pages, missing


def score_page(reader: PageReader, truth: PageTruth) -> PageScore:
    """Segment and read one page with a `PageReader`, and compare it with its truth."""
    from .images import load_image
    from .metrics import edit_distance
    from .segment import Segmentation, cut_lines

    reference = " ".join(truth.texts)
    result = reader.recognise(reader.prepare(truth.path))
    if not result.ok:
        return PageScore(str(truth.path), reference, "", 0, len(truth.texts), len(reference), error=result.error)
    prediction = " ".join(line.text for line in result.lines)
    match = given = None
    if truth.polygons is not None:
        match = match_lines([ln.line.polygon for ln in result.lines], truth.polygons, result.width, result.height)
        # recognition on the given lines: the truth's polygons cut the same way, at the skew found
        gray = load_image(truth.path)
        boxes = tuple(_as_line(p) for p in truth.polygons)
        seg = Segmentation(result.width, result.height, result.angle, 1.0, boxes)
        decoded = reader.recognizer.recognise_arrays(cut_lines(gray, seg, max_height=reader.max_height)) if boxes else []
        given = " ".join(d.text for d in decoded)
    return PageScore(str(truth.path), reference, prediction, len(result.lines), len(truth.texts),
                     edit_distance(reference, prediction), match, given)


def _as_line(polygon: Polygon) -> TextLine:
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return TextLine(tuple(polygon), (), (min(xs), min(ys), max(xs) + 1, max(ys) + 1))


def page_summary(scores: Sequence[PageScore]) -> dict[str, Any]:
    """Totals over pages (JSON-ready): page CER/WER, line-count error, and where the truth
    has polygons, detection precision/recall/F1 at IoU 0.5 and CER on the given lines."""
    from .metrics import error_rates

    rates = error_rates((s.reference, s.prediction) for s in scores)
    out: dict[str, Any] = {
        "pages": len(scores),
        "failed": sum(1 for s in scores if s.error),
        "cer": round(rates.cer, 6),
        "wer": round(rates.wer, 6),
        "lines_true": sum(s.lines_true for s in scores),
        "lines_found": sum(s.lines_found for s in scores),
        "line_count_error": round(sum(abs(s.lines_found - s.lines_true) for s in scores) / max(1, len(scores)), 4),
    }
    detected = [s for s in scores if s.match is not None]
    if detected:
        matches = [s.match for s in detected if s.match is not None]
        matched = sum(m.matched for m in matches)
        found = sum(m.found for m in matches)
        true = sum(m.truth for m in matches)
        p = matched / found if found else 0.0
        r = matched / true if true else 0.0
        out.update(precision=round(p, 6), recall=round(r, 6), f1=round(2 * p * r / (p + r) if p + r else 0.0, 6))
        given = error_rates((s.reference, s.given_lines_prediction or "") for s in detected)
        out["cer_given_lines"] = round(given.cer, 6)
    out["pages_detail"] = [
        {"path": s.path, "lines_found": s.lines_found, "lines_true": s.lines_true, "char_errors": s.char_errors,
         "f1": None if s.match is None else round(s.match.f1, 4), "error": s.error,
         "reference": s.reference, "prediction": s.prediction}
        for s in scores
    ]
    return out
