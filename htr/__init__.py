"""htr: handwritten text recognition (Keras-trained CRNNs, exported to ONNX, run by onnxruntime).

The distribution's three parts live in the repository's top-level folders and are
imported through this package:

- `htr.runtime` (``runtime/``): onnxruntime + NumPy recognition, htr-run, htr-eval, htr-serve
- `htr.train` (``train/``): Keras 3 training, htr-train, htr-synth
- `htr.export` (``export/``): Keras -> ONNX, htr-export

This module stays light: importing it imports none of them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("htr")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
