"""Limits on what one request may ask of the server, and image sizes read from headers."""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import MAX_IMAGE_SIDE

#: Defaults: a request body of 16 MiB, 32 files, 40 megapixels per image.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_FILES = 32
DEFAULT_MAX_PIXELS = 40_000_000
#: Inference calls running at once; further requests wait their turn (a queue).
DEFAULT_MAX_CONCURRENT = 2
#: Pixels of all images of one request together (read from their headers).
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000
#: Seconds a client has to send the whole request body; a stalled upload is closed with 408.
DEFAULT_BODY_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for.

    max_bytes: largest request body in bytes; larger bodies get 413 before parsing.
    max_files: most images in one request; more get 413.
    max_pixels: largest image (width x height); larger images get a per-file error,
        read from the image header where possible so they are never decoded.
    max_side: largest width or height in pixels.
    max_concurrent: inference calls running at once; other requests queue.
    max_request_pixels: pixels of all images of one request together, from their
        headers; more gets 413 before any image is decoded.
    body_timeout: seconds the whole request body may take to arrive; a stalled
        upload gets 408 and its connection is closed.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = MAX_IMAGE_SIDE
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    def __post_init__(self) -> None:
        if not self.body_timeout > 0:
            raise ValueError(f"body_timeout must be above 0 seconds, got {self.body_timeout}")
        for name in ("max_bytes", "max_files", "max_pixels", "max_side", "max_concurrent", "max_request_pixels"):
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

    Only the header is parsed (`htr.runtime.images.read_header`), so a huge image can be
    refused without decoding it. None means "unknown": decoding refuses such bytes anyway.
    """
    from ..errors import ImageError
    from ..images import read_header

    try:
        header = read_header(data)
    except ImageError:
        return None
    return header.width, header.height
