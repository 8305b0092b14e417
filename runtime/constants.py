"""Every default of the runtime in one place."""

from __future__ import annotations

import os


def _env_int(name: str, default: int, scale: int = 1) -> int:
    """An integer default that the environment variable `name` may override (times `scale`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default * scale
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"htr: error: environment variable {name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise SystemExit(f"htr: error: environment variable {name}={raw!r}: expected at least 1")
    return value * scale


#: Version of the htr metadata written into models; readers refuse newer ones.
FORMAT_VERSION = 1

#: The seed notebook's 78 output characters (class order; the CTC blank is class 78).
SEED_WORD_CHARSET = "!\"#&'()*+,-./0123456789:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The line model's characters: the word charset plus the space between words.
SEED_LINE_CHARSET = " " + SEED_WORD_CHARSET

#: Image files htr-run picks up from a folder (lower-case suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Images smaller than this on either side carry no text and are rejected.
MIN_IMAGE_SIDE = 4
#: Images larger than this on either side are rejected before decoding them fully.
MAX_IMAGE_SIDE = 20_000
#: Images of more pixels than this (width x height, read from the header) are refused
#: before any pixel is decoded. Override: HTR_MAX_PIXELS.
MAX_IMAGE_PIXELS = _env_int("HTR_MAX_PIXELS", 64_000_000)
#: Image files larger than this are refused before they are read. Override: HTR_MAX_FILE_MB.
MAX_FILE_BYTES = _env_int("HTR_MAX_FILE_MB", 256, 1 << 20)
#: Memory that images being decoded may hold at once, shared by every loader thread and
#: every server request of the process (decoded pixels, estimated from the header); a
#: decode waits until its share is free. Override: HTR_DECODE_MEMORY_MB.
DECODE_MEMORY_BYTES = _env_int("HTR_DECODE_MEMORY_MB", 1024, 1 << 20)

#: Width bounds for dynamic-width models (pixels, after resizing to the input height).
DEFAULT_MIN_WIDTH = 16
DEFAULT_MAX_WIDTH = 4096

#: Batching: images per inference call, and how many batches' worth of images are
#: gathered and sorted by width before batching (dynamic-width models only).
DEFAULT_BATCH_SIZE = 32
WIDTH_GROUPING_WINDOW = 8

#: The decoder htr-run, htr-eval and htr-serve use unless told otherwise (the decoders'
#: own defaults are their options dataclasses', in decoding/options.py).
DEFAULT_DECODER = "greedy"
#: Defined with the other decoder defaults; named here for htr-serve's API schema.
from .decoding.constants import DEFAULT_BEAM_WIDTH as DEFAULT_BEAM_WIDTH  # noqa: E402
