"""htr.export: Keras (.keras, .h5, legacy Keras-2 HDF5 checkpoints) -> verified ONNX with htr metadata.

    htr-export MODEL [-o OUT.onnx] [--charset STR|FILE] [--dynamic-width] [--fp16] [--int8 --calibrate DIR]

Imports TensorFlow lazily: `import htr.export` alone is cheap.
"""

from __future__ import annotations

if __name__ != "htr.export":  # e.g. `import export` from the repository root
    raise ImportError(
        f"the folder export/ is the package htr.export: import htr.export, not {__name__} "
        "(a second copy of every module, with its own exception classes, would load)"
    )

from .errors import ExportError, VerifyError

__all__ = ["ExportError", "VerifyError"]
