"""Every default of the runtime in one place."""

from __future__ import annotations

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
