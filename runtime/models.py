"""Bundled models: `--model word` / `--model line` name files shipped in the package, and
`--lm words` / `--lm lines` the character language models shipped beside them."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError

BUNDLED_DIR = Path(__file__).parent / "models"
#: The model used when no --model is given.
DEFAULT_MODEL = "word"


def bundled_models() -> dict[str, Path]:
    """Name -> path of every model shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.onnx"))}


def resolve_model(model: str | Path | None) -> Path:
    """A model argument (bundled name, path, or None for the default) -> an .onnx path."""
    bundled = bundled_models()
    if model is None:
        if DEFAULT_MODEL in bundled:
            return bundled[DEFAULT_MODEL]
        raise ModelError(None, "no --model given and no bundled model is installed; pass --model PATH.onnx")
    if str(model) in bundled:
        return bundled[str(model)]
    path = Path(model)
    if not path.exists() and path.suffix != ".onnx" and not any(s in str(model) for s in "/\\"):
        names = ", ".join(bundled) or "none installed"
        raise ModelError(path, f"no such model file or bundled model name (bundled: {names})")
    return path


#: Suffix of the bundled character language models (gzipped htr-lm JSON).
LM_SUFFIX = ".lm.json.gz"


def bundled_lms() -> dict[str, Path]:
    """Name -> path of every character language model shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name[: -len(LM_SUFFIX)]: p for p in sorted(BUNDLED_DIR.glob("*" + LM_SUFFIX))}


def resolve_lm(lm: str | os.PathLike[str]) -> Path:
    """An --lm argument (bundled name or path) -> a file path (ValueError if neither)."""
    bundled = bundled_lms()
    if str(lm) in bundled and not Path(lm).exists():
        return bundled[str(lm)]
    path = Path(lm)
    if not path.exists():
        names = ", ".join(bundled) or "none installed"
        raise ValueError(f"{path}: no such language model file or bundled LM name (bundled: {names})")
    return path
