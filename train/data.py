"""One data interface for training: IAM roots, labels.tsv folders and synthetic handwriting.

A *source* is anything with `len()` and `get(i) -> (uint8 grey image, text)`:

    LabelledSource   an IAM root (words.txt / lines.txt) or a labels.tsv folder, read by
                     `htr.runtime.datasets.load_labelled` (notebook split or a split file)
    SynthSource      `htr.train.synth.SynthGenerator` samples 0..size-1, made on the fly

`CTCDataset` (a `keras.utils.PyDataset`: worker threads or processes) turns a source
into model-ready batches: it loads, optionally augments, preprocesses with the runtime's
`Preprocessor` (bit-for-bit what `htr-run` does), encodes labels (texts with characters
outside the charset are skipped and counted), drops samples whose label cannot fit the
model's output steps (counted), pads labels, and groups similar widths into a batch
for dynamic-width models. Each batch is `(pixels, {"labels", "label_length", "logit_length"})`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import keras
import numpy as np

from htr.runtime.datasets import load_labelled
from htr.runtime.errors import DatasetError, ImageError
from htr.runtime.images import load_image
from htr.runtime.metadata import ModelSpec
from htr.runtime.preprocess import Preprocessor

SKIP_UNKNOWN = "characters outside the charset"
SKIP_TOO_LONG = "label longer than the output steps"
SKIP_UNREADABLE = "unreadable image"
SKIP_EMPTY = "empty label"


class Source(Protocol):
    name: str

    def __len__(self) -> int: ...

    def get(self, index: int) -> tuple[np.ndarray, str]: ...

    def text(self, index: int) -> str | None:
        """The label without loading the image, if known (None for synthetic data)."""


# ---- labels --------------------------------------------------------------------------


class LabelEncoder:
    """Text <-> class indices for a charset (class i = charset[i]; the blank is not a class here)."""

    def __init__(self, charset: Sequence[str]):
        self.charset = tuple(charset)
        self.index = {c: i for i, c in enumerate(self.charset)}

    def encode(self, text: str) -> np.ndarray | None:
        """Class indices of `text`, or None if it has a character outside the charset."""
        try:
            return np.array([self.index[c] for c in text], dtype=np.int32)
        except KeyError:
            return None

    def decode(self, labels: Sequence[int]) -> str:
        return "".join(self.charset[int(i)] for i in labels)

    def unknown(self, text: str) -> set[str]:
        return {c for c in text if c not in self.index}


def required_steps(labels: Sequence[int]) -> int:
    """Fewest CTC output steps that can emit `labels` (a blank between doubled letters)."""
    labels = np.asarray(labels)
    return int(len(labels) + np.count_nonzero(labels[1:] == labels[:-1]))


# ---- sources -------------------------------------------------------------------------


class LabelledSource:
    """An IAM root or labels.tsv folder (see `htr.runtime.datasets`)."""

    def __init__(self, root: str | Path, split: str = "all", split_file: str | Path | None = None, limit: int | None = None):
        self.labelled = load_labelled(root, split=split, split_file=split_file)
        self.samples = self.labelled.samples[:limit] if limit else self.labelled.samples
        self.skipped = dict(self.labelled.skipped)
        self.name = f"{root} ({self.labelled.kind}, {split})"
        self.kind = "lines" if self.labelled.kind == "iam-lines" else "words"

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, index: int) -> tuple[np.ndarray, str]:
        sample = self.samples[index]
        return load_image(sample.path), sample.text

    def text(self, index: int) -> str:
        return self.samples[index].text


class SynthSource:
    """Samples `offset .. offset+size-1` of a `SynthGenerator` (made on the fly, deterministic)."""

    def __init__(
        self, kind: str, charset: Sequence[str], split: str, size: int, seed: int = 0, offset: int = 0,
        digit_fraction: float = 0.1,
    ):
        from htr.train.synth import SynthGenerator

        self.generator = SynthGenerator(
            kind=kind, charset="".join(charset), split=split, seed=seed, digit_fraction=digit_fraction
        )
        self.size, self.offset, self.kind = int(size), int(offset), kind
        self.skipped: dict[str, int] = {}
        self.name = f"synth:{kind} ({split} hands, {size} samples, seed {seed})"

    def __len__(self) -> int:
        return self.size

    def get(self, index: int) -> tuple[np.ndarray, str]:
        sample = self.generator.sample(self.offset + index)
        return sample.image, sample.text

    def text(self, index: int) -> None:
        return None


class ConcatSource:
    """Several sources as one: sample i of the whole is sample i - offset of the one it falls in."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = tuple(sources)
        self.starts = np.cumsum([0] + [len(s) for s in self.sources])
        self.skipped: dict[str, int] = {}
        for source in self.sources:
            for reason, count in (getattr(source, "skipped", {}) or {}).items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.name = " + ".join(s.name for s in self.sources)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _find(self, index: int) -> tuple[Source, int]:
        which = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.sources[which], index - int(self.starts[which])

    def get(self, index: int) -> tuple[np.ndarray, str]:
        source, local = self._find(index)
        return source.get(local)

    def text(self, index: int) -> str | None:
        source, local = self._find(index)
        return source.text(local)


def open_source(
    data: str,
    charset: Sequence[str],
    role: str = "train",
    size: int | None = None,
    seed: int = 0,
    split_file: str | Path | None = None,
    digit_fraction: float = 0.1,
) -> Source:
    """`data` is `synth:words`, `synth:lines` or a labelled folder; `role` is train or val.

    Synthetic validation uses the held-out hands; labelled validation uses the notebook
    split (every 10th record) or `split_file`. For an explicit `--val` folder pass
    role="all". `digit_fraction`: the share of synthetic training samples that are real
    MNIST digit strings.
    """
    if data.startswith("synth:"):
        kind = data.split(":", 1)[1] or "words"
        if kind not in ("words", "lines"):
            raise DatasetError(data, "synthetic data is synth:words or synth:lines")
        default = 20_000 if role == "train" else 1_000
        split = "val" if role == "val" else "train"
        return SynthSource(
            kind, charset, split, size or default, seed=seed + (7919 if role == "val" else 0),
            digit_fraction=digit_fraction,
        )
    split = {"train": "train", "val": "val"}.get(role, "all")
    return LabelledSource(data, split=split, split_file=split_file, limit=size)


# ---- augmentation (real images; the synthetic generator augments its own) -------------


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild slant, rotation, scale, stroke width and contrast changes on white paper."""
    rows, cols = image.shape
    shear = rng.uniform(-0.3, 0.3)
    angle = np.deg2rad(rng.uniform(-2.0, 2.0))
    scale = rng.uniform(0.9, 1.1)
    a, b = scale * np.cos(angle), -scale * np.sin(angle) + shear
    c, d = scale * np.sin(angle), scale * np.cos(angle)
    pad = int(abs(shear) * rows) + 2
    out_cols = cols + 2 * pad
    centre = np.array([cols / 2, rows / 2])
    matrix = np.array([[a, b, 0.0], [c, d, 0.0]])
    matrix[:, 2] = np.array([out_cols / 2, rows / 2]) - matrix[:, :2] @ centre
    out = cv2.warpAffine(image, matrix, (out_cols, rows), flags=cv2.INTER_LINEAR, borderValue=255)
    op = rng.integers(3)
    if op == 1:
        out = cv2.erode(out, np.ones((2, 2), np.uint8))  # thicker dark strokes
    elif op == 2 and min(rows, cols) > 24:
        out = cv2.dilate(out, np.ones((2, 2), np.uint8))
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.0))
    return out


# ---- the batch pipeline ----------------------------------------------------------------


@dataclass
class Batch:
    pixels: np.ndarray
    labels: np.ndarray
    label_length: np.ndarray
    logit_length: np.ndarray
    texts: list[str]


class CTCDataset(keras.utils.PyDataset):
    """Batches of (pixels, CTC targets) from a source, for `keras.Model.fit`.

    Args:
        source: see `open_source`.
        spec: the model's `ModelSpec` (charset, preprocessing, time steps).
        batch_size: images per batch.
        shuffle: reshuffle every epoch (training); validation keeps its order.
        augment_images: apply `augment` to real images (synthetic ones come augmented).
        width_group: for dynamic widths, batches are drawn from windows of this many
            batches sorted by label length, so that a batch holds similar widths.
        width_bucket: dynamic batches are padded (blank paper) to a multiple of this,
            which bounds the number of distinct shapes the backend compiles.
        workers / use_multiprocessing: PyDataset's parallel loading.
    """

    def __init__(
        self,
        source: Source,
        spec: ModelSpec,
        batch_size: int = 32,
        shuffle: bool = True,
        augment_images: bool = False,
        seed: int = 0,
        width_group: int = 8,
        width_bucket: int = 32,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        steps_per_epoch: int | None = None,
    ):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        self.source, self.spec = source, spec
        self.batch_size = int(batch_size)
        self.shuffle, self.augment_images, self.seed = shuffle, augment_images, int(seed)
        self.width_group, self.width_bucket = width_group, width_bucket
        self.encoder = LabelEncoder(spec.charset)
        self.preprocessor = Preprocessor.from_spec(spec)
        self.fixed_steps = spec.time_steps.for_width(spec.input.width) if spec.input.width else None
        self._lock = threading.Lock()
        self.skipped: Counter[str] = Counter(getattr(source, "skipped", {}) or {})
        self.indices = self._usable_indices()
        self._lengths = self._text_lengths()
        if len(self.indices) == 0:
            raise DatasetError(source.name, "no usable samples (every label was empty, unknown or too long)")
        self.steps_per_epoch = steps_per_epoch
        varies = self.num_data_batches > 1 or augment_images  # augmentation changes widths too
        if len(self) == 1 and shuffle and self.spec.dynamic_width and varies and keras.backend.backend() == "tensorflow":
            # Keras' TensorFlow adapter fixes a PyDataset's batch shape from its first two
            # batches (see `_differ_from_first`): with one, a later epoch's width would not fit.
            raise ValueError(
                f"{source.name}: one batch per epoch cannot train on images of varying width "
                f"({self.num_data_batches} batches of {self.batch_size}); expected 2 or more steps per epoch "
                f"(--steps-per-epoch 2, or more samples than --batch-size)"
            )
        self.set_epoch(0)

    # -- PyDataset -------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch: `steps_per_epoch` if given (cycling through the data), else one pass."""
        return self.steps_per_epoch or self.num_data_batches

    @property
    def num_data_batches(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, index: int):
        batch = self.batch(index)
        if index == 1:
            batch = self._differ_from_first(batch)
        targets = {"labels": batch.labels, "label_length": batch.label_length, "logit_length": batch.logit_length}
        return batch.pixels, targets

    def _differ_from_first(self, batch: "Batch") -> "Batch":
        """Pad batch 1 one step wider than batch 0 where they would match.

        Keras' TensorFlow adapter fixes the tensor signature of a PyDataset from its first
        two batches: a dimension that differs between them becomes dynamic. Extra blank
        paper and extra label padding change nothing (the lengths are unchanged), and
        this keeps varying widths and label lengths legal for the rest of training.
        """
        first = self.batch(0)
        pixels, labels = batch.pixels, batch.labels
        if self.spec.dynamic_width and pixels.shape[2] == first.pixels.shape[2]:
            extra = max(1, self.width_bucket)
            pad = np.full(pixels.shape[:2] + (extra, 1), self.preprocessor.pad_level, np.float32)
            pixels = np.concatenate([pixels, pad], axis=2)
        if labels.shape[1] == first.labels.shape[1]:
            labels = np.concatenate([labels, np.zeros((labels.shape[0], 16), np.int32)], axis=1)
        return Batch(pixels, labels, batch.label_length, batch.logit_length, batch.texts)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for `epoch` (resuming sets the epoch it continues from)."""
        self.epoch = int(epoch)
        if self.steps_per_epoch:
            # Epochs shorter than the data walk on through the data instead of restarting.
            first = self.epoch * self.steps_per_epoch
            rounds = range(first // self.num_data_batches, (first + self.steps_per_epoch) // self.num_data_batches + 1)
            order = [b for r in rounds for b in self._make_order(r)]
            start = first - rounds[0] * self.num_data_batches
            self._order = order[start : start + self.steps_per_epoch]
        else:
            self._order = self._make_order(self.epoch)

    # -- building blocks ---------------------------------------------------------------
    def _usable_indices(self) -> np.ndarray:
        """Drop labelled samples whose text is empty, unknown or too long, before training."""
        keep = []
        for i in range(len(self.source)):
            text = self.source.text(i)
            if text is None:
                keep.append(i)
                continue
            reason = self._reject(text)
            if reason:
                self.skipped[reason] += 1
            else:
                keep.append(i)
        return np.array(keep, dtype=np.int64)

    def _text_lengths(self) -> np.ndarray | None:
        """Each sample's label length, for grouping similar widths; a synthetic sample (text
        unknown until drawn) counts as the median known one. None if no text is known."""
        lengths = np.array([len(t) if (t := self.source.text(i)) is not None else -1 for i in range(len(self.source))])
        known = lengths[lengths >= 0]
        if known.size == 0:
            return None
        lengths[lengths < 0] = int(np.median(known))
        return lengths

    def _reject(self, text: str, steps: int | None = None) -> str | None:
        if not text:
            return SKIP_EMPTY
        labels = self.encoder.encode(text)
        if labels is None:
            return SKIP_UNKNOWN
        steps = steps if steps is not None else self.fixed_steps
        if steps is not None and required_steps(labels) > steps:
            return SKIP_TOO_LONG
        return None

    def _make_order(self, epoch: int) -> list[np.ndarray]:
        """The batches of one epoch, as arrays of source indices."""
        idx = self.indices.copy()
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            rng.shuffle(idx)
        if self.spec.dynamic_width and self.width_group > 1 and self._lengths is not None:
            window = self.batch_size * self.width_group
            groups = []
            for start in range(0, len(idx), window):
                chunk = idx[start : start + window]
                groups.append(chunk[np.argsort(self._lengths[chunk], kind="stable")])
            idx = np.concatenate(groups)
        batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.shuffle and self.spec.dynamic_width:
            rng.shuffle(batches)
        return batches

    def _load(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str] | str:
        """(preprocessed image, labels, text) or the reason it was skipped."""
        try:
            image, text = self.source.get(int(i))
        except (ImageError, OSError, ValueError):
            return SKIP_UNREADABLE
        reason = self._reject(text)
        if reason:
            return reason
        if self.augment_images and self.source.text(int(i)) is not None:  # synthetic ones come augmented
            image = augment(image, rng)
        pixels = self.preprocessor(image)
        labels = self.encoder.encode(text)
        if self.fixed_steps is None:
            steps = self.spec.time_steps.for_width(pixels.shape[1]) if self.spec.time_steps else None
            if steps is not None and required_steps(labels) > steps:
                return SKIP_TOO_LONG
        return pixels, labels, text

    def batch(self, index: int) -> Batch:
        order = self._order[index % len(self._order)]
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        items, reasons = [], []
        extra = 0
        candidates = list(order)
        while not items or (len(items) < len(order) and candidates):
            if not candidates:  # everything in this batch was unusable: borrow the next ones
                extra += 1
                if extra > len(self.indices):
                    raise DatasetError(self.source.name, "no sample in the data could be loaded")
                candidates = [self.indices[(index * self.batch_size + len(order) + extra) % len(self.indices)]]
            loaded = self._load(candidates.pop(0), rng)
            if isinstance(loaded, str):
                reasons.append(loaded)
            else:
                items.append(loaded)
        if reasons:
            with self._lock:
                self.skipped.update(reasons)
        images = [it[0] for it in items]
        packed = self.preprocessor.batch(images)
        pixels = packed.pixels
        if self.spec.dynamic_width and self.width_bucket > 1:
            width = pixels.shape[2]
            target = -(-width // self.width_bucket) * self.width_bucket
            if target > width:
                pad = np.full(pixels.shape[:2] + (target - width, 1), self.preprocessor.pad_level, np.float32)
                pixels = np.concatenate([pixels, pad], axis=2)
        steps = self.spec.time_steps.for_width(pixels.shape[2]) if self.spec.time_steps else 1
        if self.spec.time_steps is not None:
            logit_length = np.clip([self.spec.time_steps.for_width(int(w)) for w in packed.widths], 1, steps)
        else:
            logit_length = np.full(len(items), steps)
        label_length = np.array([len(it[1]) for it in items], dtype=np.int32)
        pad_to = max(16, -(-int(label_length.max()) // 16) * 16)
        labels = np.zeros((len(items), pad_to), dtype=np.int32)
        for row, it in enumerate(items):
            labels[row, : len(it[1])] = it[1]
        return Batch(pixels, labels, label_length, np.asarray(logit_length, np.int32), [it[2] for it in items])

    def skipped_summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
