"""Load any accepted Keras file and cut it down to the image -> per-step softmax graph.

Accepted: Keras 3 `.keras` and `.h5` (htr-train's, any functional or Sequential model,
with or without a CTC training head) and Keras-2 HDF5 (the seed notebook's inference
model and its ModelCheckpoint training checkpoints, see `legacy`).

The output is found automatically: the last layer whose activation is softmax and whose
output is 3-D (batch, steps, classes); `output_layer` overrides. The result is always a
*functional* Keras 3 model with one image input (tf2onnx needs functional models).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import legacy
from .errors import ExportError


@dataclass
class LoadedModel:
    model: Any  # functional keras.Model: (B, H, W, 1) -> (B, T, C)
    path: Path
    kind: str  # "keras3" or "keras2-hdf5"
    output_layer: str
    keras_version: str | None
    dynamic_width: bool
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.model.inputs[0].shape[1])

    @property
    def width(self) -> int | None:
        w = self.model.inputs[0].shape[2]
        return None if w is None else int(w)

    @property
    def num_classes(self) -> int:
        return int(self.model.outputs[0].shape[-1])

    def count_params(self) -> int:
        return int(self.model.count_params())


def _import_htr_train() -> None:
    """Register htr-train's custom layers (htr.train.models, when it imports) before loading."""
    try:
        import htr.train.models  # noqa: F401
    except Exception:
        pass


def load(path: str | Path, output_layer: str | None = None, dynamic_width: bool = False) -> LoadedModel:
    """Load `path` as a functional inference model; dynamic_width tries width None.

    If the graph cannot take a dynamic width, the fixed-width model is returned with a
    note (callers decide whether that is an error).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(path, "no such model file (expected a .keras or .h5/.hdf5 Keras model)")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5") or _is_hdf5(path):
        if legacy.is_legacy_h5(path):
            return _load_legacy(path, output_layer, dynamic_width)
        return _load_keras3(path, output_layer, dynamic_width, keras_version=legacy.h5_keras_version(path))
    if suffix == ".keras" or zipfile.is_zipfile(path):
        return _load_keras3(path, output_layer, dynamic_width, keras_version=_keras_zip_version(path))
    raise ExportError(path, "is neither a .keras archive nor an HDF5 Keras model")


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _keras_zip_version(path: Path) -> str | None:
    import json

    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except Exception:
        return None


def _load_legacy(path: Path, output_layer: str | None, dynamic_width: bool) -> LoadedModel:
    notes: list[str] = []
    if dynamic_width:
        try:
            lm = legacy.build_inference_model(path, output_layer, dynamic_width=True)
            _check_output(path, lm.model)
            return LoadedModel(lm.model, path, "keras2-hdf5", lm.output_name, lm.keras_version, True, lm.notes)
        except ExportError as err:
            notes.append(f"dynamic width not possible ({err.message}); exporting the fixed width")
    lm = legacy.build_inference_model(path, output_layer, dynamic_width=False)
    _check_output(path, lm.model)
    return LoadedModel(lm.model, path, "keras2-hdf5", lm.output_name, lm.keras_version, False, notes + lm.notes)


def _load_keras3(path: Path, output_layer: str | None, dynamic_width: bool, keras_version: str | None) -> LoadedModel:
    import keras

    _import_htr_train()
    notes: list[str] = []
    custom: dict[str, Any] = {}
    for _ in range(8):
        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True, custom_objects=custom)
            break
        except Exception as err:
            missing = _missing_class(str(err))
            if missing is None or any(m in custom for m in missing):
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise ExportError(path, f"Keras {keras.__version__} cannot load it: {first[:300]}") from None
            for m in missing:
                custom[m] = _placeholder(keras, missing[0])
            notes.append(f"unknown layer class {missing[0]!r} loaded as a pass-through placeholder "
                         "(fine for a training head; it must not lie between the image and the softmax)")
    else:  # pragma: no cover
        raise ExportError(path, "too many unknown layer classes")
    model = _functional(keras, model)
    image = [t for t in model.inputs if len(t.shape) == 4]
    if len(image) != 1:
        raise ExportError(path, f"expected exactly one image input (batch, height, width, channels), found {len(image)}")
    if image[0].shape[-1] != 1:
        raise ExportError(path, f"image input has {image[0].shape[-1]} channels; htr models take 1 (grey)")
    target = output_layer or _auto_output(keras, model)
    if target is None:
        raise ExportError(path, "found no softmax layer with a (batch, steps, classes) output; pass --output-layer")
    try:
        layer = model.get_layer(target)
    except ValueError:
        names = ", ".join(l.name for l in model.layers)
        raise ExportError(path, f"--output-layer {target!r} is not a layer of the model (have: {names})") from None
    try:
        sub = keras.Model(image[0], layer.output, name="htr_inference")
    except Exception as err:
        raise ExportError(path, f"layer {target!r} does not depend on the image input alone ({err})") from None
    _check_output(path, sub)
    if custom:
        on_path = [l.name for l in sub.layers if getattr(l, "_htr_placeholder", False)]
        if on_path:
            raise ExportError(path, f"layer {on_path[0]!r} is of an unknown custom class and lies on the image -> "
                                    "output path; install the package that defines it")
    dyn = False
    if dynamic_width and sub.inputs[0].shape[2] is not None:
        try:
            h = sub.inputs[0].shape[1]
            clone = keras.models.clone_model(sub, input_tensors=keras.Input(shape=(h, None, 1), name=sub.inputs[0].name))
            clone.set_weights(sub.get_weights())
            _check_output(path, clone)
            sub, dyn = clone, True
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            notes.append(f"dynamic width not possible ({first[:200]}); exporting the fixed width")
    elif sub.inputs[0].shape[2] is None:
        dyn = True
    return LoadedModel(sub, path, "keras3", target, keras_version, dyn, notes)


def _missing_class(message: str) -> list[str] | None:
    """Names of a custom class Keras could not locate, from its error message."""
    import re

    m = re.search(r"(?:Could not locate class|Unknown layer:?) '([^']+)'", message)
    if not m:
        return None
    names = [m.group(1)]
    for reg in re.findall(r"'registered_name': '([^']+)'", message):
        if reg.endswith(">" + names[0]) and reg not in names:
            names.append(reg)
    return names


def _placeholder(keras: Any, name: str) -> Any:
    """A weightless layer standing in for an unknown custom class: returns its first input."""

    class Placeholder(keras.layers.Layer):
        _htr_placeholder = True

        def __init__(self, **kwargs: Any):
            base = {k: kwargs[k] for k in ("name", "trainable", "dtype") if k in kwargs}
            super().__init__(**base)

        def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            while isinstance(inputs, (list, tuple)):
                inputs = inputs[0]
            return inputs

        def compute_output_shape(self, shapes: Any) -> Any:
            while isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
                shapes = shapes[0]
            return shapes

    Placeholder.__name__ = name.split(">")[-1]
    return Placeholder


def _functional(keras: Any, model: Any) -> Any:
    if isinstance(model, keras.Sequential):
        shape = model.inputs[0].shape[1:] if getattr(model, "inputs", None) else None
        if shape is None:
            raise ExportError(None, "Sequential model without an input shape")
        inp = keras.Input(shape=shape, name="image")
        x = inp
        for layer in model.layers:
            x = layer(x)
        return keras.Model(inp, x)
    return model


def _is_softmax(keras: Any, layer: Any) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) == "softmax"


def _auto_output(keras: Any, model: Any) -> str | None:
    found = None
    for layer in model.layers:
        try:
            out = layer.output
        except Exception:
            continue
        if _is_softmax(keras, layer) and len(out.shape) == 3:
            found = layer.name
    return found


def _check_output(path: Path, model: Any) -> None:
    shape = model.outputs[0].shape
    if len(shape) != 3 or shape[-1] is None:
        raise ExportError(path, f"output {model.outputs[0].name!r} has shape {tuple(shape)}; expected (batch, steps, classes)")
