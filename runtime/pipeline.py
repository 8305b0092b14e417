"""Folders of images -> text, keeping the model busy.

Images are read and preprocessed by a thread pool (OpenCV and onnxruntime release the
GIL) while the model runs on the previous batch. For dynamic-width models a window of
several batches is sorted by width before batching, so little is spent on padding;
results still come out in input order, window by window, as soon as they are ready.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

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
        self.preprocessor = Preprocessor.from_spec(engine.spec)
        self.window = batch_size * (WIDTH_GROUPING_WINDOW if engine.spec.dynamic_width else 1)

    def recognise_arrays(self, images: Sequence[np.ndarray]) -> list[Decoded]:
        """Recognise already-loaded 2-D uint8 grey images, in order."""
        return self._run_window([self.preprocessor.fit(im) for im in images])

    def recognise_paths(self, paths: Iterable[Path]) -> Iterator[Recognition]:
        """Yield one `Recognition` per path, in the given order, as windows complete.

        A file that cannot be read or recognised yields a `Recognition` with `error`
        set; the rest carry on.
        """
        with ThreadPoolExecutor(self.workers, thread_name_prefix="htr-load") as pool:
            pending: deque[tuple[Path, Future]] = deque()
            path_iter = iter(paths)
            exhausted = False
            # The first window is one batch, so the model starts as soon as it is loaded;
            # windows then double up to the full width-grouping window.
            window = min(self.batch_size, self.window)
            while True:
                # Keep two windows of images loading ahead of the model.
                while not exhausted and len(pending) < 2 * self.window:
                    path = next(path_iter, None)
                    if path is None:
                        exhausted = True
                        break
                    pending.append((path, pool.submit(self._load, path)))
                if not pending:
                    return
                chunk = [pending.popleft() for _ in range(min(window, len(pending)))]
                window = min(2 * window, self.window)
                yield from self._recognise_chunk(chunk)

    def _load(self, path: Path) -> np.ndarray:
        return self.preprocessor.fit(load_image(path))

    def _recognise_chunk(self, chunk: list[tuple[Path, Future]]) -> list[Recognition]:
        loaded: list[tuple[int, np.ndarray]] = []
        results: list[Recognition | None] = [None] * len(chunk)
        for i, (path, future) in enumerate(chunk):
            try:
                loaded.append((i, future.result()))
            except HtrError as err:
                results[i] = Recognition(path, error=str(err))
            except Exception as err:  # an unexpected failure on one file must not stop the rest
                results[i] = Recognition(path, error=f"{path}: {type(err).__name__}: {err}")
        if loaded:
            try:
                decoded = self._run_window([im for _, im in loaded])
            except HtrError as err:
                decoded = None
                message = str(err)
            for k, (i, _) in enumerate(loaded):
                path = chunk[i][0]
                results[i] = Recognition(path, decoded[k]) if decoded else Recognition(path, error=f"{path}: {message}")
        return results  # type: ignore[return-value]

    def _run_window(self, images: list[np.ndarray]) -> list[Decoded]:
        """Batch (grouping by width for dynamic models), run, decode; results in input order."""
        order = list(range(len(images)))
        if self.engine.spec.dynamic_width:
            order.sort(key=lambda i: images[i].shape[1])
        out: list[Decoded | None] = [None] * len(images)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.preprocessor.stack([images[i] for i in idx])
            probs = self.engine.run(batch.pixels)
            lengths = batch.steps(self.engine.spec.time_steps, probs.shape[1])
            for i, result in zip(idx, self.decoder(probs, lengths)):
                out[i] = result
        return out  # type: ignore[return-value]

