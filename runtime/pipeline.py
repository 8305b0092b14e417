"""Images -> text in two stages that meet at the model output.

1. `Recognizer.emissions`: files -> load -> preprocess -> `Engine` -> one `Emissions` per
   window of images: each batch's probabilities and valid lengths, and a one-line error
   for every image that failed on the way (unreadable file, a model error for its batch,
   NaN or infinite values in its output row).
2. `decode`: `Emissions` + a `Decoder` (or a mapping of several, e.g. htr-serve's greedy
   vs beam view) -> one `Recognition` per image, in input order. A decoder that raises
   on a batch is retried row by row, so only the images it cannot decode fail.

`Recognizer.recognise_paths` chains the two. Images are read and resized by a thread
pool (OpenCV and onnxruntime release the GIL) while the model runs earlier batches in
threads of its own, and the caller decodes: the next window's batches queue on the model
before the previous window is handed over, so the model does not wait for the decoder.
For dynamic-width models a window of several batches is sorted by width before batching,
so little is spent on padding. The first window is a single batch, so the model starts
at once; windows then double up to the full width-grouping window.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from .constants import DEFAULT_BATCH_SIZE, WIDTH_GROUPING_WINDOW
from .decoding.result import Decoded, Decoder
from .engine import Engine
from .errors import HtrError
from .images import load_image
from .preprocess import Preprocessor

#: What the decode stage takes: one decoder, or several by name (the first is the
#: primary one: its result is `Recognition.decoded`; all are in `alternatives`).
Decoding = Union[Decoder, Mapping[str, Decoder]]


@dataclass(frozen=True)
class Recognition:
    """The outcome for one image: its text, or the one-line error that stopped it.

    alternatives: every decoder's result by name, when decoding used several."""

    path: Path
    decoded: Decoded | None = None
    error: str | None = None
    alternatives: Mapping[str, Decoded] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.decoded.text if self.decoded is not None else ""

    @property
    def confidence(self) -> float:
        return self.decoded.confidence if self.decoded is not None else 0.0


@dataclass(frozen=True)
class BatchEmissions:
    """The model output for one batch: row r of `probs` (B, T, C) belongs to item
    `items[r]` of the window; `lengths` (B,) are the valid frames (None: all T)."""

    items: tuple[int, ...]
    probs: np.ndarray
    lengths: np.ndarray | None


@dataclass(frozen=True)
class Emissions:
    """The model output for one window of images, where decoding starts.

    paths: every item of the window, in input order (labels for in-memory images).
    batches: the model's output for the items that reached it intact.
    errors: item index -> one line saying why it has no output.
    Every item is in exactly one batch or in `errors`.
    """

    paths: tuple[Path, ...]
    batches: tuple[BatchEmissions, ...]
    errors: Mapping[int, str]


class Recognizer:
    """Engine + preprocessing + decoding, with batching and parallel image loading.

    decoder: a `Decoder` (see `build_decoder`) or a mapping of several by name.
    """

    def __init__(
        self,
        engine: Engine,
        decoder: Decoding,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.engine = engine
        self.decoder = decoder
        self.batch_size = batch_size
        self.workers = workers or min(4, os.cpu_count() or 1)
        #: batches run on the model at once (the engine's streams; wrappers without any: 1)
        self.streams = max(1, int(getattr(engine, "streams", 1)))
        self.preprocessor = Preprocessor.from_spec(engine.spec)
        self.window = batch_size * (WIDTH_GROUPING_WINDOW if engine.spec.dynamic_width else 1)

    # ---- the whole path -----------------------------------------------------------
    def recognise_paths(self, paths: Iterable[Path]) -> Iterator[Recognition]:
        """Yield one `Recognition` per path, in the given order, as windows complete.

        A file that cannot be read or recognised yields a `Recognition` with `error`
        set; the rest carry on."""
        for window in self.emissions(paths):
            yield from decode(window, self.decoder)

    def recognise_images(self, images: Sequence[np.ndarray], labels: Sequence[str]) -> list[Recognition]:
        """Recognise already-loaded 2-D uint8 grey images (one window, in the calling
        thread); `labels` name them in errors. One `Recognition` per image, in order."""
        return decode(self.emissions_of_images(images, labels), self.decoder)

    def recognise_arrays(self, images: Sequence[np.ndarray]) -> list[Decoded]:
        """Recognise already-loaded grey images with one decoder; the first failure is
        raised as `HtrError` (use `recognise_images` to keep the others)."""
        results = self.recognise_images(images, [f"image {i + 1}" for i in range(len(images))])
        for r in results:
            if r.error is not None:
                raise HtrError(None, r.error)
        return [r.decoded for r in results if r.decoded is not None]

    # ---- stage 1: images -> emissions ---------------------------------------------
    def emissions(self, paths: Iterable[Path]) -> Iterator[Emissions]:
        """Yield the model output window by window (see the module docstring)."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="htr-load") as loaders, \
                ThreadPoolExecutor(self.streams, thread_name_prefix="htr-model") as model:
            pending: deque[tuple[Path, Future[np.ndarray]]] = deque()
            path_iter = iter(paths)
            exhausted = False
            size = min(self.batch_size, self.window)
            previous: _Submitted | None = None
            while True:
                # Keep two windows of images loading ahead of the model.
                while not exhausted and len(pending) < 2 * self.window:
                    path = next(path_iter, None)
                    if path is None:
                        exhausted = True
                        break
                    pending.append((path, loaders.submit(self._load, path)))
                if not pending:
                    break
                chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                size = min(2 * size, self.window)
                fitted: dict[int, np.ndarray] = {}
                errors: dict[int, str] = {}
                for i, (path, future) in enumerate(chunk):
                    try:
                        fitted[i] = future.result()
                    except Exception as err:  # one file's failure, whatever it is, is that file's
                        errors[i] = _item_error(path, err)
                # This window's batches queue behind the previous window's on the model
                # threads, so the model never waits while the previous one is decoded.
                current = self._submit(tuple(path for path, _ in chunk), fitted, errors, model.submit)
                if previous is not None:
                    yield previous.collect()
                previous = current
            if previous is not None:
                yield previous.collect()

    def emissions_of_images(self, images: Sequence[np.ndarray], labels: Sequence[str]) -> Emissions:
        """`emissions` for in-memory grey images, as one window, in the calling thread."""
        if len(labels) != len(images):
            raise ValueError(f"got {len(labels)} labels for {len(images)} images")
        paths = tuple(Path(label) for label in labels)
        fitted: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for i, image in enumerate(images):
            try:
                fitted[i] = self.preprocessor.fit(image)
            except Exception as err:
                errors[i] = _item_error(paths[i], err)
        return self._submit(paths, fitted, errors, _run_now).collect()

    def _load(self, path: Path) -> np.ndarray:
        return self.preprocessor.fit(load_image(path))

    def _submit(self, paths: tuple[Path, ...], fitted: dict[int, np.ndarray], errors: dict[int, str],
                submit: Submit) -> _Submitted:
        """Batch the fitted images (grouped by width for dynamic models) and queue each batch."""
        order = sorted(fitted)
        if self.engine.spec.dynamic_width:
            order.sort(key=lambda i: fitted[i].shape[1])
        jobs: list[tuple[tuple[int, ...], Future[_Output]]] = []
        for start in range(0, len(order), self.batch_size):
            items = tuple(order[start : start + self.batch_size])
            try:
                batch = self.preprocessor.stack([fitted[i] for i in items])
            except Exception as err:
                errors.update({i: _item_error(paths[i], err) for i in items})
                continue
            jobs.append((items, submit(self._infer, batch.pixels, batch.steps)))
        return _Submitted(paths, jobs, errors)

    def _infer(self, pixels: np.ndarray, steps: Callable[[Any, int], np.ndarray | None]) -> _Output:
        """Run on the model thread: probabilities, valid lengths, rows that are not finite."""
        probs = self.engine.run(pixels)
        lengths = steps(self.engine.spec.time_steps, probs.shape[1])
        finite = np.isfinite(probs).all(axis=(1, 2))
        return probs, lengths, finite


#: The model thread's result for one batch: probs, lengths, which rows are finite.
_Output = tuple[np.ndarray, "np.ndarray | None", np.ndarray]
#: Runs `fn(*args)` somewhere and returns a Future of its result.
Submit = Callable[..., "Future[_Output]"]


@dataclass(frozen=True)
class _Submitted:
    """One window whose batches are queued on the model."""

    paths: tuple[Path, ...]
    jobs: list[tuple[tuple[int, ...], Future[_Output]]]
    errors: dict[int, str]

    def collect(self) -> Emissions:
        """Wait for the window's batches; failures become their items' errors."""
        errors = dict(self.errors)
        batches: list[BatchEmissions] = []
        for items, future in self.jobs:
            try:
                probs, lengths, finite = future.result()
            except Exception as err:  # the model failed on this batch: its images fail
                errors.update({i: _item_error(self.paths[i], err) for i in items})
                continue
            if not finite.all():
                for row in np.nonzero(~finite)[0].tolist():
                    errors[items[row]] = f"{self.paths[items[row]]}: the model's output has NaN or infinite values"
                probs = probs[finite]
                lengths = None if lengths is None else lengths[finite]
                items = tuple(i for i, ok in zip(items, finite.tolist()) if ok)
            if items:
                batches.append(BatchEmissions(items, probs, lengths))
        return Emissions(self.paths, tuple(batches), errors)


# ---- stage 2: emissions -> recognitions ----------------------------------------------
def decode(emissions: Emissions, decoding: Decoding) -> list[Recognition]:
    """Decode a window: one `Recognition` per item, in input order.

    A decoder that raises on a batch is retried on each of its rows alone, so only the
    rows it cannot decode fail: with the primary decoder, the image gets a one-line error
    naming it; with another decoder of a mapping, that result is left out of the image's
    `alternatives`."""
    decoders: Mapping[str, Decoder] = decoding if isinstance(decoding, Mapping) else {"": decoding}
    if not decoders:
        raise ValueError("decode needs at least one decoder")
    primary = next(iter(decoders))
    paths = emissions.paths
    out: list[Recognition | None] = [None] * len(paths)
    for i, message in emissions.errors.items():
        out[i] = Recognition(paths[i], error=message)
    for batch in emissions.batches:
        for row, results in enumerate(_decode_rows(decoders, batch)):
            i = batch.items[row]
            best = results[primary]
            if isinstance(best, str):
                out[i] = Recognition(paths[i], error=f"{paths[i]}: {best}")
                continue
            # A comparison decoder that fails on this image is left out of the alternatives.
            alternatives = {n: d for n, d in results.items() if not isinstance(d, str)} \
                if isinstance(decoding, Mapping) else {}
            out[i] = Recognition(paths[i], best, alternatives=alternatives)
    missing = [i for i, r in enumerate(out) if r is None]
    if missing:  # an Emissions that breaks its contract is a bug, not an image's fault
        raise ValueError(f"emissions left items {missing} without output or error")
    return [r for r in out if r is not None]


def _decode_rows(decoders: Mapping[str, Decoder], batch: BatchEmissions) -> list[dict[str, Decoded | str]]:
    """Every decoder on the batch: per row, each decoder's result or error message."""
    per_decoder = {name: _rows_of(name, decoder, batch) for name, decoder in decoders.items()}
    return [{name: rows[r] for name, rows in per_decoder.items()} for r in range(len(batch.items))]


def _rows_of(name: str, decoder: Decoder, batch: BatchEmissions) -> list[Decoded | str]:
    """One decoder on the batch; if it raises, on each row alone, to find the rows that fail."""
    try:
        return list(_checked(name, decoder(batch.probs, batch.lengths), len(batch.items)))
    except Exception as err:
        if len(batch.items) == 1:
            return [_one_line(err)]
    rows: list[Decoded | str] = []
    for r in range(len(batch.items)):
        lengths = None if batch.lengths is None else batch.lengths[r : r + 1]
        try:
            rows.extend(_checked(name, decoder(batch.probs[r : r + 1], lengths), 1))
        except Exception as err:
            rows.append(_one_line(err))
    return rows


def _checked(name: str, decoded: Sequence[Decoded], rows: int) -> Sequence[Decoded]:
    if len(decoded) != rows:
        who = f"decoder {name!r}" if name else "the decoder"
        raise ValueError(f"{who} returned {len(decoded)} results for {rows} images")
    return decoded


def _one_line(err: BaseException) -> str:
    """An exception as one line: HtrError and ValueError messages as they are, others
    with their type (e.g. "decoder failed: MemoryError: ...")."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (HtrError, ValueError)):
        return text[:500]
    return f"decoder failed: {type(err).__name__}: {text}"[:500]


def _item_error(path: Path, err: BaseException) -> str:
    """One line for an image that failed before decoding (its path first)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, HtrError):
        # HtrError messages name their file: the image's own, or the model's.
        return text if str(path) in text else f"{path}: {text}"
    return f"{path}: {type(err).__name__}: {text}"


def _run_now(fn: Callable[..., _Output], *args: Any) -> Future[_Output]:
    """A `Submit` that runs in the calling thread (exceptions are kept in the Future)."""
    future: Future[_Output] = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as err:  # delivered by future.result(), as an executor would
        future.set_exception(err)
    return future
