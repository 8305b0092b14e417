"""Parity of an exported model: Keras vs onnxruntime on the same inputs.

Probes: random pixels (always) plus real images (`--check`) prepared by the runtime's
own Preprocessor from the metadata in the ONNX file. Reported: max absolute difference
of the probabilities and agreement of the greedy-decoded text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from htr.runtime.decoding import greedy_decode
from htr.runtime.errors import HtrError
from htr.runtime.images import list_images, load_image
from htr.runtime.metadata import ModelSpec
from htr.runtime.preprocess import Preprocessor

from .errors import ExportError, VerifyError

DEFAULT_TOLERANCE = 1e-4


@dataclass
class Parity:
    name: str
    samples: int
    max_abs_diff: float
    text_agree: int
    skipped: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.text_agree / self.samples if self.samples else 1.0

    def line(self) -> str:
        s = (f"{self.name}: {self.samples} inputs, max |diff| {self.max_abs_diff:.3g}, "
             f"decoded text agrees {self.text_agree}/{self.samples}")
        if self.skipped:
            s += f" ({len(self.skipped)} images skipped)"
        return s


def check_onnx(path: str | Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as err:
        raise VerifyError(path, f"onnx.checker fails: {str(err).splitlines()[0][:300]}") from None


def session(path: str | Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(sess: Any, pixels: np.ndarray, batch: int = 16) -> np.ndarray:
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: pixels[i:i + batch]})[0] for i in range(0, len(pixels), batch)]
    return np.concatenate(outs).astype(np.float32)


def run_keras(model: Any, pixels: np.ndarray, batch: int = 16) -> np.ndarray:
    outs = [np.asarray(model(pixels[i:i + batch], training=False)) for i in range(0, len(pixels), batch)]
    return np.concatenate(outs).astype(np.float32)


def random_probes(spec: ModelSpec, n: int = 4, seed: int = 0, widths: Iterable[int] | None = None) -> list[np.ndarray]:
    """Batches of random pixels in [0, 1]: one at the input width, or several widths if dynamic."""
    rng = np.random.default_rng(seed)
    h = spec.input.height
    if spec.input.width is not None:
        return [rng.random((n, h, spec.input.width, 1), dtype=np.float32)]
    return [rng.random((n, h, w, 1), dtype=np.float32) for w in (widths or (64, 128, 200))]


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    found, problems = list_images([str(p) for p in paths], recursive=True)  # htr-synth nests images/0000/
    if problems:
        path, message = problems[0]
        raise ExportError(path, message)
    return found


def image_pixels(spec: ModelSpec, files: list[Path], limit: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Real images through the runtime Preprocessor, one (1, H, W, 1) array each (widths may differ)."""
    pre = Preprocessor.from_spec(spec)
    arrays, skipped = [], []
    for f in files[:limit] if limit else files:
        try:
            arrays.append(pre.batch([pre(load_image(f))]).pixels)
        except HtrError as err:
            skipped.append(str(err))
    return arrays, skipped


def _texts(probs: np.ndarray, spec: ModelSpec) -> list[str]:
    return [greedy_decode(p, spec.charset, spec.blank).text for p in probs]


def compare(name: str, spec: ModelSpec, ref: Any, other: Any, batches: list[np.ndarray]) -> Parity:
    """ref/other: callables pixels -> probabilities."""
    diff, agree, n = 0.0, 0, 0
    for x in batches:
        a, b = ref(x), other(x)
        if a.shape != b.shape:
            raise VerifyError(None, f"{name}: output shapes differ: {a.shape} vs {b.shape}")
        diff = max(diff, float(np.max(np.abs(a - b))) if a.size else 0.0)
        ta, tb = _texts(a, spec), _texts(b, spec)
        agree += sum(x == y for x, y in zip(ta, tb))
        n += len(ta)
    return Parity(name, n, diff, agree)


def verify_export(onnx_path: Path, keras_model: Any, spec: ModelSpec, check: list[str] | None = None,
                  tolerance: float = DEFAULT_TOLERANCE) -> list[Parity]:
    """Keras vs ONNX on random probes and (optionally) real images; raise VerifyError beyond tolerance."""
    check_onnx(onnx_path)
    sess = session(onnx_path)
    keras_fn = lambda x: run_keras(keras_model, x)  # noqa: E731
    onnx_fn = lambda x: run_onnx(sess, x)  # noqa: E731
    results = [compare("random probes", spec, keras_fn, onnx_fn, random_probes(spec))]
    if check:
        arrays, skipped = image_pixels(spec, image_files(check))
        if not arrays:
            raise ExportError(check[0], "no readable image to check with")
        r = compare("real images", spec, keras_fn, onnx_fn, arrays)
        r.skipped = skipped
        results.append(r)
    for r in results:
        if r.max_abs_diff > tolerance:
            raise VerifyError(onnx_path, f"ONNX differs from Keras on {r.name}: max |diff| {r.max_abs_diff:.3g} "
                                         f"> tolerance {tolerance:g}")
    return results
