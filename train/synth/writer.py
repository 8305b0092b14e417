"""Writing synthetic sets to disk: PNGs plus ``labels.tsv``, or texts for a language model."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from .augment import AugmentRanges
from .generator import SynthGenerator

_worker_generator: SynthGenerator | None = None


def _init_worker(generator: SynthGenerator) -> None:
    global _worker_generator
    _worker_generator = generator


def _write_range(out_dir: str, start: int, stop: int) -> list[tuple[str, str]]:
    import cv2

    rows = []
    for index in range(start, stop):
        assert _worker_generator is not None
        s = _worker_generator.sample(index)
        rel = f"images/{index // 1000:04d}/{index:07d}.png"
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not cv2.imwrite(path, s.image):
            raise OSError(f"{path}: could not write PNG")
        rows.append((rel, s.text))
    return rows


def write_texts(
    out_file: str | Path,
    kind: str = "words",
    count: int = 1000,
    seed: int = 0,
    split: str = "train",
    charset: str | None = None,
    *,
    digit_fraction: float = 0.1,
) -> Path:
    """Write the texts of samples 0..count-1, one per line, without drawing them: text
    to train a character LM on (`htr-lm`) that matches what the images say."""
    generator = SynthGenerator(kind, charset, split, seed, digit_fraction, augment=False)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    _replace_lines(out, (generator.text(i) for i in range(count)))
    return out


def _replace_lines(path: Path, lines: Iterable[str]) -> None:
    """Write `lines` to `path` through a temporary file, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def write_dataset(
    out_dir: str | Path,
    kind: str = "words",
    count: int = 1000,
    seed: int = 0,
    split: str = "train",
    charset: str | None = None,
    *,
    workers: int | None = None,
    digit_fraction: float = 0.1,
    augment: bool = True,
    ranges: AugmentRanges | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write `count` samples as PNGs plus ``labels.tsv`` (``images/0000/0000000.png<TAB>text``).

    Sample ``i`` on disk is ``SynthGenerator(...).sample(i)``, whatever `workers` is.
    Images are made by a pool of `workers` processes (default: all CPUs; 1 = in this
    process). `progress` is called with the number of samples done so far. Returns
    `out_dir`, a labelled set every htr command accepts.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = SynthGenerator(kind, charset, split, seed, digit_fraction, augment, ranges)
    workers = max(1, min(workers or os.cpu_count() or 1, max(1, count // 64)))
    chunk = 256
    spans = [(i, min(i + chunk, count)) for i in range(0, count, chunk)]
    rows: list[tuple[str, str]] = []
    if workers == 1:
        _init_worker(generator)
        for start, stop in spans:
            rows += _write_range(str(out), start, stop)
            if progress:
                progress(len(rows))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork is fastest, but forking a process that runs TensorFlow's threads can hang
        forkable = "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules
        method = "fork" if forkable else "spawn"
        with ProcessPoolExecutor(workers, multiprocessing.get_context(method), _init_worker, (generator,)) as pool:
            for part in pool.map(_write_range, [str(out)] * len(spans), *zip(*spans)) if spans else []:
                rows += part
                if progress:
                    progress(len(rows))
    _replace_lines(out / "labels.tsv", (f"{rel}\t{text}" for rel, text in rows))
    return out
