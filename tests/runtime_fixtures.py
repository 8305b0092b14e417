"""A tiny real ONNX "CRNN" and images it can read, for runtime tests.

The model averages the (inverted, scaled) ink over 32-pixel-high, 4-pixel-wide cells,
so step t looks at input columns 4t..4t+3 (T = W // 4), and scores each class as
A * ink + B. With charset "ab" and the blank last:

    ink ~ 0   -> blank  (scores 0, -6, -27 for blank, a, b)
    ink ~ 0.5 -> 'a'    (0, 9, 3)
    ink ~ 1   -> 'b'    (0, 24, 33)

so a grey band reads as "a", a black band as "b" and white paper as nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from htr.runtime.metadata import InputSpec, ModelSpec, PreprocessSpec, TimeSteps, embed_in_onnx

GREY, BLACK, WHITE = 128, 0, 255
# Band value for each letter the tiny model reads.
INK = {"a": GREY, "b": BLACK}


def tiny_spec(width: int | None = 128, charset: str = "ab", blank: int | None = None) -> ModelSpec:
    blank = len(charset) if blank is None else blank
    return ModelSpec(
        charset=tuple(charset),
        blank=blank,
        input=InputSpec(height=32, width=width),
        preprocess=PreprocessSpec(resize="pad" if width else "dynamic", min_width=16, width_multiple=4),
        time_steps=TimeSteps(stride=4, offset=0),
        source={"made_by": "tests"},
    )


def make_tiny_model(
    path: Path,
    width: int | None = 128,
    spec: ModelSpec | None = None,
    metadata: bool = True,
    classes: int = 3,
    nan_when_black: bool = False,
) -> Path:
    """Write the tiny model to `path`; `classes` is the real output size (3 = 'a', 'b', blank).

    nan_when_black: the output of an image that starts black (its first 4 columns all 1
    after inversion; padding is white, so this is the image's own ink) is NaN, as a broken
    model's can be for one odd input; other images read as usual."""
    a = np.array([30.0, 60.0, 0.0] + [-5.0] * (classes - 3), np.float32)[:classes]
    b = np.array([-6.0, -27.0, 0.0] + [-50.0] * (classes - 3), np.float32)[:classes]
    if classes == 3 and spec is not None and spec.blank == 0:  # keep behaviour with blank first
        a, b = a[[2, 0, 1]], b[[2, 0, 1]]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[32, 4], strides=[32, 4]),
        helper.make_node("Squeeze", ["pooled", "axes12"], ["ink"]),
        helper.make_node("Unsqueeze", ["ink", "axes2"], ["ink3"]),
        helper.make_node("Mul", ["ink3", "A"], ["scaled"]),
        helper.make_node("Add", ["scaled", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["softmax" if nan_when_black else "probs"], axis=-1),
    ]
    extra = []
    if nan_when_black:
        nodes += [
            helper.make_node("Slice", ["image", "zero", "four", "axes2"], ["left"]),
            helper.make_node("ReduceMin", ["left"], ["least4"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Squeeze", ["least4", "axes3"], ["least"]),
            helper.make_node("Equal", ["least", "one"], ["black"]),
            helper.make_node("Where", ["black", "nan", "softmax"], ["probs"]),
        ]
        extra = [
            helper.make_tensor("axes3", TensorProto.INT64, [1], [3]),
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("four", TensorProto.INT64, [1], [4]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]),
        ]
    steps = None if width is None else width // 4
    graph = helper.make_graph(
        nodes,
        "tiny_crnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 32, width or "width", 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", steps or "steps", classes])],
        initializer=[
            helper.make_tensor("A", TensorProto.FLOAT, [1, 1, classes], a),
            helper.make_tensor("B", TensorProto.FLOAT, [1, 1, classes], b),
            helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2]),
            helper.make_tensor("axes2", TensorProto.INT64, [1], [2]),
            *extra,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 writes 14 by default
    if metadata:
        embed_in_onnx(model, spec or tiny_spec(width))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def draw_word(text: str, height: int = 32, band: int = 16, gap: int = 16) -> np.ndarray:
    """Ink bands the tiny model reads as `text` (letters 'a' and 'b' only), on white paper."""
    cols = [np.full((height, gap), WHITE, np.uint8)]
    for ch in text:
        cols.append(np.full((height, band), INK[ch], np.uint8))
        cols.append(np.full((height, gap), WHITE, np.uint8))
    return np.concatenate(cols, axis=1)


#: Python code that makes every greedy decoder raise on a batch holding a row it reads as
#: "ba" (a decoder bug that only some inputs trigger); run before a command's own code.
FAULTY_GREEDY = """
import htr.runtime.decoding.factory as factory
_call = factory.GreedyDecoder.__call__
def _faulty(self, probs, lengths=None):
    results = _call(self, probs, lengths)
    if any(r.text == "ba" for r in results):
        raise RuntimeError("injected failure on 'ba'")
    return results
factory.GreedyDecoder.__call__ = _faulty
"""
