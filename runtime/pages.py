"""Pages -> segment -> line images -> the same Recognizer as any lines -> page results.

    pages = PageReader(recognizer)
    for result in pages.read_paths(paths):      # one PageResult per page, in order
        print(serialize(result, "txt"))

Each page is segmented (`htr.runtime.segment`), its lines are cut along their polygons,
and the lines of a page are recognised together, sorted by width and batched by the
Recognizer like any other line images. A page that cannot be read or recognised yields a
`PageResult` with `error` set; the rest carry on.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import numpy as np

from .errors import HtrError
from .images import load_image
from .pipeline import Recognizer
from .segment import DEFAULT_OPTIONS, Segmentation, SegmentOptions, TextLine, cut_lines, segment_page


@dataclass(frozen=True)
class LineResult:
    """One recognised line: where it is, what it says, how sure the model is.

    Attributes:
        line: its polygon, baseline and box.
        text: what it says.
        confidence: the decoder's confidence in the whole line (None: unknown, e.g.
            ground truth).
        char_confidences: one value in [0, 1] per character of `text` (empty: unknown);
            PAGE-XML's and ALTO's per-line and per-word confidences are their means.
    """

    line: TextLine
    text: str
    confidence: float | None = None
    char_confidences: tuple[float, ...] = ()

    def mean_confidence(self, start: int = 0, stop: int | None = None) -> float | None:
        """Mean character confidence of text[start:stop] (None when unknown)."""
        values = self.char_confidences[start:stop]
        if not values:
            return None if not self.char_confidences else self.confidence
        return float(sum(values) / len(values))


@dataclass(frozen=True)
class PageResult:
    """A page's lines in reading order, or the one-line error that stopped it.

    Attributes:
        path: the page image.
        width, height: its size in pixels (0 if it could not be read).
        lines: the recognised lines.
        angle: the skew the segmenter found, in degrees.
        error: None, or why the page failed.
        seconds_segment, seconds_total: time spent segmenting (load, segment, cut) and in all.
    """

    path: Path
    width: int = 0
    height: int = 0
    lines: tuple[LineResult, ...] = ()
    angle: float = 0.0
    error: str | None = None
    seconds_segment: float = 0.0
    seconds_total: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """The page's text, one line per line, in reading order."""
        return "\n".join(line.text for line in self.lines)


@dataclass
class _Prepared:
    path: Path
    segmentation: Segmentation | None = None
    images: list[np.ndarray] | None = None
    error: str | None = None
    seconds: float = 0.0


class PageReader:
    """Segments pages and reads their lines with a line `Recognizer`."""

    def __init__(self, recognizer: Recognizer, options: SegmentOptions = DEFAULT_OPTIONS, workers: int | None = None):
        self.recognizer = recognizer
        self.options = options
        self.workers = workers or recognizer.workers
        #: lines are cut at most this tall: twice the model's input height keeps the detail
        #: its own resize uses, and saves cutting full-resolution lines only to shrink them
        self.max_height = 2 * int(recognizer.engine.spec.input.height)

    def prepare(self, path: Path) -> _Prepared:
        """Load, segment and cut one page (errors are kept, not raised)."""
        start = time.perf_counter()
        try:
            gray = load_image(path)
            seg = segment_page(gray, self.options)
            images = cut_lines(gray, seg, max_height=self.max_height)
            return _Prepared(path, seg, images, seconds=time.perf_counter() - start)
        except HtrError as err:
            return _Prepared(path, error=str(err), seconds=time.perf_counter() - start)
        except Exception as err:  # one bad page must not stop the rest
            return _Prepared(path, error=f"{path}: {type(err).__name__}: {err}", seconds=time.perf_counter() - start)

    def read_paths(self, paths: Iterable[Path]) -> Iterator[PageResult]:
        """One `PageResult` per page, in order; the next pages are segmented while the
        current page's lines are on the model."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="htr-page") as pool:
            pending = []
            it = iter(paths)
            for path in it:
                pending.append(pool.submit(self.prepare, Path(path)))
                if len(pending) > self.workers:
                    break
            while pending:
                prepared = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(self.prepare, Path(nxt)))
                yield self.recognise(prepared)

    def read_image(self, gray: np.ndarray, path: str | Path = "<image>") -> PageResult:
        """Segment and read one already-loaded page."""
        start = time.perf_counter()
        seg = segment_page(gray, self.options)
        images = cut_lines(gray, seg, max_height=self.max_height)
        return self.recognise(_Prepared(Path(path), seg, images, seconds=time.perf_counter() - start))

    def recognise(self, prepared: _Prepared) -> PageResult:
        """Read a prepared page's lines (all its lines in one call, batched by width)."""
        if prepared.error is not None or prepared.segmentation is None:
            return PageResult(prepared.path, error=prepared.error, seconds_segment=prepared.seconds,
                              seconds_total=prepared.seconds)
        start = time.perf_counter()
        seg = prepared.segmentation
        try:
            decoded = self.recognizer.recognise_arrays(prepared.images) if prepared.images else []
        except HtrError as err:
            return PageResult(prepared.path, seg.width, seg.height, angle=seg.angle, error=f"{prepared.path}: {err}",
                              seconds_segment=prepared.seconds, seconds_total=prepared.seconds)
        lines = tuple(LineResult(line, d.text, float(d.confidence), tuple(float(c) for c in d.char_confidences))
                      for line, d in zip(seg.lines, decoded))
        total = prepared.seconds + time.perf_counter() - start
        return PageResult(prepared.path, seg.width, seg.height, lines, seg.angle,
                          seconds_segment=prepared.seconds, seconds_total=total)


#: Suffix of the file written per page with `--output-dir`, by format.
PAGE_SUFFIXES = {"txt": ".txt", "jsonl": ".jsonl", "page-xml": ".xml", "alto": ".xml"}


def write_pages(results: Iterable[PageResult], fmt: str, stream: IO[str] | None = None,
                output_dir: Path | None = None, on_result: Callable[[PageResult], None] | None = None) -> tuple[int, int]:
    """Write page results as they come: to `stream`, or one file per page into `output_dir`
    (`DIR/<stem>.xml` for PAGE-XML and ALTO, `.txt` / `.jsonl` otherwise). Failed pages are
    reported through `on_result` and not written (except as an error record in jsonl on a
    stream). Returns (pages, failed)."""
    from .serialize import serialize

    pages = failed = 0
    for result in results:
        pages += 1
        if not result.ok:
            failed += 1
        if on_result is not None:
            on_result(result)
        if output_dir is not None:
            if result.ok:
                target = output_dir / (Path(result.path).stem + PAGE_SUFFIXES[fmt])
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_text(serialize(result, fmt), encoding="utf-8")
                tmp.replace(target)
        elif stream is not None and (result.ok or fmt == "jsonl"):
            stream.write(serialize(result, fmt))
            stream.flush()
    return pages, failed
