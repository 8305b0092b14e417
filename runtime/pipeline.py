"""Folders of images -> text, keeping the model busy.

Images are read and resized by a thread pool (OpenCV and onnxruntime release the GIL)
while the model runs on earlier batches in a thread of its own, and the main thread
stacks, normalises and decodes: batches of the next window queue on the model before the
previous window is decoded, so the model does not wait for the decoder. For
dynamic-width models a window of several batches is sorted by width before batching, so
little is spent on padding; results still come out in input order, window by window, as
soon as they are ready. The first window is a single batch, so the model starts at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .constants import DEFAULT_BATCH_SIZE, WIDTH_GROUPING_WINDOW
from .decoding import Decoded
from .engine import Engine
from .errors import HtrError
from .images import load_image
from .preprocess import Preprocessor

#: A decoder maps (B, T, C) probabilities and optional valid lengths to one result per row.
DecoderFn = Callable[[np.ndarray, "np.ndarray | None"], Sequence[Decoded]]


@dataclass(frozen=True)
class Recognition:
    """The outcome for one image: its text, or the one-line error that stopped it."""

    path: Path
    decoded: Decoded | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.decoded.text if self.decoded is not None else ""

    @property
    def confidence(self) -> float:
        return self.decoded.confidence if self.decoded is not None else 0.0


class Recognizer:
    """Engine + preprocessing + decoder, with batching and parallel image loading."""

    def __init__(
        self,
        engine: Engine,
        decoder: DecoderFn,
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

    def recognise_arrays(self, images: Sequence[np.ndarray]) -> list[Decoded]:
        """Recognise already-loaded 2-D uint8 grey images, in order (HtrError on failure)."""
        window = self._submit_window([self.preprocessor.fit(im) for im in images], _run_now)
        decoded: list[Decoded] = []
        for _, result in self._decode_window(window):
            if isinstance(result, HtrError):
                raise result
            decoded.append(result)
        return decoded

    def recognise_paths(self, paths: Iterable[Path]) -> Iterator[Recognition]:
        """Yield one `Recognition` per path, in the given order, as windows complete.

        A file that cannot be read or recognised yields a `Recognition` with `error`
        set; the rest carry on.
        """
        with ThreadPoolExecutor(self.workers, thread_name_prefix="htr-load") as loaders, \
                ThreadPoolExecutor(self.streams, thread_name_prefix="htr-model") as model:
            pending: deque[tuple[Path, Future]] = deque()
            path_iter = iter(paths)
            exhausted = False
            # The first window is one batch, so the model starts as soon as it is loaded;
            # windows then double up to the full width-grouping window.
            size = min(self.batch_size, self.window)
            previous: _Window | None = None
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
                # This window's batches queue behind the previous window's on the model
                # thread, so the model never waits while the previous one is decoded.
                current = self._submit_chunk(chunk, model.submit)
                if previous is not None:
                    yield from self._finish_chunk(previous)
                previous = current
            if previous is not None:
                yield from self._finish_chunk(previous)

    def _load(self, path: Path) -> np.ndarray:
        return self.preprocessor.fit(load_image(path))

    def _submit_chunk(self, chunk: list[tuple[Path, Future]], submit: Submit) -> _Window:
        """Wait for a chunk's images, then queue its batches on the model."""
        failed: dict[int, str] = {}
        loaded: list[tuple[int, np.ndarray]] = []
        for i, (path, future) in enumerate(chunk):
            try:
                loaded.append((i, future.result()))
            except HtrError as err:
                failed[i] = str(err)
            except Exception as err:  # an unexpected failure on one file must not stop the rest
                failed[i] = f"{path}: {type(err).__name__}: {err}"
        window = self._submit_window([im for _, im in loaded], submit)
        window.paths = [path for path, _ in chunk]
        window.failed = failed
        window.positions = [i for i, _ in loaded]
        return window

    def _finish_chunk(self, window: _Window) -> list[Recognition]:
        """Decode a submitted chunk; one `Recognition` per path, in order."""
        results: list[Recognition | None] = [None] * len(window.paths)
        for i, message in window.failed.items():
            results[i] = Recognition(window.paths[i], error=message)
        for k, result in self._decode_window(window):
            i = window.positions[k]
            path = window.paths[i]
            if isinstance(result, HtrError):
                results[i] = Recognition(path, error=f"{path}: {result}")
            else:
                results[i] = Recognition(path, result)
        return results  # type: ignore[return-value]

    def _submit_window(self, images: list[np.ndarray], submit: Submit) -> _Window:
        """Batch fitted images (grouped by width for dynamic models) and queue each batch."""
        order = list(range(len(images)))
        if self.engine.spec.dynamic_width:
            order.sort(key=lambda i: images[i].shape[1])
        window = _Window(len(images))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.preprocessor.stack([images[i] for i in idx])
            window.jobs.append((idx, batch, submit(self.engine.run, batch.pixels)))
        return window

    def _decode_window(self, window: _Window) -> list[tuple[int, Decoded | HtrError]]:
        """(index in the window, Decoded or the HtrError of its batch), in input order."""
        out: list[tuple[int, Decoded | HtrError] | None] = [None] * window.size
        for idx, batch, future in window.jobs:
            try:
                probs = future.result()
                lengths = batch.steps(self.engine.spec.time_steps, probs.shape[1])
                decoded: Sequence[Decoded | HtrError] = self.decoder(probs, lengths)
            except HtrError as err:
                decoded = [err] * len(idx)
            for i, result in zip(idx, decoded):
                out[i] = (i, result)
        return out  # type: ignore[return-value]


#: Runs `fn(*args)` somewhere and returns a Future of its result.
Submit = Callable[..., Future]


@dataclass
class _Window:
    """Batches of one window queued on the model, and what is needed to report them."""

    size: int
    jobs: list[tuple[list[int], Any, Future]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)


def _run_now(fn: Callable, *args: Any) -> Future:
    """A `Submit` that runs in the calling thread (exceptions are kept in the Future)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as err:  # delivered by future.result(), as an executor would
        future.set_exception(err)
    return future
