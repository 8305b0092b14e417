"""The model metadata of DESIGN.md: one reader, one writer, one frozen dataclass.

Everything the runtime needs to use a model travels inside the ONNX file as
`metadata_props` (string keys, string values). `ModelSpec.from_props` reads them,
`ModelSpec.to_props` writes them; `embed_in_onnx` stores them in an `onnx.ModelProto`
without importing onnx (it only touches the proto's repeated field).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .constants import (
    DEFAULT_MAX_WIDTH,
    DEFAULT_MIN_WIDTH,
    FORMAT_VERSION,
    SEED_WORD_CHARSET,
)
from .errors import MetadataError

KEY_PREFIX = "htr."
RESIZE_POLICIES = ("pad", "dynamic")
#: Background policies (see `htr.runtime.preprocess`): "flatten" divides out uneven paper and light.
BACKGROUND_POLICIES = ("none", "flatten")


@dataclass(frozen=True)
class InputSpec:
    """The model input: NHWC, fixed height, fixed width or None for any width."""

    height: int
    width: int | None
    channels: int = 1
    layout: str = "NHWC"

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "channels": self.channels, "layout": self.layout}


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels become the model input (see `htr.runtime.preprocess`).

    resize: "pad" is the seed notebook's policy: grey, resize to `height` keeping
        aspect, pad right with `pad_value` to the input width, squash if wider.
        "dynamic" keeps aspect at `height` and lets the width follow the image,
        rounded up to `width_multiple` and clamped to [min_width, max_width].
    invert: store 255 - pixel (ink becomes high), as the seed did.
    scale: multiply by this after inverting (seed: 1/255).
    pad_value: the grey level used for padding, before inversion (seed: 255, white).
    background: "none", or "flatten": after resizing, each pixel is divided by the local
        paper level (a max filter, then a box blur, both `height // 2 - 1` wide, odd), so
        uneven light, grey or textured paper become white paper and the ink keeps its
        contrast against it. Written to the metadata only when not "none".
    """

    resize: str = "pad"
    invert: bool = True
    scale: float = 1.0 / 255.0
    pad_value: int = 255
    interpolation: str = "linear"
    min_width: int = DEFAULT_MIN_WIDTH
    max_width: int = DEFAULT_MAX_WIDTH
    width_multiple: int = 4
    background: str = "none"

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {} if self.background == "none" else {"background": self.background}
        return extra | {
            "resize": self.resize,
            "invert": self.invert,
            "scale": self.scale,
            "pad_value": self.pad_value,
            "interpolation": self.interpolation,
            "min_width": self.min_width,
            "max_width": self.max_width,
            "width_multiple": self.width_multiple,
        }


@dataclass(frozen=True)
class TimeSteps:
    """Output steps for an input width: T = width // stride + offset (seed word: 128 -> 31)."""

    stride: int
    offset: int = 0

    def for_width(self, width: int) -> int:
        return max(0, width // self.stride + self.offset)

    def min_width_for(self, steps: int) -> int:
        """The smallest input width that yields at least `steps` output steps."""
        return max(1, (steps - self.offset) * self.stride)

    def to_json(self) -> dict[str, Any]:
        return {"stride": self.stride, "offset": self.offset}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the runtime knows about a model, read from (or written to) the ONNX file.

    charset: output characters in class order, without the blank.
    blank: index of the CTC blank class (seed models: len(charset), i.e. last).
    input / preprocess / time_steps: see the classes above.
    source: provenance (file, sha256, versions) and training facts, free-form JSON.
    """

    charset: tuple[str, ...]
    blank: int
    input: InputSpec
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    time_steps: TimeSteps | None = None
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "charset", tuple(self.charset))
        validate(self)

    @property
    def num_classes(self) -> int:
        """Size of the model's last output axis: the charset plus the blank."""
        return len(self.charset) + 1

    @property
    def dynamic_width(self) -> bool:
        return self.input.width is None

    def check_num_classes(self, num_classes: int, path: str | Path | None = None) -> None:
        """Raise `MetadataError` unless the model outputs charset + blank classes."""
        if num_classes != self.num_classes:
            raise MetadataError(
                path,
                f"the model outputs {num_classes} classes per step but its charset has "
                f"{len(self.charset)} characters + 1 blank = {self.num_classes}",
            )

    def with_source(self, **facts: Any) -> "ModelSpec":
        return replace(self, source={**self.source, **facts})

    # ---- writer -------------------------------------------------------------------
    def to_props(self) -> dict[str, str]:
        """The `metadata_props` of DESIGN.md, as string key -> string value."""
        props = {
            "htr.format": str(self.format),
            "htr.charset": json.dumps(list(self.charset), ensure_ascii=False),
            "htr.blank": str(self.blank),
            "htr.input": json.dumps(self.input.to_json()),
            "htr.preprocess": json.dumps(self.preprocess.to_json()),
            "htr.source": json.dumps(dict(self.source), ensure_ascii=False, sort_keys=True, default=str),
        }
        if self.time_steps is not None:
            props["htr.time_steps"] = json.dumps(self.time_steps.to_json())
        return props

    def to_json(self) -> str:
        """The same content as one JSON document (the sidecar file training writes)."""
        return json.dumps({k: _maybe_json(v) for k, v in self.to_props().items()}, indent=2, ensure_ascii=False)

    def save_json(self, path: str | Path) -> None:
        from .atomic import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    # ---- reader -------------------------------------------------------------------
    @classmethod
    def from_props(cls, props: Mapping[str, str], path: str | Path | None = None) -> "ModelSpec":
        """Read and validate `metadata_props`; errors name `path` and what was expected."""
        if "htr.format" not in props:
            raise MetadataError(
                path, "no htr metadata (key htr.format missing); export the model with htr-export"
            )
        fmt = _parse_int(props, "htr.format", path)
        if fmt > FORMAT_VERSION:
            raise MetadataError(
                path, f"htr metadata format {fmt} is newer than this htr reads ({FORMAT_VERSION}); upgrade htr"
            )
        if fmt < 1:
            raise MetadataError(path, f"htr.format must be a positive integer, got {fmt}")
        for key in ("htr.charset", "htr.blank", "htr.input"):
            if key not in props:
                raise MetadataError(path, f"htr metadata lacks {key}")
        charset = _parse_json(props, "htr.charset", path)
        if not isinstance(charset, list) or not all(isinstance(c, str) for c in charset):
            raise MetadataError(path, "htr.charset must be a JSON list of strings")
        inp = _parse_json(props, "htr.input", path)
        pre = _parse_json(props, "htr.preprocess", path) if "htr.preprocess" in props else {}
        steps = _parse_json(props, "htr.time_steps", path) if "htr.time_steps" in props else None
        source = _parse_json(props, "htr.source", path) if "htr.source" in props else {}
        try:
            return cls(
                charset=tuple(charset),
                blank=_parse_int(props, "htr.blank", path),
                input=InputSpec(**inp),
                preprocess=PreprocessSpec(**pre),
                time_steps=None if steps is None else TimeSteps(**steps),
                source=source if isinstance(source, dict) else {"note": source},
                format=fmt,
            )
        except TypeError as err:  # unknown or missing field in one of the JSON objects
            raise MetadataError(path, f"malformed htr metadata: {err}") from None
        except MetadataError as err:
            raise MetadataError(path, err.message) from None

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "ModelSpec":
        """Read the sidecar JSON written by `save_json` (a path or the JSON text)."""
        path = None
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as err:
                raise MetadataError(path, f"cannot read metadata JSON: {err.strerror or err}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise MetadataError(path, f"metadata is not valid JSON: {err}") from None
        props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
        return cls.from_props(props, path)


def seed_word_spec(**source: Any) -> ModelSpec:
    """The seed notebook's word model: 32x128x1, 78 characters, blank last, 31 steps."""
    return ModelSpec(
        charset=tuple(SEED_WORD_CHARSET),
        blank=len(SEED_WORD_CHARSET),
        input=InputSpec(height=32, width=128),
        preprocess=PreprocessSpec(resize="pad"),
        time_steps=TimeSteps(stride=4, offset=-1),
        source=source,
    )


def embed_in_onnx(model_proto: Any, spec: ModelSpec) -> None:
    """Write `spec` into an `onnx.ModelProto`'s metadata_props, replacing older htr keys."""
    keep = [(p.key, p.value) for p in model_proto.metadata_props if not p.key.startswith(KEY_PREFIX)]
    del model_proto.metadata_props[:]
    for key, value in keep + sorted(spec.to_props().items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def validate(spec: ModelSpec) -> None:
    """Strict checks on a spec; raises `MetadataError` (without a path) on the first problem."""
    if not spec.charset:
        raise MetadataError(None, "htr.charset is empty")
    if any(len(c) == 0 for c in spec.charset):
        raise MetadataError(None, "htr.charset contains an empty string")
    if len(set(spec.charset)) != len(spec.charset):
        dupes = sorted({c for c in spec.charset if spec.charset.count(c) > 1})
        raise MetadataError(None, f"htr.charset has duplicate characters: {dupes!r}")
    if not 0 <= spec.blank <= len(spec.charset):
        raise MetadataError(
            None, f"htr.blank is {spec.blank} but must be in 0..{len(spec.charset)} for {len(spec.charset)} characters"
        )
    _check_types(spec)
    inp = spec.input
    if inp.layout != "NHWC":
        raise MetadataError(None, f"htr.input layout {inp.layout!r} is not supported (expected NHWC)")
    if inp.channels != 1:
        raise MetadataError(None, f"htr.input channels is {inp.channels}; htr models take 1 (grey)")
    if not isinstance(inp.height, int) or inp.height < 1:
        raise MetadataError(None, f"htr.input height must be a positive integer, got {inp.height!r}")
    if inp.width is not None and (not isinstance(inp.width, int) or inp.width < 1):
        raise MetadataError(None, f"htr.input width must be a positive integer or null, got {inp.width!r}")
    pre = spec.preprocess
    if pre.resize not in RESIZE_POLICIES:
        raise MetadataError(None, f"htr.preprocess resize {pre.resize!r} is unknown (expected one of {RESIZE_POLICIES})")
    if pre.resize == "pad" and inp.width is None:
        raise MetadataError(None, "htr.preprocess resize 'pad' needs a fixed htr.input width")
    if pre.background not in BACKGROUND_POLICIES:
        raise MetadataError(None, f"htr.preprocess background {pre.background!r} is unknown (expected one of {BACKGROUND_POLICIES})")
    if pre.interpolation not in ("linear", "area", "cubic"):
        raise MetadataError(None, f"htr.preprocess interpolation {pre.interpolation!r} is unknown")
    if not 1 <= pre.min_width <= pre.max_width or pre.width_multiple < 1:
        raise MetadataError(None, "htr.preprocess needs 1 <= min_width <= max_width and width_multiple >= 1")
    if spec.time_steps is not None and spec.time_steps.stride < 1:
        raise MetadataError(None, f"htr.time_steps stride must be >= 1, got {spec.time_steps.stride}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(spec: ModelSpec) -> None:
    """Every field of the right JSON type (a float is no width, "no" is no boolean)."""
    def need(ok: bool, where: str, expected: str, value: Any) -> None:
        if not ok:
            raise MetadataError(None, f"{where} must be {expected}, got {_show(value)}")

    inp, pre, steps = spec.input, spec.preprocess, spec.time_steps
    need(_is_int(spec.blank), "htr.blank", "an integer", spec.blank)
    need(_is_int(inp.height), "htr.input height", "a positive integer", inp.height)
    need(inp.width is None or _is_int(inp.width), "htr.input width", "a positive integer or null", inp.width)
    need(_is_int(inp.channels), "htr.input channels", "an integer", inp.channels)
    need(isinstance(inp.layout, str), "htr.input layout", 'a string ("NHWC")', inp.layout)
    need(isinstance(pre.resize, str), "htr.preprocess resize", 'a string ("pad" or "dynamic")', pre.resize)
    need(isinstance(pre.invert, bool), "htr.preprocess invert", "true or false", pre.invert)
    need(
        (_is_int(pre.scale) or isinstance(pre.scale, float)) and math.isfinite(pre.scale) and pre.scale > 0,
        "htr.preprocess scale", "a finite number above 0 (e.g. 1/255)", pre.scale,
    )
    need(_is_int(pre.pad_value) and 0 <= pre.pad_value <= 255, "htr.preprocess pad_value", "an integer grey level 0..255", pre.pad_value)
    need(isinstance(pre.interpolation, str), "htr.preprocess interpolation", 'a string ("linear", "area" or "cubic")', pre.interpolation)
    for name in ("min_width", "max_width", "width_multiple"):
        value = getattr(pre, name)
        need(_is_int(value), f"htr.preprocess {name}", "a positive integer", value)
    if steps is not None:
        need(_is_int(steps.stride), "htr.time_steps stride", "a positive integer", steps.stride)
        need(_is_int(steps.offset), "htr.time_steps offset", "an integer", steps.offset)


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, bool, int, float, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


#: How deep the free-form JSON of htr.source may nest (real provenance is 2-3 levels).
MAX_SOURCE_DEPTH = 32


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_SOURCE_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _parse_int(props: Mapping[str, str], key: str, path: str | Path | None) -> int:
    try:
        return int(props[key])
    except (TypeError, ValueError):
        raise MetadataError(path, f"{key} must be an integer, got {props[key]!r}") from None


def _parse_json(props: Mapping[str, str], key: str, path: str | Path | None) -> Any:
    try:
        value = json.loads(props[key])
    except (TypeError, json.JSONDecodeError) as err:
        raise MetadataError(path, f"{key} is not valid JSON ({err})") from None
    except RecursionError:
        raise MetadataError(path, f"{key} nests deeper than {MAX_SOURCE_DEPTH} levels") from None
    if _depth(value) > MAX_SOURCE_DEPTH:
        raise MetadataError(path, f"{key} nests deeper than {MAX_SOURCE_DEPTH} levels")
    return value


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
