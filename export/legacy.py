"""Keras-2 HDF5 (the seed notebook's checkpoints) -> a Keras 3 functional inference model.

Keras 3 cannot load these files (LSTM `time_major`, `Lambda` bytecode that needs a
global `K` and may come from another Python). We never execute stored bytecode: the
graph is rebuilt from the `model_config` JSON with Keras 3 native layers, every Lambda
is mapped by what it must be doing, and the weights are read by layer name from
`model_weights/<layer>/...` with h5py.

Lambda mapping:
- a Lambda fed by the model's extra inputs (labels, lengths) is the CTC head: dropped
  together with everything that depends on those inputs;
- a one-input Lambda whose input has a singleton spatial axis (the notebook's
  `K.squeeze(x, 1)`) becomes a native squeeze (Reshape to (-1, channels)), whatever its
  bytecode says or even if the bytecode is corrupt;
- anything else is refused with an error naming the layer (use --output-layer).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import ExportError

# Config keys that only matter for training (or that Keras 3 does not know): dropped.
_DROP_KEYS = {"time_major", "batch_input_shape", "ragged", "sparse"}
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


@dataclass
class LegacyModel:
    """What `read_legacy` found: the rebuilt Keras 3 model and notes about the rebuild."""

    model: Any  # keras.Model, image input -> chosen output
    input_name: str
    output_name: str
    notes: list[str] = field(default_factory=list)
    keras_version: str | None = None
    dropped: list[str] = field(default_factory=list)


def h5_keras_version(path: str | Path) -> str | None:
    """The `keras_version` attribute of an HDF5 model file, or None if absent / not HDF5."""
    try:
        with h5py.File(path, "r") as f:
            v = f.attrs.get("keras_version")
    except OSError:
        return None
    if isinstance(v, bytes):
        v = v.decode()
    return None if v is None else str(v)


def is_legacy_h5(path: str | Path) -> bool:
    """True for an HDF5 model written by Keras 2 / tf.keras / tf_keras."""
    v = h5_keras_version(path)
    if v is None:
        return False
    try:
        return int(v.split(".")[0]) < 3
    except ValueError:
        return False


def read_model_config(path: str | Path) -> dict:
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            raise ExportError(path, "HDF5 file has no model_config (weights-only file?); expected a saved Keras model")
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ExportError(path, f"model_config in the HDF5 attributes is not valid JSON ({err})") from None


def _clean(cfg: Any) -> Any:
    """Drop training-only / Keras-2-only keys, recursively (nested layers of Bidirectional)."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k in _DROP_KEYS or k.endswith(_DROP_SUFFIXES):
                continue
            if k == "dtype" and isinstance(v, dict):  # Keras 2.13+ dtype policy objects
                v = v.get("config", {}).get("name", "float32")
            out[k] = _clean(v)
        return out
    if isinstance(cfg, list):
        return [_clean(v) for v in cfg]
    return cfg


def _lambda_hint(cfg: dict) -> str:
    """Names seen in a Lambda's bytecode string table, read as bytes, never unmarshalled."""
    fn = cfg.get("function")
    blob = fn[0] if isinstance(fn, (list, tuple)) and fn else fn
    if not isinstance(blob, str):
        return ""
    try:
        raw = base64.b64decode(blob.encode("ascii"), validate=False)
    except Exception:
        raw = blob.encode("utf-8", "replace")
    text = raw.decode("latin-1")
    for name in ("ctc_batch_cost", "squeeze"):
        if name in text:
            return name
    return ""


def _inbound(layer: dict) -> list[str]:
    """Names of the layers feeding `layer` (Keras 2 nested-list format or Keras 3 dicts)."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    if len(nodes) > 1:
        raise ExportError(None, f"layer {layer.get('name')!r} is shared (called {len(nodes)} times); not supported")
    node = nodes[0]
    names: list[str] = []
    if isinstance(node, list):
        for entry in node:
            names.append(entry[0])
    elif isinstance(node, dict):  # Keras 3 style
        def walk(obj: Any) -> None:
            if isinstance(obj, dict):
                if obj.get("class_name") == "__keras_tensor__":
                    names.append(obj["config"]["keras_history"][0])
                else:
                    for v in obj.values():
                        walk(v)
            elif isinstance(obj, list):
                for v in obj:
                    walk(v)
        walk(node.get("args", []))
    return names


def _input_shape(layer_cfg: dict) -> list | None:
    shape = layer_cfg.get("batch_input_shape") or layer_cfg.get("batch_shape")
    return list(shape) if shape is not None else None


def build_inference_model(
    path: str | Path,
    output_layer: str | None = None,
    dynamic_width: bool = False,
) -> LegacyModel:
    """Rebuild the image -> softmax graph of a Keras-2 HDF5 model with Keras 3 layers.

    dynamic_width: give the image input a width of None (raises ExportError if the
    graph cannot take it; the caller may then fall back to the fixed width).
    """
    import keras

    path = Path(path)
    config = read_model_config(path)
    if config.get("class_name") == "Sequential":
        layers_cfg = _sequential_to_functional(config)
    else:
        layers_cfg = config.get("config", {}).get("layers")
    if not layers_cfg:
        raise ExportError(path, f"model_config of class {config.get('class_name')!r} lists no layers")

    inputs = [l for l in layers_cfg if l["class_name"] == "InputLayer"]
    images = [l for l in inputs if (s := _input_shape(l["config"])) is not None and len(s) == 4]
    if len(images) != 1:
        raise ExportError(path, f"expected exactly one image input (batch, height, width, channels), found {len(images)}")
    image_cfg = images[0]
    shape = _input_shape(image_cfg["config"])
    height, width, channels = shape[1], shape[2], shape[3]
    if channels != 1:
        raise ExportError(path, f"image input has {channels} channels; htr models take 1 (grey)")

    tensors: dict[str, Any] = {}
    built: dict[str, Any] = {}
    notes: list[str] = []
    dropped: list[str] = []
    image_name = image_cfg["config"].get("name", image_cfg["name"])
    inp = keras.Input(shape=(height, None if dynamic_width else width, 1), name=image_cfg["name"])
    tensors[image_cfg["name"]] = inp

    for layer in layers_cfg:
        name = layer["name"]
        cls = layer["class_name"]
        if cls == "InputLayer":
            if name != image_cfg["name"]:
                dropped.append(name)
            continue
        try:
            sources = _inbound(layer)
        except ExportError as err:
            raise ExportError(path, err.message) from None
        if not sources or any(s not in tensors for s in sources):
            dropped.append(name)  # fed by the labels / lengths inputs: the CTC head
            continue
        args = [tensors[s] for s in sources]
        cfg = layer["config"]
        if cls == "Lambda":
            if len(args) != 1:
                dropped.append(name)
                continue
            x = args[0]
            hint = _lambda_hint(cfg)
            singleton = [i for i, d in enumerate(x.shape) if i > 0 and d == 1]
            if x.ndim == 4 and 1 in singleton:
                klayer = keras.layers.Reshape((-1, x.shape[-1]), name=name)
                notes.append(f"Lambda {name!r} ({hint or 'bytecode not read'}) -> squeeze of axis 1")
            else:
                raise ExportError(
                    path,
                    f"Lambda layer {name!r} on input shape {tuple(x.shape)} cannot be mapped to a native layer "
                    "(only the notebook's K.squeeze(x, 1) and the CTC head are known); pass --output-layer",
                )
        else:
            try:
                klayer = _deserialize(keras, cls, _clean(cfg))
            except Exception as err:
                raise ExportError(path, f"layer {name!r} ({cls}) cannot be rebuilt in Keras 3: {err}") from None
        try:
            out = klayer(args[0] if len(args) == 1 else args)
        except Exception as err:
            raise ExportError(path, f"layer {name!r} ({cls}) fails on input {[tuple(a.shape) for a in args]}: {err}") from None
        tensors[name] = out
        built[name] = klayer

    target = output_layer or _auto_output(layers_cfg, tensors, built)
    if target is None:
        raise ExportError(path, "found no softmax layer with a (batch, steps, classes) output; pass --output-layer")
    if target not in tensors:
        raise ExportError(path, f"--output-layer {target!r} is not a layer of the image branch (have: {', '.join(built)})")
    model = keras.Model(inp, tensors[target], name="htr_inference")
    _load_weights(path, model)
    return LegacyModel(
        model=model,
        input_name=image_name,
        output_name=target,
        notes=notes,
        keras_version=h5_keras_version(path),
        dropped=dropped,
    )


def _sequential_to_functional(config: dict) -> list[dict]:
    layers = config.get("config", {})
    layers = layers.get("layers", layers) if isinstance(layers, dict) else layers
    out: list[dict] = []
    prev = None
    for i, l in enumerate(layers):
        l = dict(l)
        l.setdefault("name", l["config"].get("name", f"layer_{i}"))
        if l["class_name"] != "InputLayer" and prev is None:
            shape = _input_shape(l["config"])
            out.append({"class_name": "InputLayer", "name": "image", "config": {"batch_input_shape": shape, "name": "image"}, "inbound_nodes": []})
            prev = "image"
        l["inbound_nodes"] = [] if l["class_name"] == "InputLayer" else [[[prev, 0, 0, {}]]]
        out.append(l)
        prev = l["name"]
    return out


def _deserialize(keras: Any, cls: str, cfg: dict) -> Any:
    """Keras 3 layer from a Keras 2 config, dropping keyword arguments Keras 3 rejects."""
    cfg = dict(cfg)
    if cls == "Bidirectional":
        inner = cfg.pop("layer")
        inner_layer = _deserialize(keras, inner["class_name"], inner["config"])
        backward = cfg.pop("backward_layer", None)
        kwargs = {k: v for k, v in cfg.items() if k in ("merge_mode", "name", "trainable", "weights")}
        kwargs.pop("weights", None)
        bw = _deserialize(keras, backward["class_name"], backward["config"]) if backward else None
        return keras.layers.Bidirectional(inner_layer, backward_layer=bw, **kwargs)
    if isinstance(cfg.get("axis"), list) and len(cfg["axis"]) == 1:  # BatchNormalization axis [3]
        cfg["axis"] = cfg["axis"][0]
    layer_cls = getattr(keras.layers, cls, None)
    if layer_cls is None:
        raise ExportError(None, f"unknown layer class {cls!r}")
    for _ in range(20):
        try:
            return layer_cls(**cfg)
        except TypeError as err:
            msg = str(err)
            bad = [k for k in cfg if f"'{k}'" in msg]
            if not bad:
                raise
            for k in bad:
                cfg.pop(k)
    raise ExportError(None, f"cannot construct {cls}")


def _auto_output(layers_cfg: list[dict], tensors: dict, built: dict) -> str | None:
    """The last built layer whose activation is softmax and whose output is 3-D."""
    found = None
    for layer in layers_cfg:
        name = layer["name"]
        if name not in built:
            continue
        act = layer["config"].get("activation")
        is_softmax = act == "softmax" or (layer["class_name"] in ("Softmax",)) or (
            layer["class_name"] == "Activation" and act == "softmax"
        )
        if is_softmax and len(tensors[name].shape) == 3:
            found = name
    return found


def _weight_arrays(f: h5py.File, layer_name: str) -> list[np.ndarray]:
    root = f["model_weights"] if "model_weights" in f else f
    if layer_name not in root:
        return []
    g = root[layer_name]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
    return [np.asarray(g[n]) for n in names]


def _load_weights(path: Path, model: Any) -> None:
    with h5py.File(path, "r") as f:
        for layer in model.layers:
            expected = layer.weights
            if not expected:
                continue
            arrays = _weight_arrays(f, layer.name)
            if len(arrays) != len(expected):
                raise ExportError(
                    path, f"layer {layer.name!r} has {len(arrays)} stored weights but the rebuilt layer needs {len(expected)}"
                )
            for w, a in zip(expected, arrays):
                if tuple(w.shape) != a.shape:
                    raise ExportError(
                        path, f"weight {w.path} of layer {layer.name!r} is stored as {a.shape} but should be {tuple(w.shape)}"
                    )
            layer.set_weights(arrays)
