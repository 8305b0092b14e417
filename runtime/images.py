"""Reading image files into 8-bit greyscale arrays (png, jpg, tif, bmp; grey, RGB, RGBA, 16-bit).

Memory stays bounded whatever the file: the size is read from the header (PNG IHDR, JPEG
SOF, TIFF IFD, BMP info header) and refused before any pixel is decoded, decodes draw on
one process-wide `DecodeBudget`, and 16-bit or transparent images become grey strip by
strip, never through a full-size float copy.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .constants import DECODE_MEMORY_BYTES, IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE
from .errors import ImageError
from .inputs import path_problem, read_regular_file

# Leading bytes of the formats we accept, to tell "not an image" from "corrupt image".
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpg",
    b"II*\x00": "tif",
    b"MM\x00*": "tif",
    b"BM": "bmp",
}


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None if it is none we read."""
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read before any pixel is decoded.

    channels and bytes_per_sample are what OpenCV decodes the file into (palette and
    grey+alpha images count as 4 channels), so `decoded_bytes` bounds the decode's memory.
    """

    format: str
    width: int
    height: int
    channels: int
    bytes_per_sample: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Peak memory of the decode: OpenCV decodes a colour image, then reorders its
        channels (RGB to BGR) into a second buffer; plus the 8-bit grey result."""
        copies = 2 if self.channels > 1 else 1
        return self.pixels * (copies * self.channels * self.bytes_per_sample + 1)


def read_header(data: bytes, name: str | Path = "<bytes>") -> ImageHeader:
    """The size and sample layout of png, jpg, tif or bmp bytes, from the header only.

    Raises `ImageError` naming `name` when the bytes are no image we read, or the header
    is cut short or malformed (so the file could not be decoded either).
    """
    kind = sniff_format(data)
    if kind is None:
        raise ImageError(name, "is not a png, jpg, tif or bmp image")
    try:
        header = {"png": _png_header, "jpg": _jpeg_header, "tif": _tiff_header, "bmp": _bmp_header}[kind](data)
    except (struct.error, IndexError, ValueError):
        header = None
    if header is None:
        raise ImageError(name, f"is a corrupt or truncated {kind} image (no size in its header)")
    return header


def _png_header(data: bytes) -> ImageHeader | None:
    if data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour)
    if channels is None:
        return None
    return ImageHeader("png", width, height, channels, 2 if depth == 16 else 1)


def _jpeg_header(data: bytes) -> ImageHeader | None:
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
            precision, height, width, components = struct.unpack(">BHHB", data[at + 4 : at + 10])
            return ImageHeader("jpg", width, height, max(components, 3), 2 if precision > 8 else 1)
        at += 2 + length
    return None


def _tiff_header(data: bytes) -> ImageHeader | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        tag, kind, n = struct.unpack(order + "HHI", entry[:8])
        if tag in (256, 257, 258, 277) and kind in (3, 4):  # width, length, bits, samples
            size = 2 if kind == 3 else 4
            fmt = order + ("H" if kind == 3 else "I")
            if n * size <= 4:
                found[tag] = struct.unpack(fmt, entry[8 : 8 + size])[0]
            else:  # BitsPerSample for several samples: the first value, elsewhere in the file
                (offset,) = struct.unpack(order + "I", entry[8:12])
                found[tag] = struct.unpack(fmt, data[offset : offset + size])[0]
    if 256 not in found or 257 not in found:
        return None
    bits = found.get(258, 1)
    return ImageHeader("tif", found[256], found[257], 4, max(1, -(-bits // 8)))


def _bmp_header(data: bytes) -> ImageHeader | None:
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # BITMAPCOREHEADER
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
    else:
        width, height, _, bits = struct.unpack("<iiHH", data[18:30])
    if width <= 0 or height == 0:
        return None
    return ImageHeader("bmp", width, abs(height), 4 if bits == 32 else 3, 1)


def check_header(header: ImageHeader, name: str | Path, max_pixels: int | None = None, max_side: int = MAX_IMAGE_SIDE) -> None:
    """Refuse (ImageError naming `name`) an image too small or too large, from its header."""
    w, h = header.width, header.height
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
        raise ImageError(name, f"is {w}x{h} pixels, expected at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if h > max_side or w > max_side:
        raise ImageError(name, f"is {w}x{h} pixels, expected at most {max_side} on each side")
    if w * h > max_pixels:
        raise ImageError(name, f"is {w}x{h} pixels ({w * h:,}), expected at most {max_pixels:,} pixels (HTR_MAX_PIXELS)")


class DecodeBudget:
    """Memory that images being decoded may hold at once, shared by every thread of a process.

    `reserve(n)` waits until `n` bytes of the budget are free and gives them back on exit,
    so however many loader threads or server requests decode at once, their decoded
    pixels together stay within `limit` bytes. A single image needing more than the whole
    budget is refused at once.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"decode budget must be at least 1 byte, got {limit}")
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, name: str | Path = "<bytes>") -> Iterator[None]:
        if nbytes > self.limit:
            raise ImageError(
                name,
                f"would take {nbytes / 2**20:,.0f} MiB to decode, expected at most "
                f"{self.limit / 2**20:,.0f} MiB (HTR_DECODE_MEMORY_MB)",
            )
        with self._cond:
            self._cond.wait_for(lambda: self.used + nbytes <= self.limit)
            self.used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


#: The process-wide budget that `decode_image` draws on (htr-run's loaders, htr-serve's requests).
DECODE_BUDGET = DecodeBudget(DECODE_MEMORY_BYTES)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D uint8 greyscale array (dark ink on light paper).

    Raises `ImageError` naming the file for anything unusable: not a regular file (FIFO,
    device, folder, dangling link), over MAX_FILE_BYTES, empty, not an image, corrupt or
    truncated, or smaller than MIN_IMAGE_SIDE / larger than MAX_IMAGE_PIXELS pixels.
    """
    return decode_image(read_regular_file(path), path)


def decode_image(
    data: bytes,
    name: str | Path = "<bytes>",
    max_pixels: int | None = None,
    budget: DecodeBudget | None = None,
) -> np.ndarray:
    """Decode image bytes (any format `load_image` reads) to 2-D uint8 grey.

    The size is checked from the header before any pixel is decoded, and the decode
    waits for its share of `budget` (default: the process-wide DECODE_BUDGET).
    """
    if not data:
        raise ImageError(name, "is empty (0 bytes), expected a png, jpg, tif or bmp image")
    header = read_header(data, name)
    check_header(header, name, max_pixels)
    budget = DECODE_BUDGET if budget is None else budget
    with budget.reserve(header.decoded_bytes, name):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            raise ImageError(name, f"is a corrupt or truncated {header.format} image")
        grey = to_grey(image)
        del image
    return _check_size(grey, name, max_pixels)


#: to_grey converts large images in strips of about this many pixels, so its temporary
#: (float) copies stay small whatever the image size.
_STRIP_PIXELS = 1 << 20


def to_grey(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey/BGR/BGRA, 8/16-bit or float) to 2-D uint8 grey.

    Transparent pixels are composited over white paper, so an RGBA scan with a
    transparent background reads as ink on white. Large images are converted strip by
    strip (each pixel's result is the same), so no full-size float copy is ever made.
    """
    if image.ndim == 2 and image.dtype == np.uint8:
        return image
    height, width = image.shape[:2]
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    if height <= rows:
        return _to_grey(image)
    out = np.empty((height, width), np.uint8)
    for top in range(0, height, rows):
        out[top : top + rows] = _to_grey(image[top : top + rows])
    return out


def _to_grey(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0]
    if channels == 2:  # grey + alpha
        grey, alpha = image[:, :, 0], image[:, :, 1]
    elif channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    else:
        grey = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_BGR2GRAY)
        alpha = image[:, :, 3]
    a = alpha.astype(np.float32) / 255.0
    return np.round(grey * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _check_size(image: np.ndarray, name: str | Path, max_pixels: int | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    check_header(ImageHeader("decoded", w, h, 1, 1), name, max_pixels)
    return image


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(paths: list[str | Path], recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into image files, each folder's files in sorted order.

    Returns (images, problems): problems are (path, message) for arguments that do
    not exist, folders that cannot be listed, folders without images, and entries with
    an image suffix that are no regular file (a FIFO, a folder named x.png, a dangling
    link, a link loop), so the caller can report each and still process the rest.
    Nothing here opens a file, so nothing blocks.
    """
    images: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                found = sorted(path.rglob("*") if recursive else path.iterdir())
            except OSError as err:
                problems.append((path, f"cannot list folder ({err.strerror or err})"))
                continue
            kept: list[Path] = []
            refused = 0
            for entry in found:
                if not is_image_file(entry) or (recursive and entry.is_dir()):
                    continue  # with --recursive, a folder named x.png is descended into
                problem = path_problem(entry)
                if problem is None:
                    kept.append(entry)
                else:
                    problems.append((entry, problem))
                    refused += 1
            if not kept and not refused:
                hint = "" if recursive else " (use --recursive for sub-folders)"
                problems.append((path, f"folder has no png, jpg, tif or bmp images{hint}"))
            images.extend(kept)
        else:
            # A file named explicitly is tried whatever its suffix; anything but a regular
            # file is refused here, without opening it.
            problem = path_problem(path)
            if problem is None:
                images.append(path)
            else:
                problems.append((path, problem))
    return images, problems
