"""htr.runtime: recognise handwriting with onnxruntime and NumPy (no TensorFlow, no Keras).

Public names are imported lazily so that `htr-run --help` starts instantly:

    from htr.runtime import Engine, Recognizer, ModelSpec, greedy_decode, beam_search_decode
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelSpec": "metadata",
    "InputSpec": "metadata",
    "PreprocessSpec": "metadata",
    "TimeSteps": "metadata",
    "embed_in_onnx": "metadata",
    "seed_word_spec": "metadata",
    "Preprocessor": "preprocess",
    "Batch": "preprocess",
    "load_image": "images",
    "decode_image": "images",
    "list_images": "images",
    "Engine": "engine",
    "Recognizer": "pipeline",
    "Recognition": "pipeline",
    "Decoded": "decoding",
    "greedy_decode": "decoding",
    "beam_search_decode": "decoding",
    "make_decoder": "decoding",
    "Sample": "datasets",
    "LabelledSet": "datasets",
    "load_labelled": "datasets",
    "error_rates": "metrics",
    "edit_distance": "metrics",
    "resolve_model": "models",
    "segment_page": "segment",
    "cut_lines": "segment",
    "Segmentation": "segment",
    "TextLine": "segment",
    "SegmentOptions": "segment",
    "PageReader": "pages",
    "PageResult": "pages",
    "serialize": "serialize",
    "HtrError": "errors",
    "ImageError": "errors",
    "ModelError": "errors",
    "MetadataError": "errors",
    "ProviderError": "errors",
    "DatasetError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'htr.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
