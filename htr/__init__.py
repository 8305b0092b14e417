"""htr: handwritten text recognition (Keras-trained CRNNs, exported to ONNX, run by onnxruntime).

The distribution's three parts live in the repository's top-level folders and are
imported through this package:

- `htr.runtime` (``runtime/``): onnxruntime + NumPy recognition, htr-run, htr-eval, htr-serve
- `htr.train` (``train/``): Keras 3 training, htr-train, htr-synth
- `htr.export` (``export/``): Keras -> ONNX, htr-export

This module stays light: importing it imports none of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Looked up on first use: importlib.metadata costs ~50 ms at every command's start,
    # a window in which Ctrl-C could not yet be answered with one honest line.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("htr")
        except PackageNotFoundError:  # running from a checkout that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'htr' has no attribute {name!r}")
