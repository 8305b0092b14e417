"""Pixels -> model input. Training imports this module; nothing re-implements it.

The "pad" policy is the seed notebook's `process_image`, step for step:

    resize (uint8, bilinear) to height H keeping aspect: new_w = int(w * H / h)
    if new_w < W: pad right with white (255) to W
    if new_w > W: squash (float32, bilinear) to W
    x = (255 - x) / 255

A "flatten" background policy divides the resized image by its local paper level
(`flatten_background`) before anything else.

The "dynamic" policy keeps aspect at height H and lets the width follow the image
(rounded up to `width_multiple`, clamped to [min_width, max_width]); batches are
padded with blank paper only as far as their widest image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .metadata import InputSpec, ModelSpec, PreprocessSpec, TimeSteps

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Batch:
    """A model-ready batch: `pixels` (B, H, W, 1) float32 and each image's own width."""

    pixels: np.ndarray
    widths: np.ndarray

    def steps(self, time_steps: TimeSteps | None, total: int) -> np.ndarray | None:
        """Valid output steps per image (None when every image fills the whole width)."""
        if time_steps is None or np.all(self.widths == self.pixels.shape[2]):
            return None
        return np.clip([time_steps.for_width(int(w)) for w in self.widths], 1, total).astype(np.int64)


class Preprocessor:
    """Turns 2-D uint8 grey images into normalised model inputs for one model."""

    def __init__(self, input: InputSpec, preprocess: PreprocessSpec):
        self.input = input
        self.policy = preprocess
        self._interp = _INTERPOLATION[preprocess.interpolation]
        self._flatten = background_kernel(input.height) if preprocess.background == "flatten" else None
        # The value a padded (blank paper) pixel has after normalisation.
        self.pad_level = np.float32(self._normalise_scalar(preprocess.pad_value))

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Preprocessor:
        return cls(spec.input, spec.preprocess)

    def __call__(self, grey: np.ndarray) -> np.ndarray:
        """One image -> float32 (H, W) normalised; W is the input width or, if dynamic, the image's."""
        return self.normalise(self.resize(grey))

    def fit(self, grey: np.ndarray) -> np.ndarray:
        """Resize to the model height and apply the width policy, keeping raw pixel values.

        The result is uint8 (float32 only where the "pad" policy squashed a wide image, as
        the seed does) and is not yet padded to `target_width`; `stack` pads and
        normalises whole batches at once, which is what `htr-run` does per image.
        """
        if grey.ndim != 2 or grey.dtype != np.uint8:
            raise ValueError(f"expected a 2-D uint8 grey image, got {grey.dtype} with shape {grey.shape}")
        height = self.input.height
        rows, cols = grey.shape
        new_w = max(1, int(cols * (height / rows)))
        pol = self.policy
        if pol.resize == "dynamic":
            new_w = min(max(new_w, pol.min_width), pol.max_width)
        image = cv2.resize(grey, (new_w, height), interpolation=self._interp)
        if self._flatten is not None:
            image = flatten_background(image, self._flatten)
        target = self.target_width(new_w)
        if new_w > target:
            image = cv2.resize(image.astype(np.float32), (target, height), interpolation=self._interp)
        fitted: np.ndarray = image
        return fitted

    def target_width(self, width: int) -> int:
        """The model input width for a fitted image `width` pixels wide (before batch padding)."""
        if self.policy.resize == "pad":
            assert self.input.width is not None  # ModelSpec: "pad" has a fixed width
            return self.input.width
        return _round_up(width, self.policy.width_multiple)

    def resize(self, grey: np.ndarray) -> np.ndarray:
        """Resize to the model height and apply the width policy; float32 pixel values 0..255."""
        image = self.fit(grey).astype(np.float32)
        target = self.target_width(image.shape[1])
        if image.shape[1] < target:
            pad = np.full((self.input.height, target - image.shape[1]), self.policy.pad_value, dtype=np.float32)
            image = np.concatenate((image, pad), axis=1)
        return image

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """float32 pixel values 0..255 -> model values (invert, then scale)."""
        return self._normalise_in_place(np.array(image, dtype=np.float32))

    def batch(self, images: list[np.ndarray]) -> Batch:
        """Stack preprocessed (H, W) images, padding on the right to the widest one."""
        if not images:
            raise ValueError("cannot batch zero images")
        widths = np.array([im.shape[1] for im in images], dtype=np.int64)
        out = np.full((len(images), self.input.height, int(widths.max()), 1), self.pad_level, np.float32)
        for i, im in enumerate(images):
            out[i, :, : im.shape[1], 0] = im
        return Batch(out, widths)

    def stack(self, fitted: list[np.ndarray]) -> Batch:
        """Images from `fit` -> a normalised batch, bit-for-bit `batch([self(im) ...])`.

        Each image is padded with paper to its `target_width`, the batch to the widest;
        inversion and scaling run once over the whole batch.
        """
        if not fitted:
            raise ValueError("cannot batch zero images")
        widths = np.array([self.target_width(im.shape[1]) for im in fitted], dtype=np.int64)
        out = np.full((len(fitted), self.input.height, int(widths.max()), 1), self.policy.pad_value, np.float32)
        for i, im in enumerate(fitted):
            out[i, :, : im.shape[1], 0] = im
        return Batch(self._normalise_in_place(out), widths)

    def _normalise_in_place(self, pixels: np.ndarray) -> np.ndarray:
        """Invert, then scale, float32 `pixels` in place (and return them)."""
        if self.policy.invert:
            np.subtract(np.float32(255.0), pixels, out=pixels)
        # Dividing by 255 (not multiplying by 1/255) keeps the seed's exact float32 values.
        divisor = 1.0 / self.policy.scale
        if abs(divisor - round(divisor)) < 1e-9:
            np.divide(pixels, np.float32(round(divisor)), out=pixels)
        else:
            np.multiply(pixels, np.float32(self.policy.scale), out=pixels)
        return pixels

    def _normalise_scalar(self, value: float) -> float:
        return float(self.normalise(np.array([[value]], dtype=np.float32))[0, 0])


def background_kernel(height: int) -> int:
    """The "flatten" filter size for a model `height` pixels high: odd, about half of it."""
    return max(3, (height // 2 - 1) | 1)


def flatten_background(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 grey -> uint8 grey on white paper: each pixel over the local paper level.

    The paper level is a `size` x `size` max filter (ink is darker than paper, so it is
    removed) smoothed by a box blur of the same size; dividing by it evens out light,
    shadows and paper colour while a stroke keeps its contrast to the paper around it.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    paper = cv2.blur(cv2.dilate(image, kernel), (size, size))
    out: np.ndarray = cv2.divide(image, paper, scale=255.0)  # saturated to 0..255, rounded
    return out


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
