"""Keras inference model -> ONNX with the htr metadata (charset, input, preprocessing,
time steps, provenance) embedded by `htr.runtime.metadata.embed_in_onnx`."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from htr.runtime.constants import SEED_WORD_CHARSET
from htr.runtime.errors import MetadataError
from htr.runtime.metadata import InputSpec, ModelSpec, PreprocessSpec, TimeSteps, embed_in_onnx

from .errors import ExportError
from .keras_model import LoadedModel

DEFAULT_OPSET = 13
#: onnxruntime 1.18+ reads IR <= 10 everywhere we ship; onnx writes newer by default.
MAX_IR_VERSION = 10


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- charset / sidecar ---------------------------------------------------------------
def find_sidecar(model_path: Path) -> Path | None:
    """`<model>.json` or `metadata.json` beside the model (written by htr-train)."""
    for cand in (model_path.with_suffix(".json"), model_path.with_name(model_path.name + ".json"),
                 model_path.parent / "metadata.json"):
        if cand.is_file():
            return cand
    return None


def read_charset_arg(value: str) -> tuple[str, ...]:
    """`--charset`: the characters themselves, or a file (JSON list, ModelSpec JSON, or text)."""
    p = Path(value)
    if len(value) < 260 and p.is_file():
        text = p.read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, list) and all(isinstance(c, str) for c in doc):
            return tuple(doc)
        if isinstance(doc, dict) and "htr.charset" in doc:
            cs = doc["htr.charset"]
            return tuple(json.loads(cs) if isinstance(cs, str) else cs)
        lines = text.splitlines()
        if len(lines) > 1 and all(len(l) == 1 for l in lines if l != ""):
            return tuple(l for l in lines if l != "")  # one character per line
        return tuple(text.rstrip("\r\n"))
    return tuple(value)


def resolve_spec(
    loaded: LoadedModel,
    charset: str | None = None,
    warn: Callable[[str], None] = lambda m: print(f"warning: {m}", file=sys.stderr),
) -> tuple[ModelSpec, str]:
    """The ModelSpec to embed and where its charset came from.

    Order: --charset, the sidecar JSON beside the model, the notebook charset for a
    79-class model (with a warning). Raises ExportError if the charset does not fit.
    """
    path = loaded.path
    sidecar_spec: ModelSpec | None = None
    sidecar = find_sidecar(path)
    if sidecar is not None:
        try:
            sidecar_spec = ModelSpec.from_json(sidecar)
        except MetadataError as err:
            if charset is None:
                raise ExportError(sidecar, f"sidecar metadata is unusable: {err.message}") from None
            warn(f"{sidecar}: ignoring unusable sidecar metadata ({err.message})")
    n = loaded.num_classes
    if charset is not None:
        chars, origin = read_charset_arg(charset), "--charset"
        blank = len(chars)
    elif sidecar_spec is not None:
        chars, origin, blank = sidecar_spec.charset, str(sidecar), sidecar_spec.blank
    elif n == len(SEED_WORD_CHARSET) + 1:
        chars, origin, blank = tuple(SEED_WORD_CHARSET), "seed notebook", len(SEED_WORD_CHARSET)
        warn(f"{path.name}: no charset given and no sidecar JSON; using the seed notebook's "
             f"{len(SEED_WORD_CHARSET)} characters (blank last) because the model outputs {n} classes")
    else:
        raise ExportError(path, f"the model outputs {n} classes per step and no charset is known: "
                                f"pass --charset with {n - 1} characters or put the training metadata beside it")
    if len(chars) + 1 != n:
        raise ExportError(path, f"the model outputs {n} classes per step but the charset from {origin} has "
                                f"{len(chars)} characters + 1 blank = {len(chars) + 1}")
    if len(set(chars)) != len(chars):
        raise ExportError(path, f"the charset from {origin} has duplicate characters")

    width = loaded.width
    if sidecar_spec is not None:
        pre = sidecar_spec.preprocess
        if sidecar_spec.input.height != loaded.height:
            raise ExportError(path, f"the model input is {loaded.height} pixels high but {origin} says "
                                    f"{sidecar_spec.input.height}")
        source = dict(sidecar_spec.source)
    else:
        pre = PreprocessSpec()
        source = {}
    pre = replace(pre, resize="dynamic" if width is None else "pad")
    try:
        spec = ModelSpec(
            charset=chars,
            blank=blank,
            input=InputSpec(height=loaded.height, width=width),
            preprocess=pre,
            time_steps=time_steps(loaded),
            source=source,
        )
    except MetadataError as err:
        raise ExportError(path, err.message) from None
    return spec, origin


def time_steps(loaded: LoadedModel) -> TimeSteps | None:
    """T = W // stride + offset, measured by running the graph on two widths."""
    model = loaded.model
    h = loaded.height

    def steps(m: Any, w: int) -> int | None:
        out = m(np.zeros((1, h, w, 1), np.float32), training=False)
        return int(out.shape[1])

    try:
        if loaded.width is None:
            probe = model
            w1, w2 = 128, 256
        else:
            import keras

            probe = keras.models.clone_model(model, input_tensors=keras.Input(shape=(h, None, 1)))
            w1, w2 = loaded.width, loaded.width * 2
        t1, t2 = steps(probe, w1), steps(probe, w2)
        if t2 > t1 and (w2 - w1) % (t2 - t1) == 0:
            stride = (w2 - w1) // (t2 - t1)
            return TimeSteps(stride=stride, offset=t1 - w1 // stride)
    except Exception:
        pass
    if loaded.width is not None:
        t = int(model.outputs[0].shape[1])
        if t > 0:
            stride = max(1, loaded.width // t)
            return TimeSteps(stride=stride, offset=t - loaded.width // stride)
    return None


# ---- conversion ----------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {}
    for mod in ("keras", "tensorflow", "tf2onnx", "onnx"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            pass
    return out


def provenance(loaded: LoadedModel, charset_origin: str) -> dict[str, Any]:
    return {
        "file": loaded.path.name,
        "sha256": sha256(loaded.path),
        "format": loaded.kind,
        "keras_version": loaded.keras_version,
        "output_layer": loaded.output_layer,
        "charset_from": charset_origin if charset_origin in ("--charset", "seed notebook") else Path(charset_origin).name,
        "exported_with": versions(),
    }


def to_onnx(loaded: LoadedModel, opset: int = DEFAULT_OPSET) -> Any:
    """tf2onnx conversion with a dynamic batch (and width when the model has one)."""
    import tensorflow as tf
    import tf2onnx

    sig = (tf.TensorSpec((None, loaded.height, loaded.width, 1), tf.float32, name="image"),)
    # tf2onnx logs each op it cannot convert, and a summary; check_ops says it in one line.
    quiet = logging.getLogger("tf2onnx")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        proto, _ = tf2onnx.convert.from_keras(loaded.model, input_signature=sig, opset=opset)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportError(loaded.path, f"tf2onnx could not convert the model: {first[:300]}") from None
    finally:
        quiet.setLevel(level)
    check_ops(proto, loaded.path)
    fix_ir_version(proto)
    _name_dims(proto)
    return proto


def check_ops(proto: Any, path: str | Path) -> None:
    """ExportError naming the layers whose TensorFlow ops tf2onnx left unconverted.

    tf2onnx only logs "Unsupported ops" and keeps such a TensorFlow op as a node of the
    ONNX graph, which no ONNX runtime can run; this says so in one line instead.
    """
    import onnx.defs

    left: dict[str, set[str]] = {}
    for node in proto.graph.node:
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, node.domain):
            parts = node.name.split("/")
            layer = parts[-2] if len(parts) >= 2 else node.name
            left.setdefault(node.op_type, set()).add(layer)
    if left:
        ops = "; ".join(f"{op} (layer {', '.join(sorted(layers))})" for op, layers in sorted(left.items()))
        raise ExportError(
            path,
            f"tf2onnx cannot convert the TensorFlow op(s) {ops} to ONNX; "
            "replace these layers with ones ONNX supports (Conv, Dense, LSTM, ...)",
        )


def _name_dims(proto: Any) -> None:
    """Readable names for the dynamic dimensions: batch, width, steps."""
    graph = proto.graph
    for value, names in ((graph.input[0], ("batch", None, "width", None)), (graph.output[0], ("batch", "steps", None))):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names):
            if name and not dim.HasField("dim_value"):
                dim.dim_param = name


def fix_ir_version(proto: Any) -> None:
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)


def save(proto: Any, spec: ModelSpec, out: str | Path) -> Path:
    import onnx

    embed_in_onnx(proto, spec)
    fix_ir_version(proto)
    onnx.checker.check_model(proto)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(out)
    return out


def export(loaded: LoadedModel, out: str | Path, charset: str | None = None, opset: int = DEFAULT_OPSET,
           warn: Callable[[str], None] | None = None) -> tuple[Path, ModelSpec]:
    kwargs = {} if warn is None else {"warn": warn}
    spec, origin = resolve_spec(loaded, charset, **kwargs)
    spec = spec.with_source(**provenance(loaded, origin))
    proto = to_onnx(loaded, opset)
    return save(proto, spec, out), spec
