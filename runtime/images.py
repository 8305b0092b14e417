"""Reading image files into 8-bit greyscale arrays (png, jpg, tif, bmp; grey, RGB, RGBA, 16-bit)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .constants import IMAGE_SUFFIXES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE
from .errors import ImageError

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


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D uint8 greyscale array (dark ink on light paper).

    Raises `ImageError` naming the file for anything unusable: unreadable, empty,
    not an image, corrupt or truncated, or smaller than MIN_IMAGE_SIDE pixels.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ImageError(path, "is a folder, expected an image file") from None
    except OSError as err:
        raise ImageError(path, f"cannot read file ({err.strerror or err})") from None
    return decode_image(data, path)


def decode_image(data: bytes, name: str | Path = "<bytes>") -> np.ndarray:
    """Decode image bytes (any format `load_image` reads) to 2-D uint8 grey."""
    if not data:
        raise ImageError(name, "is empty (0 bytes), expected a png, jpg, tif or bmp image")
    kind = sniff_format(data)
    if kind is None:
        raise ImageError(name, "is not a png, jpg, tif or bmp image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(name, f"is a corrupt or truncated {kind} image")
    return _check_size(to_grey(image), name)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey/BGR/BGRA, 8/16-bit or float) to 2-D uint8 grey.

    Transparent pixels are composited over white paper, so an RGBA scan with a
    transparent background reads as ink on white.
    """
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
        grey = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
        alpha = image[:, :, 3]
    a = alpha.astype(np.float32) / 255.0
    return np.round(grey * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _check_size(image: np.ndarray, name: str | Path) -> np.ndarray:
    h, w = image.shape[:2]
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
        raise ImageError(name, f"is {w}x{h} pixels, expected at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if h > MAX_IMAGE_SIDE or w > MAX_IMAGE_SIDE:
        raise ImageError(name, f"is {w}x{h} pixels, expected at most {MAX_IMAGE_SIDE} on each side")
    return image


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(paths: list[str | Path], recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into image files, each folder's files in sorted order.

    Returns (images, problems): problems are (path, message) for arguments that do
    not exist, folders that cannot be listed and folders without images, so the
    caller can report them and still process the rest.
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
            found = [p for p in found if is_image_file(p) and p.is_file()]
            if not found:
                hint = "" if recursive else " (use --recursive for sub-folders)"
                problems.append((path, f"folder has no png, jpg, tif or bmp images{hint}"))
            images.extend(found)
        elif path.exists():
            images.append(path)  # a file named explicitly is tried whatever its suffix
        else:
            problems.append((path, "no such file or folder"))
    return images, problems
