"""Limits on what one request may ask of the server, and image sizes read from headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..constants import MAX_IMAGE_SIDE

#: Defaults: a request body of 16 MiB, 32 files, 40 megapixels per image.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_FILES = 32
DEFAULT_MAX_PIXELS = 40_000_000
#: Inference calls running at once; further requests wait their turn (a queue).
DEFAULT_MAX_CONCURRENT = 2


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for.

    max_bytes: largest request body in bytes; larger bodies get 413 before parsing.
    max_files: most images in one request; more get 413.
    max_pixels: largest image (width x height); larger images get a per-file error,
        read from the image header where possible so they are never decoded.
    max_side: largest width or height in pixels.
    max_concurrent: inference calls running at once; other requests queue.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = MAX_IMAGE_SIDE
    max_concurrent: int = DEFAULT_MAX_CONCURRENT

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_files", "max_pixels", "max_side", "max_concurrent"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def check_size(self, width: int, height: int) -> str | None:
        """Why an image of this size is refused, or None if it is allowed."""
        if width > self.max_side or height > self.max_side:
            return f"is {width}x{height} pixels, expected at most {self.max_side} on each side"
        if width * height > self.max_pixels:
            return f"is {width}x{height} pixels ({width * height:,}), expected at most {self.max_pixels:,} pixels"
        return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a png, jpg, bmp or tif header, or None if it cannot be read.

    Only the header is parsed, so a huge image can be refused without decoding it.
    None means "unknown": the caller decodes and checks the decoded size instead.
    """
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"BM"):
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            fmt = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None
