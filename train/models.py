"""CRNN architectures by name, built from Keras 3 layers only (any backend).

Every builder returns a `Built`: the inference model (image in, per-step softmax out,
the last layer is named "probs" and is where export cuts), the `ModelSpec` that the
runtime needs to use it, and `CTCModel`, the training wrapper that adds the CTC loss
with the blank last (the seed convention: blank = len(charset)).

Architectures:
    seed-word  the seed notebook, layer for layer: 32x128x1, 7 conv + 2 BiLSTM(256),
               31 steps, 8,743,247 parameters with the 78-character charset.
    seed-line  the line-level seed: 64 high, any width, 7 conv + 2 BiLSTM(256),
               width // 8 steps (100 for 800 px), spaces in the charset.
    lean       a compact word/line model: 32 high, any width, one full conv then
               depthwise-separable convs, one BiLSTM(128); width // 4 steps.
    tiny       a very small model for tests and smoke runs (32 high, any width).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers, ops

from htr.runtime.constants import SEED_LINE_CHARSET, SEED_WORD_CHARSET
from htr.runtime.metadata import InputSpec, ModelSpec, PreprocessSpec, TimeSteps

PROBS = "probs"
LOGITS = "logits"


@dataclass
class Built:
    """An architecture instance: inference model, its metadata, and the CTC trainer."""

    name: str
    inference: keras.Model
    spec: ModelSpec

    def training_model(self) -> "CTCModel":
        return CTCModel.from_inference(self.inference, blank=self.spec.blank)


# ---- the CTC training wrapper ---------------------------------------------------------


@keras.saving.register_keras_serializable(package="htr")
class CTCModel(keras.Model):
    """The inference model's logits plus a CTC loss head (blank last by default).

    Inputs: the image batch (B, H, W, 1). Targets `y` are a dict:
        labels        (B, L) int32, padded with any value past `label_length`
        label_length  (B,) int32
        logit_length  (B,) int32, valid output steps per image (from the spec's time_steps)
    The loss is computed in `compute_loss`, which every Keras backend's train_step and
    test_step call, so no backend-specific train_step is needed.
    """

    def __init__(self, logits_model: keras.Model, blank: int, **kwargs):
        super().__init__(**kwargs)
        self.logits_model = logits_model
        self.blank = int(blank)
        self.built = True  # every variable lives in the (already built) functional model

    @classmethod
    def from_inference(cls, inference: keras.Model, blank: int) -> "CTCModel":
        logits = inference.get_layer(LOGITS).output
        return cls(keras.Model(inference.inputs, logits, name="logits_model"), blank=blank, name="ctc_training")

    def call(self, inputs, training=False):
        return self.logits_model(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = ctc_loss(y, y_pred, self.blank)
        extra = self.losses
        if extra:
            loss = loss + ops.sum(ops.stack([ops.cast(v, "float32") for v in extra]))
        return loss

    def get_config(self):
        return {
            "logits_model": keras.saving.serialize_keras_object(self.logits_model),
            "blank": self.blank,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        logits_model = keras.saving.deserialize_keras_object(config.pop("logits_model"))
        return cls(logits_model, **config)


def ctc_loss(y: dict, logits, blank: int):
    """Mean CTC loss over the batch from logits (B, T, C); `y` as in `CTCModel`."""
    logits = ops.cast(logits, "float32")
    steps = ops.shape(logits)[1]
    logit_length = ops.minimum(ops.cast(y["logit_length"], "int32"), steps)
    per_sample = ops.ctc_loss(
        ops.cast(y["labels"], "int32"),
        logits,
        ops.cast(y["label_length"], "int32"),
        logit_length,
        mask_index=blank,
    )
    return ops.mean(per_sample)


# ---- builders ---------------------------------------------------------------------------


def _head(x, num_classes: int):
    """Per-step logits (float32 under mixed precision) and the softmax named "probs"."""
    logits = layers.Dense(num_classes, name=LOGITS, dtype="float32")(x)
    return layers.Activation("softmax", name=PROBS, dtype="float32")(logits)


def seed_word(charset: str | tuple[str, ...] = SEED_WORD_CHARSET) -> Built:
    """The seed notebook's word model, layer for layer (its Lambda squeeze is a Reshape)."""
    charset = tuple(charset)
    inputs = keras.Input(shape=(32, 128, 1), name="image")
    x = layers.Conv2D(64, (3, 3), activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(pool_size=(2, 2), strides=2)(x)
    x = layers.Conv2D(128, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2), strides=2)(x)
    x = layers.Conv2D(256, (3, 3), activation="relu", padding="same")(x)
    x = layers.Conv2D(256, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(pool_size=(2, 1))(x)
    x = layers.Conv2D(512, (3, 3), activation="relu", padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(512, (3, 3), activation="relu", padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(pool_size=(2, 1))(x)
    x = layers.Conv2D(512, (2, 2), activation="relu")(x)  # (1, 31, 512)
    x = layers.Reshape((31, 512), name="squeeze_height")(x)
    x = layers.Bidirectional(layers.LSTM(256, return_sequences=True, dropout=0.2))(x)
    x = layers.Bidirectional(layers.LSTM(256, return_sequences=True, dropout=0.2))(x)
    probs = _head(x, len(charset) + 1)
    model = keras.Model(inputs, probs, name="seed_word")
    spec = ModelSpec(
        charset=charset,
        blank=len(charset),
        input=InputSpec(height=32, width=128),
        preprocess=PreprocessSpec(resize="pad"),
        time_steps=TimeSteps(stride=4, offset=-1),
        source={"architecture": "seed-word"},
    )
    return Built("seed-word", model, spec)


def seed_line(charset: str | tuple[str, ...] = SEED_LINE_CHARSET) -> Built:
    """The line-level seed: 64 high, any width, 7 conv + 2 BiLSTM(256), width // 8 steps."""
    charset = tuple(charset)
    inputs = keras.Input(shape=(64, None, 1), name="image")
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D((2, 2))(x)  # 32
    x = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2))(x)  # 16
    x = layers.Conv2D(256, 3, activation="relu", padding="same")(x)
    x = layers.Conv2D(256, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2))(x)  # 8, W/8
    x = layers.Conv2D(512, 3, activation="relu", padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(512, 3, activation="relu", padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D((2, 1))(x)  # 4
    x = layers.Conv2D(512, (4, 1), activation="relu", padding="valid")(x)  # 1, W/8
    x = layers.Reshape((-1, 512), name="squeeze_height")(x)
    x = layers.Bidirectional(layers.LSTM(256, return_sequences=True, dropout=0.2))(x)
    x = layers.Bidirectional(layers.LSTM(256, return_sequences=True, dropout=0.2))(x)
    probs = _head(x, len(charset) + 1)
    model = keras.Model(inputs, probs, name="seed_line")
    spec = ModelSpec(
        charset=charset,
        blank=len(charset),
        input=InputSpec(height=64, width=None),
        preprocess=PreprocessSpec(resize="dynamic", min_width=64, max_width=4096, width_multiple=8),
        time_steps=TimeSteps(stride=8, offset=0),
        source={"architecture": "seed-line"},
    )
    return Built("seed-line", model, spec)


def _sep_block(x, filters: int, name: str):
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def lean(charset: str | tuple[str, ...] = SEED_WORD_CHARSET, width: tuple[int, ...] = (32, 64, 128, 160, 256), rnn: int = 128) -> Built:
    """Compact CRNN: 32 high, any width, width // 4 steps.

    One full 3x3 conv (32), then depthwise-separable 3x3 convs (64, 128, 128, `width[-1]`)
    with BatchNorm, pools (2,2) (2,2) (2,1) (2,1), a (2,1) conv that collapses the height,
    and one BiLSTM(`rnn`).
    """
    charset = tuple(charset)
    c1, c2, c3, c4, c5 = width
    inputs = keras.Input(shape=(32, None, 1), name="image")
    x = layers.Conv2D(c1, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)  # 16, W/2
    x = _sep_block(x, c2, "b1")
    x = layers.MaxPooling2D((2, 2))(x)  # 8, W/4
    x = _sep_block(x, c3, "b2")
    x = _sep_block(x, c4, "b3")
    x = layers.MaxPooling2D((2, 1))(x)  # 4
    x = _sep_block(x, c4, "b4")
    x = layers.MaxPooling2D((2, 1))(x)  # 2
    x = layers.Conv2D(c5, (2, 1), activation="relu", name="collapse")(x)  # 1, W/4
    x = layers.Reshape((-1, c5), name="squeeze_height")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Bidirectional(layers.LSTM(rnn, return_sequences=True))(x)
    probs = _head(x, len(charset) + 1)
    model = keras.Model(inputs, probs, name="lean")
    spec = ModelSpec(
        charset=charset,
        blank=len(charset),
        input=InputSpec(height=32, width=None),
        preprocess=PreprocessSpec(resize="dynamic", min_width=32, max_width=4096, width_multiple=4),
        time_steps=TimeSteps(stride=4, offset=0),
        source={"architecture": "lean"},
    )
    return Built("lean", model, spec)


def lean_deep(charset: str | tuple[str, ...] = SEED_WORD_CHARSET, rnn: int = 128) -> Built:
    """`lean` with a second BiLSTM(`rnn`) on a residual branch: room for many hands.

    The branch is `x + Dense(zero-initialised)(BiLSTM(x))` between the first BiLSTM and the
    head, so a `lean-deep` model started `--init-from` a trained `lean` one reads exactly as
    that model does before its first step, and training only adds what the branch learns.
    The new layers are named (`deep_rnn`, `deep_proj`) so `init_from` leaves them fresh.
    """
    built = lean(charset, rnn=rnn)
    inner = built.inference
    features = inner.get_layer(LOGITS).input
    branch = layers.Bidirectional(layers.LSTM(rnn, return_sequences=True), name="deep_rnn")(features)
    branch = layers.Dense(2 * rnn, kernel_initializer="zeros", name="deep_proj")(branch)
    x = layers.Add(name="deep_add")([features, branch])
    probs = _head(x, len(charset) + 1)
    model = keras.Model(inner.inputs, probs, name="lean_deep")
    return Built("lean-deep", model, built.spec.with_source(architecture="lean-deep"))


def tiny(charset: str | tuple[str, ...] = SEED_WORD_CHARSET) -> Built:
    """A few thousand parameters: for tests and smoke runs only."""
    built = lean(charset, width=(8, 16, 16, 16, 32), rnn=16)
    built.inference.name = "tiny"
    return Built("tiny", built.inference, built.spec.with_source(architecture="tiny"))


ARCHITECTURES: dict[str, Callable[..., Built]] = {
    "seed-word": seed_word,
    "seed-line": seed_line,
    "lean": lean,
    "lean-deep": lean_deep,
    "tiny": tiny,
}
DEFAULT_CHARSETS = {"seed-word": SEED_WORD_CHARSET, "seed-line": SEED_LINE_CHARSET}


def build(arch: str, charset: str | tuple[str, ...] | None = None) -> Built:
    """Build architecture `arch` (see ARCHITECTURES) for `charset` (default: the arch's own)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} (expected one of {', '.join(ARCHITECTURES)})")
    if charset is None:
        charset = DEFAULT_CHARSETS.get(arch, SEED_WORD_CHARSET)
    return ARCHITECTURES[arch](charset=charset)


# ---- cost ------------------------------------------------------------------------------


def output_steps(model: keras.Model, height: int, width: int) -> int:
    """The real number of output steps for an input of `width` (runs the model once)."""
    import numpy as np

    probs = model(np.zeros((1, height, width, 1), "float32"), training=False)
    return int(ops.shape(probs)[1])


def count_flops(model: keras.Model, width: int) -> int:
    """Multiply-adds x 2 of one image of `width` (conv, dense, LSTM/GRU; ignores pooling/BN).

    Shapes are taken from a symbolic call at the given width, so dynamic-width models
    are costed at that width.
    """
    height = model.inputs[0].shape[1]
    probe = keras.Model(model.inputs, [l.output for l in model.layers[1:]])
    shapes = [tuple(ops.shape(t)) for t in probe(ops.zeros((1, height, width, 1)), training=False)]
    macs = 0
    for layer, out_shape in zip(model.layers[1:], shapes):
        macs += _layer_macs(layer, out_shape)
    return int(2 * macs)


def _layer_macs(layer, out_shape) -> int:
    import math

    if isinstance(layer, layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        cin = layer.depthwise_kernel.shape[2]
        spatial = out_shape[1] * out_shape[2]
        return spatial * (kh * kw * cin * layer.depth_multiplier + cin * layer.depth_multiplier * layer.filters)
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return out_shape[1] * out_shape[2] * kh * kw * out_shape[3]
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = layer.kernel.shape[2]
        return out_shape[1] * out_shape[2] * kh * kw * cin * layer.filters
    if isinstance(layer, layers.Dense):
        steps = math.prod(out_shape[1:-1]) if len(out_shape) > 2 else 1
        return steps * layer.kernel.shape[0] * layer.units
    if isinstance(layer, layers.Bidirectional):
        steps = out_shape[1]
        total = 0
        for rnn in (layer.forward_layer, layer.backward_layer):
            gates = 4 if isinstance(rnn, layers.LSTM) else 3
            units = rnn.units
            cin = rnn.cell.kernel.shape[0]
            total += steps * gates * (cin + units) * units
        return total
    if isinstance(layer, (layers.LSTM, layers.GRU)):
        gates = 4 if isinstance(layer, layers.LSTM) else 3
        return out_shape[1] * gates * (layer.cell.kernel.shape[0] + layer.units) * layer.units
    return 0
