"""`RecognitionService`: the framework-free core of `htr-serve`.

One `Recognizer` (one `Engine`, one onnxruntime session) serves every request, through
the same two stages as htr-run: `Recognizer.emissions_of_images`, then `decode` with the
request's decoders (the asked-for one first, greedy and beam beside it for comparison).
onnxruntime allows concurrent `run()` calls on one session; what is mutable here is
guarded: decoders are built once per (name, beam width) by `build_decoder` under a lock
and only read afterwards, and a
semaphore lets at most `ServeLimits.max_concurrent` requests decode images and run
inference at once, so the others wait in line instead of oversubscribing the CPU or
holding decoded images in memory. Each request is batched
on its own (all its images in as few model calls as the batch size allows).

Pages (`read_pages`, `POST /v1/recognize?segment=true`) go through htr-run --segment's
own stages: `PageReader.read_image` segments a page and reads its lines with the page
model's `Recognizer`, and `serialize.line_records` gives each line's jsonl fields. The
page model is the served model when it reads lines (its charset has a space), else the
bundled line model (`page_engine_for`); a server without one answers 409.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import DEFAULT_BATCH_SIZE, DEFAULT_BEAM_WIDTH
from ..decoding.factory import build_decoder
from ..decoding.options import DECODER_NAMES, decoder_options
from ..decoding.result import Decoded, Decoder
from ..engine import Engine
from ..errors import HtrError, ImageError
from ..images import decode_image, sniff_format
from ..models import bundled_models, bundled_variant, resolve_model
from ..pages import PageReader, PageResult
from ..pipeline import Recognizer, decode
from ..serialize import line_records
from .limits import ServeLimits, image_size
from .uploads import Upload

#: The decoders a request may ask for.
DECODERS = DECODER_NAMES
#: Largest beam width a request may ask for (wider beams cost time, not accuracy).
MAX_BEAM_WIDTH = 100
#: Client file names are echoed back as labels, cut to this many characters.
MAX_FILENAME_CHARS = 200

#: `--page-model` values that are not a model: pick one (`page_engine_for`), or read no pages.
PAGE_MODEL_AUTO, PAGE_MODEL_NONE = "auto", "none"


class RequestError(ValueError):
    """A request option is invalid (unknown decoder, beam width out of range, ...)."""


class NoPageModel(RequestError):
    """segment=true on a server that has no model to read the lines of pages (409)."""


def reads_lines(engine: Engine) -> bool:
    """Whether a model can read whole lines: its charset has a space to separate words
    (a word model, like the seed notebook's, has none)."""
    return " " in engine.spec.charset


def page_engine_for(engine: Engine, page_model: str = PAGE_MODEL_AUTO, **engine_options: Any) -> Engine | None:
    """The engine that reads the lines of uploaded pages.

    page_model: "auto" (the served `engine` if it reads lines, else the bundled line model,
    else None), "none" (None: no page reading), or a bundled name or .onnx path (the
    served engine itself when it is the same file). engine_options go to `Engine`.
    Raises `HtrError` when a named model cannot be loaded.
    """
    provider = engine_options.setdefault("provider", engine.provider)
    if page_model == PAGE_MODEL_NONE:
        return None
    if page_model == PAGE_MODEL_AUTO:
        if reads_lines(engine):
            return engine
        # the bundled line model, in the precision of the served file if that is a bundled one
        variant = bundled_variant(engine.path)
        bundled = bundled_models(provider)
        path = bundled.get(f"line.{variant}", bundled.get("line")) if variant else bundled.get("line")
        if path is None:
            return None
    else:
        path = resolve_model(page_model, provider)
    if path.resolve() == Path(engine.path).resolve():
        return engine
    return Engine(path, **engine_options)


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one uploaded file.

    filename: the client's name for the file (a label; never used as a path).
    decoder: the decoder whose result is `decoded`.
    decoded: the result of `decoder`, or None when the file failed.
    alternatives: every decoder run on this image (the requested one, greedy and,
        for comparison, beam when greedy was asked for), by name.
    error: one line saying why the file failed, or None.
    time_ms: this image's decoding plus an equal share of the request's inference.
    width, height: the image size in pixels, when it was read.
    """

    filename: str
    decoder: str
    decoded: Decoded | None = None
    alternatives: dict[str, Decoded] = field(default_factory=dict)
    error: str | None = None
    time_ms: float = 0.0
    width: int | None = None
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The JSON object `POST /v1/recognize` returns for this file."""
        out: dict[str, Any] = {"filename": self.filename, "ok": self.ok}
        if self.width is not None:
            out.update(width=self.width, height=self.height)
        if not self.ok or self.decoded is None:
            out["error"] = self.error
            return out
        d = self.decoded
        out.update(
            decoder=self.decoder,
            text=d.text,
            confidence=round(float(d.confidence), 6),
            char_confidences=[round(float(c), 4) for c in d.char_confidences],
            time_ms=round(self.time_ms, 3),
            alternatives={
                name: {"text": alt.text, "confidence": round(float(alt.confidence), 6)}
                for name, alt in self.alternatives.items()
            },
        )
        return out


@dataclass(frozen=True)
class PageUploadResult:
    """The outcome for one uploaded page (segment=true).

    filename: the client's name for the file (a label; also each line's `path`).
    page: its lines, or None when the file failed before segmentation.
    error: one line saying why the file failed, or None.
    time_ms: decoding, segmenting and reading this page.
    """

    filename: str
    page: PageResult | None = None
    error: str | None = None
    time_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The JSON object `POST /v1/recognize?segment=true` returns for this file: the
        page's size and skew, and `lines` with exactly htr-run --segment's jsonl fields."""
        out: dict[str, Any] = {"filename": self.filename, "ok": self.ok}
        page = self.page
        if page is not None and page.width:
            out.update(width=page.width, height=page.height)
        if not self.ok or page is None:
            out["error"] = self.error
            return out
        out.update(
            angle=round(float(page.angle), 3),
            time_ms=round(self.time_ms, 3),
            segment_ms=round(page.seconds_segment * 1000, 3),
            lines=line_records(page),
        )
        return out


class RecognitionService:
    """One recogniser, cached decoders and the request limits; `recognise` is thread-safe."""

    def __init__(
        self,
        engine: Engine,
        limits: ServeLimits = ServeLimits(),
        batch_size: int = DEFAULT_BATCH_SIZE,
        lexicon: str | Path | None = None,
        page_engine: Engine | None = None,
    ):
        """page_engine: reads the lines of pages (segment=true); None: pages get 409
        (see `page_engine_for`)."""
        self.engine = engine
        self.page_engine = page_engine
        self.limits = limits
        self.batch_size = batch_size
        self.lexicon = None if lexicon is None else str(lexicon)
        self._decoders: dict[tuple[str, int, str], Decoder] = {}
        self._decoders_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.max_concurrent)
        self.started = time.time()
        # Built once: requests share its preprocessing; each brings its own decoders.
        self.recognizer = Recognizer(engine, self.decoder("greedy"), batch_size=batch_size)

    # ---- decoders ---------------------------------------------------------------
    def decoder(self, name: str, beam_width: int = DEFAULT_BEAM_WIDTH, engine: Engine | None = None) -> Decoder:
        """The decoder `name` for `engine`'s charset (default: the served model's; the page
        model may have another), built once, then shared: decoding reads it only."""
        engine = engine or self.engine
        if name not in DECODERS:
            raise RequestError(f"unknown decoder {name!r}: choose one of {', '.join(DECODERS)}")
        if not 1 <= beam_width <= MAX_BEAM_WIDTH:
            raise RequestError(f"beam_width must be between 1 and {MAX_BEAM_WIDTH}, got {beam_width}")
        key = (name, 0 if name == "greedy" else beam_width, str(engine.path))
        with self._decoders_lock:
            if key not in self._decoders:
                spec = engine.spec
                options: dict[str, Any] = {}
                if name != "greedy":
                    options["beam_width"] = beam_width
                if name == "lexicon":
                    options["lexicon"] = self.lexicon  # mode: from the charset (LexiconOptions)
                try:
                    built = build_decoder(decoder_options(name, **options), spec.charset, spec.blank)
                    self._decoders[key] = built
                except (ValueError, OSError, HtrError) as err:
                    raise RequestError(f"decoder {name!r} is not available: {err}") from None
                except Exception as err:  # e.g. the default word list (wordfreq) is missing
                    raise RequestError(f"decoder {name!r} is not available: {type(err).__name__}: {err}") from None
            return self._decoders[key]

    # ---- recognition ------------------------------------------------------------
    def recognise(
        self,
        uploads: Sequence[Upload],
        decoder: str = "greedy",
        beam_width: int = DEFAULT_BEAM_WIDTH,
        compare: bool = True,
    ) -> list[ImageResult]:
        """Recognise uploaded files; a bad file gets an error result, the rest carry on.

        Runs `decoder` and greedy (and beam, when greedy is asked for and `compare`)
        on one model output per batch. Raises `RequestError` for bad options.
        """
        names = [decoder]
        if decoder != "greedy":
            names.append("greedy")
        elif compare:
            names.append("beam")
        decoders = {name: self.decoder(name, beam_width) for name in names}
        # Decoding happens inside the slot too, so at most `max_concurrent` requests
        # hold decoded images in memory at once, however many are waiting.
        with self._slots:
            return self._recognise(uploads, decoder, decoders)

    def _recognise(self, uploads: Sequence[Upload], decoder: str, decoders: dict[str, Decoder]) -> list[ImageResult]:
        results: list[ImageResult | None] = [None] * len(uploads)
        images: list[tuple[int, np.ndarray, float]] = []
        for i, upload in enumerate(uploads):
            name = _label(upload.filename, i)
            start = time.perf_counter()
            try:
                image = self._decode(upload.data, name)
            except HtrError as err:
                results[i] = ImageResult(name, decoder, error=str(err))
                continue
            images.append((i, image, (time.perf_counter() - start) * 1000))
        if images:
            start = time.perf_counter()
            labels = [_label(uploads[i].filename, i) for i, _, _ in images]
            emissions = self.recognizer.emissions_of_images([im for _, im, _ in images], labels)
            recognitions = decode(emissions, decoders)
            share = (time.perf_counter() - start) * 1000 / len(images)
            for (i, image, load_ms), name, rec in zip(images, labels, recognitions):
                h, w = image.shape
                results[i] = ImageResult(name, decoder, rec.decoded, dict(rec.alternatives), error=rec.error,
                                         time_ms=load_ms + share, width=w, height=h)
        return [r for r in results if r is not None]

    # ---- pages ------------------------------------------------------------------
    def read_pages(
        self, uploads: Sequence[Upload], decoder: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH
    ) -> list[PageUploadResult]:
        """Segment each uploaded page and read its lines with the page model and `decoder`;
        a bad file gets an error result, the rest carry on. Raises `NoPageModel` when this
        server has no page model, `RequestError` for bad options."""
        if self.page_engine is None:
            raise NoPageModel(
                f"segment=true needs a model that reads lines and this server has none (it reads "
                f"{self.engine.path.name}, a word model, and was started without a page model): "
                "start htr-serve with --page-model line or --page-model PATH.onnx"
            )
        page_decoder = self.decoder(decoder, beam_width, self.page_engine)
        recognizer = Recognizer(self.page_engine, page_decoder, batch_size=self.batch_size)
        reader = PageReader(recognizer)
        with self._slots:
            return [self._read_page(reader, upload, i) for i, upload in enumerate(uploads)]

    def _read_page(self, reader: PageReader, upload: Upload, index: int) -> PageUploadResult:
        name = _label(upload.filename, index)
        start = time.perf_counter()
        try:
            gray = self._decode(upload.data, name)
        except HtrError as err:
            return PageUploadResult(name, error=str(err))
        page: PageResult | None = None
        try:
            page = reader.read_image(gray, name)
            error = page.error
        except HtrError as err:
            error = str(err) if err.path else f"{name}: {err}"
        except Exception as err:  # one page that breaks the segmenter must not fail the others
            error = f"{name}: {type(err).__name__}: {' '.join(str(err).split())}"
        return PageUploadResult(name, page, error, time_ms=(time.perf_counter() - start) * 1000)

    def _decode(self, data: bytes, name: str) -> np.ndarray:
        """Bytes -> grey image, refusing over-large images from their header first."""
        if sniff_format(data) is not None:
            size = image_size(data)
            if size is not None:
                problem = self.limits.check_size(*size)
                if problem:
                    raise ImageError(name, problem)
        image = decode_image(data, name)
        problem = self.limits.check_size(image.shape[1], image.shape[0])
        if problem:
            raise ImageError(name, problem)
        return image

    # ---- metadata ---------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        """What `GET /v1/model` returns: the model's htr metadata, providers and limits."""
        spec = self.engine.spec
        return {
            "file": self.engine.path.name,
            "providers": self.engine.providers,
            "charset": "".join(spec.charset),
            "num_classes": spec.num_classes,
            "dynamic_width": spec.dynamic_width,
            "metadata": json.loads(spec.to_json()),
            "decoders": list(DECODERS),
            "page_model": None if self.page_engine is None else self.page_engine.path.name,
            "limits": {
                "max_bytes": self.limits.max_bytes,
                "max_files": self.limits.max_files,
                "max_pixels": self.limits.max_pixels,
                "max_side": self.limits.max_side,
                "max_beam_width": MAX_BEAM_WIDTH,
            },
        }


def _label(filename: str, index: int) -> str:
    """A printable label for a client's file name (it is never used as a path)."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in (filename or ""))[:MAX_FILENAME_CHARS]
    return clean or f"file-{index + 1}"
