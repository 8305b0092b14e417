"""Bundled models: `--model word` / `--model line` name files shipped in the package, and
`--lm words` / `--lm lines` the character language models shipped beside them."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError

BUNDLED_DIR = Path(__file__).parent / "models"
#: The model used when no --model is given.
DEFAULT_MODEL = "word"
#: The variant of a bundled model that each provider reads, where the package ships one:
#: NAME.lstm8.onnx (float32, int8 LSTM weights; faster on a CPU, within 0.3 CER points of
#: float32: README, "Reading handwriting they never saw") on the CPU. Quantized operators do not run on
#: onnxruntime's CUDA provider, so CUDA and TensorRT read NAME.onnx (float32).
PROVIDER_VARIANTS: dict[str, str] = {"cpu": "lstm8"}
#: The name that picks a bundled model's float32 file on any provider.
FP32 = "fp32"


def bundled_models(provider: str = "cpu") -> dict[str, Path]:
    """Name -> the file `provider` reads, for every model shipped inside the package.

    Names are the files' stems without a variant ("word", "line"); "word.lstm8" and
    "word.fp32" name one precision explicitly.
    """
    if not BUNDLED_DIR.is_dir():
        return {}
    files = {p.name[: -len(".onnx")]: p for p in sorted(BUNDLED_DIR.glob("*.onnx"))}
    variant = PROVIDER_VARIANTS.get(provider)
    models: dict[str, Path] = {}
    for stem, path in files.items():
        if "." in stem:  # NAME.VARIANT: an explicit name of its own
            models[stem] = path
            continue
        models[stem] = files.get(f"{stem}.{variant}", path) if variant else path
        models[f"{stem}.{FP32}"] = path
    return models


def bundled_variant(path: str | Path) -> str | None:
    """"fp32" or the variant (e.g. "lstm8") if `path` is one of the bundled files, else None."""
    path = Path(path)
    if path.parent.resolve() != BUNDLED_DIR.resolve() or path.suffix != ".onnx":
        return None
    stem = path.name[: -len(".onnx")]
    return stem.split(".", 1)[1] if "." in stem else FP32


def bundled_names() -> list[str]:
    """The bundled models' plain names ("line", "word")."""
    return [name for name in bundled_models() if "." not in name]


def resolve_model(model: str | Path | None, provider: str = "cpu") -> Path:
    """A model argument (bundled name, path, or None for the default) -> the .onnx path
    that `provider` reads (for a bundled name, its variant for that provider)."""
    bundled = bundled_models(provider)
    if model is None:
        if DEFAULT_MODEL in bundled:
            return bundled[DEFAULT_MODEL]
        raise ModelError(None, "no --model given and no bundled model is installed; pass --model PATH.onnx")
    if str(model) in bundled:
        return bundled[str(model)]
    path = Path(model)
    if not path.exists() and path.suffix != ".onnx" and not any(s in str(model) for s in "/\\"):
        names = ", ".join(bundled_names()) or "none installed"
        raise ModelError(path, f"no such model file or bundled model name (bundled: {names}; NAME.fp32 / NAME.lstm8 pick a precision)")
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
