"""`RecognitionService`: the framework-free core of `htr-serve`.

One `Engine` (one onnxruntime session) serves every request. onnxruntime allows
concurrent `run()` calls on one session; what is mutable here is guarded: decoders are
built once per (name, beam width) under a lock and only read afterwards, and a
semaphore lets at most `ServeLimits.max_concurrent` requests decode images and run
inference at once, so the others wait in line instead of oversubscribing the CPU or
holding decoded images in memory. Each request is batched
on its own (all its images in as few model calls as the batch size allows).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import DEFAULT_BATCH_SIZE, DEFAULT_BEAM_WIDTH
from ..decoding import Decoded, make_decoder
from ..engine import Engine
from ..errors import HtrError, ImageError
from ..images import decode_image, sniff_format
from ..pipeline import Recognizer
from .limits import ServeLimits, image_size
from .uploads import Upload

DECODERS = ("greedy", "beam", "lexicon")
#: Largest beam width a request may ask for (wider beams cost time, not accuracy).
MAX_BEAM_WIDTH = 100
#: Client file names are echoed back as labels, cut to this many characters.
MAX_FILENAME_CHARS = 200

Decoder = Callable[[np.ndarray, "np.ndarray | None"], list[Decoded]]


class RequestError(ValueError):
    """A request option is invalid (unknown decoder, beam width out of range, ...)."""


@dataclass(frozen=True)
class Decodings:
    """Every decoder's result for one image, keyed by decoder name."""

    by_decoder: dict[str, Decoded]


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


class RecognitionService:
    """One engine, cached decoders and the request limits; `recognise` is thread-safe."""

    def __init__(
        self,
        engine: Engine,
        limits: ServeLimits = ServeLimits(),
        batch_size: int = DEFAULT_BATCH_SIZE,
        lexicon: str | Path | None = None,
    ):
        self.engine = engine
        self.limits = limits
        self.batch_size = batch_size
        self.lexicon = None if lexicon is None else str(lexicon)
        self._decoders: dict[tuple[str, int], Decoder] = {}
        self._decoders_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.max_concurrent)
        self.started = time.time()

    # ---- decoders ---------------------------------------------------------------
    def decoder(self, name: str, beam_width: int = DEFAULT_BEAM_WIDTH) -> Decoder:
        """The decoder `name` (built once, then shared: decoding reads it only)."""
        if name not in DECODERS:
            raise RequestError(f"unknown decoder {name!r}: choose one of {', '.join(DECODERS)}")
        if not 1 <= beam_width <= MAX_BEAM_WIDTH:
            raise RequestError(f"beam_width must be between 1 and {MAX_BEAM_WIDTH}, got {beam_width}")
        key = (name, 0 if name == "greedy" else beam_width)
        with self._decoders_lock:
            if key not in self._decoders:
                spec = self.engine.spec
                options: dict[str, Any] = {}
                if name != "greedy":
                    options["beam_width"] = beam_width
                if name == "lexicon":
                    options.update(lexicon=self.lexicon, mode="lines" if " " in spec.charset else "words")
                try:
                    self._decoders[key] = make_decoder(name, spec.charset, spec.blank, **options)
                except (ValueError, OSError, HtrError) as err:
                    raise RequestError(f"decoder {name!r} is not available: {err}") from None
                except Exception as err:  # e.g. the default word list (wordfreq) is missing
                    raise RequestError(f"decoder {name!r} is not available: {type(err).__name__}: {err}") from None
            return self._decoders[key]

    def _combined(self, names: Sequence[str], beam_width: int) -> Callable[..., list[Decodings]]:
        decoders = {name: self.decoder(name, beam_width) for name in names}

        # The Recognizer passes whatever the decoder returns through, in input order,
        # so one model run feeds every decoder we compare.
        def decode(probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decodings]:
            results = {name: d(probs, lengths) for name, d in decoders.items()}
            return [Decodings({n: r[i] for n, r in results.items()}) for i in range(len(probs))]

        return decode

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
        combined = self._combined(names, beam_width)
        # Decoding happens inside the slot too, so at most `max_concurrent` requests
        # hold decoded images in memory at once, however many are waiting.
        with self._slots:
            return self._recognise(uploads, decoder, combined)

    def _recognise(self, uploads: Sequence[Upload], decoder: str, combined: Callable) -> list[ImageResult]:
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
            try:
                recognizer = Recognizer(self.engine, combined, batch_size=self.batch_size)
                decoded: list[Any] = recognizer.recognise_arrays([im for _, im, _ in images])
                failure = None
            except HtrError as err:
                decoded, failure = [], str(err)
            share = (time.perf_counter() - start) * 1000 / len(images)
            for k, (i, image, load_ms) in enumerate(images):
                name = _label(uploads[i].filename, i)
                h, w = image.shape
                if failure is not None:
                    results[i] = ImageResult(name, decoder, error=f"{name}: {failure}", width=w, height=h)
                    continue
                by_decoder = decoded[k].by_decoder
                results[i] = ImageResult(
                    name, decoder, by_decoder[decoder], by_decoder, time_ms=load_ms + share, width=w, height=h
                )
        return results  # type: ignore[return-value]

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
