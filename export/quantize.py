"""Smaller variants of an exported fp32 model, each checked against it.

- fp16 (for GPUs): weights and activations float16, the image input and probability
  output stay float32 (onnxconverter-common's float16 converter with keep_io_types).
- int8 (for CPUs): static QDQ quantization with onnxruntime.quantization, calibrated
  on real images prepared by the runtime's Preprocessor, for the convolutions; the
  LSTM weights are quantized too (onnxruntime's DynamicQuantizeLSTM: int8 weights,
  activations quantized on the fly), since static QDQ leaves LSTMs in float32.
- lstm8 (for CPUs, no calibration): float32 everywhere except the LSTM weights, as
  in int8 (benchmarks/bench_runtime.py measures its speed and CER against fp32).

All keep the htr metadata of the fp32 model (with `source.quantization` added).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htr.runtime.metadata import ModelSpec

from .convert import fix_ir_version
from .errors import ExportError
from .verify import Parity, compare, image_files, image_pixels, random_probes, run_onnx, session


@dataclass
class Variant:
    kind: str
    path: Path
    size: int
    parity: Parity | None
    note: str = ""

    def line(self) -> str:
        s = f"{self.kind}: {self.path} ({self.size / 1e6:.2f} MB)"
        if self.parity is not None:
            s += f"; vs fp32 {self.parity.line()}"
        if self.note:
            s += f"; {self.note}"
        return s


def _copy_metadata(src: Any, dst: Any, kind: str) -> None:
    props = {p.key: p.value for p in src.metadata_props}
    if "htr.source" in props:
        source = json.loads(props["htr.source"])
        source["quantization"] = kind
        props["htr.source"] = json.dumps(source, ensure_ascii=False, sort_keys=True)
    del dst.metadata_props[:]
    for k, v in sorted(props.items()):
        e = dst.metadata_props.add()
        e.key, e.value = k, v


def _save(proto: Any, out: Path) -> None:
    import onnx

    fix_ir_version(proto)
    onnx.checker.check_model(proto)
    # A temporary file in the same folder, then a rename: a kill leaves the old file or the new one.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        onnx.save_model(proto, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _parity(kind: str, spec: ModelSpec, fp32: Path, other: Path, batches: list[np.ndarray]) -> tuple[Parity | None, str]:
    try:
        s_ref, s_other = session(fp32), session(other)
    except Exception as err:
        return None, f"not runnable on this CPU ({str(err).splitlines()[0][:150]}); parity not measured"
    return compare(f"{kind} on {'real images' if batches else 'random probes'}", spec,
                   lambda x: run_onnx(s_ref, x), lambda x: run_onnx(s_other, x),
                   batches or random_probes(spec)), ""


def to_fp16(fp32: Path, out: Path, spec: ModelSpec, check_batches: list[np.ndarray]) -> Variant:
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ExportError(fp32, "--fp16 needs onnxconverter-common (pip install onnxconverter-common)") from None
    import warnings

    model = onnx.load(str(fp32))
    with warnings.catch_warnings():  # one warning per tiny weight truncated to fp16's range
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    _copy_metadata(model, half, "fp16")
    _save(half, out)
    parity, note = _parity("fp16", spec, fp32, out, check_batches)
    return Variant("fp16", out, out.stat().st_size, parity, note)


class _Reader:
    """CalibrationDataReader over preprocessed real images, one image per call."""

    def __init__(self, input_name: str, arrays: list[np.ndarray]):
        self.input_name = input_name
        self._it = iter(arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax
        pass


def to_int8(fp32: Path, out: Path, spec: ModelSpec, calibrate: list[str], check_batches: list[np.ndarray],
            max_images: int = 200) -> Variant:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    files = image_files(calibrate)
    arrays, skipped = image_pixels(spec, files, limit=max_images)
    if not arrays:
        raise ExportError(calibrate[0], "no readable calibration images (png, jpg, tif, bmp)")
    input_name = session(fp32).get_inputs()[0].name
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(input_name, arrays)
    tmp = out.with_name(out.name + ".tmp.onnx")
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization warns on the root logger
    try:
        quantize_static(
            str(fp32), str(tmp), reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        model = onnx.load(str(tmp))
    except Exception as err:
        raise ExportError(fp32, f"int8 quantization failed: {str(err).splitlines()[0][:300]}") from None
    finally:
        tmp.unlink(missing_ok=True)
    model = quantize_lstm_weights(model, fp32)
    lstm8 = _has_op(model, "DynamicQuantizeLSTM")
    _copy_metadata(onnx.load(str(fp32)), model, "int8-qdq-static" + (LSTM_SUFFIX if lstm8 else ""))
    _save(model, out)
    parity, note = _parity("int8", spec, fp32, out, check_batches or arrays)
    note = "; ".join(n for n in (note, f"calibrated on {len(arrays)} images" +
                                 (f", {len(skipped)} skipped" if skipped else "")) if n)
    return Variant("int8", out, out.stat().st_size, parity, note)


#: Appended to `source.quantization` when the LSTM weights are int8.
LSTM_SUFFIX = "+lstm-int8-dynamic"


def _has_op(model: Any, op_type: str) -> bool:
    return any(n.op_type == op_type for n in model.graph.node)


def quantize_lstm_weights(model: Any, name: Path) -> Any:
    """`model` with every ONNX LSTM replaced by DynamicQuantizeLSTM (int8 weights).

    Models without LSTM nodes come back unchanged. onnxruntime's quantizer works on
    files, so the model goes through a temporary folder.
    """
    import logging
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not _has_op(model, "LSTM"):
        return model
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization warns on the root logger
    with tempfile.TemporaryDirectory(prefix="htr-lstm8-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        fix_ir_version(model)
        onnx.save_model(model, str(src))
        try:
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
        except Exception as err:
            raise ExportError(name, f"LSTM weight quantization failed: {str(err).splitlines()[0][:300]}") from None
        return onnx.load(str(dst))


def to_lstm8(fp32: Path, out: Path, spec: ModelSpec, check_batches: list[np.ndarray]) -> Variant:
    """float32 with int8 LSTM weights (no calibration needed)."""
    import onnx

    model = onnx.load(str(fp32))
    if not _has_op(model, "LSTM"):
        raise ExportError(fp32, "--lstm8 needs a model with LSTM layers (this one has none)")
    quantized = quantize_lstm_weights(model, fp32)
    _copy_metadata(model, quantized, "fp32" + LSTM_SUFFIX)
    _save(quantized, out)
    parity, note = _parity("lstm8", spec, fp32, out, check_batches)
    return Variant("lstm8", out, out.stat().st_size, parity, note)
