"""Errors a user can act on: each one renders as a single line naming the file."""

from __future__ import annotations

from pathlib import Path


class HtrError(Exception):
    """Base class: `str(err)` is one line, prefixed with the file it is about."""

    def __init__(self, path: str | Path | None, message: str):
        self.path = None if path is None else str(path)
        self.message = " ".join(str(message).split())  # one line, always
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


class ImageError(HtrError):
    """An image file could not be read or is unusable (corrupt, empty, too small)."""


class ModelError(HtrError):
    """A model file is missing, not ONNX, lacks htr metadata or does not fit its charset."""


class MetadataError(ModelError):
    """The htr metadata inside a model is missing, malformed or from a newer format."""


class ProviderError(HtrError):
    """An execution provider (CUDA, TensorRT) was asked for but is not active."""


class DatasetError(HtrError):
    """A labelled data set (labels.tsv, IAM words.txt/lines.txt) is malformed."""
