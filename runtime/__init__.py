"""htr.runtime: recognise handwriting with onnxruntime and NumPy (no TensorFlow, no Keras).

Public names are imported lazily so that `htr-run --help` starts instantly:

    from htr.runtime import Engine, Recognizer, ModelSpec, greedy_decode, beam_search_decode

The path: images -> `Recognizer.emissions` (load, preprocess, `Engine`) -> `Emissions`
-> `decode` with a `Decoder` from `build_decoder(GreedyOptions() | BeamOptions() |
LexiconOptions(), charset, blank)` -> one `Recognition` per image.
"""

from __future__ import annotations

if __name__ != "htr.runtime":  # e.g. `import runtime` from the repository root
    raise ImportError(
        f"the folder runtime/ is the package htr.runtime: import htr.runtime, not {__name__} "
        "(a second copy of every module, with its own exception classes, would load)"
    )

from .lazy import lazy_exports

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
    "Emissions": "pipeline",
    "decode": "pipeline",
    "Decoded": "decoding",
    "Decoder": "decoding",
    "greedy_decode": "decoding",
    "beam_search_decode": "decoding",
    "make_decoder": "decoding",
    "build_decoder": "decoding",
    "GreedyOptions": "decoding",
    "BeamOptions": "decoding",
    "LexiconOptions": "decoding",
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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
