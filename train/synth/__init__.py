"""Synthetic handwriting: English text drawn in many handwriting fonts, pen strokes and MNIST digits.

IAM cannot be downloaded everywhere, so training and evaluation can run on images made
here, on the fly or written to disk (`write_dataset`, `htr-synth`). Modules, in the
order a sample is made: `text`, `hands`, `render`, `augment`, `generator`, `writer`.

`SynthGenerator.sample(index)` depends on nothing but ``(seed, index)`` and the
configuration, so any number of threads or processes can call it in any order and get
the same pixels. Hands are split (`TRAIN_HANDS`, `VAL_HANDS`, `TEST_HANDS`; MNIST by
sample index) so that ``split="val"`` / ``"test"`` measure how well a model reads hands it
never saw.
"""

from htr.runtime.constants import SEED_LINE_CHARSET, SEED_WORD_CHARSET

from .augment import AUGMENT, CLEAN, HARD, STYLES, AugmentRanges
from .generator import KINDS, Sample, SynthConfig, SynthGenerator
from .hands import (
    ALL_HANDS,
    HELDOUT_HANDS,
    MNIST_HAND,
    SPLITS,
    TEST_HANDS,
    TRAIN_HANDS,
    VAL_HANDS,
    Hand,
    hand_coverage,
    hands_for_split,
    mnist_digits,
    mnist_indices,
)
from .text import english_vocabulary, fit_to_charset
from .writer import write_dataset, write_texts

__all__ = [
    "ALL_HANDS", "AUGMENT", "AugmentRanges", "CLEAN", "HARD", "HELDOUT_HANDS", "Hand", "KINDS",
    "MNIST_HAND", "SEED_LINE_CHARSET", "SEED_WORD_CHARSET", "SPLITS", "STYLES", "Sample",
    "SynthConfig", "SynthGenerator", "TEST_HANDS", "TRAIN_HANDS", "VAL_HANDS", "english_vocabulary",
    "fit_to_charset", "hand_coverage", "hands_for_split", "mnist_digits", "mnist_indices",
    "write_dataset", "write_texts",
]
