"""Shared fixtures: a tiny real ONNX model on disk and a folder of images it can read."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of the tiny model with a fixed width (128) and with a dynamic width."""
    from runtime_fixtures import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {
        "fixed": make_tiny_model(root / "fixed.onnx", width=128),
        "dynamic": make_tiny_model(root / "dynamic.onnx", width=None),
    }
