"""htr.export: Keras (.keras, .h5, legacy Keras-2 HDF5 checkpoints) -> verified ONNX with htr metadata.

    htr-export MODEL [-o OUT.onnx] [--charset STR|FILE] [--dynamic-width] [--fp16] [--int8 --calibrate DIR]

Imports TensorFlow lazily: `import htr.export` alone is cheap.
"""

from __future__ import annotations

from .errors import ExportError, VerifyError

__all__ = ["ExportError", "VerifyError"]
