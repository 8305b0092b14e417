"""`TrainConfig`: everything one training run is told, with its defaults (htr-train's too).

Kept apart from the training loop so that htr-train can show the defaults and check its
choices without importing Keras.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Architectures `models.build` knows (train/models.py's ARCHITECTURES, checked by a test).
ARCHITECTURES = ("seed-word", "seed-line", "lean", "lean-deep", "tiny")
#: Learning-rate schedules.
SCHEDULES = ("cosine", "plateau", "constant")
#: Background policies (htr.runtime.metadata.BACKGROUND_POLICIES, checked by a test).
BACKGROUNDS = ("none", "flatten")
#: Keras backends htr-train runs on, fastest first for the bundled architecture on a 2-core
#: CPU as measured by benchmarks/bench_backends.py (report: benchmarks/reports/backends.md).
#: "auto" takes KERAS_BACKEND when it is set, else the first of these that is installed.
BACKENDS = ("tensorflow", "torch", "jax")
#: The module each backend needs.
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def resolve_backend(choice: str = "auto", environ: Mapping[str, str] = os.environ) -> str:
    """The Keras backend for `choice` ("auto" or one of `BACKENDS`); raises ValueError with
    what to install when the chosen one is missing."""
    if choice == "auto":
        if environ.get("KERAS_BACKEND"):
            choice = environ["KERAS_BACKEND"]
            if choice not in BACKENDS:
                raise ValueError(f"KERAS_BACKEND={choice!r} is not a backend htr-train runs on (expected one of {', '.join(BACKENDS)})")
            return choice
        for name in BACKENDS:
            if importlib.util.find_spec(BACKEND_MODULES[name]) is not None:
                return name
        raise ValueError("no Keras backend is installed (expected one of tensorflow, jax, torch): pip install -e '.[train]'")
    if choice not in BACKENDS:
        raise ValueError(f"--backend {choice!r} is unknown (expected auto or one of {', '.join(BACKENDS)})")
    if importlib.util.find_spec(BACKEND_MODULES[choice]) is None:
        hint = {"jax": 'pip install "jax[cpu]"', "torch": "pip install torch"}.get(choice, "pip install tensorflow")
        raise ValueError(f"--backend {choice}: the {BACKEND_MODULES[choice]} module is not installed ({hint})")
    return choice


#: Mixed precision: "auto" uses it only when a GPU is present.
MIXED_PRECISION = ("auto", "on", "off")


@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        arch: architecture (one of `ARCHITECTURES`).
        data: "synth:words", "synth:lines", an IAM root (words.txt/lines.txt) or a
            labels.tsv folder.
        more_data: more of those, trained on together with `data` (each in proportion to
            its size; one named twice counts twice). Validation without `val` is `data`'s own.
        out: output folder (model.keras, model.h5, model.json, history, checkpoints).
        val: validation data (None: the data's own split; held-out hands for synth).
        schedule: learning-rate schedule (one of `SCHEDULES`) from `lr`.
        train_size: synthetic samples per epoch (None: 20000), or a cap on labelled ones.
        val_size: validation samples (synthetic default 1000).
        val_batches: validate on at most this many batches.
        charset: "words", "lines" or the characters (None: the architecture's /
            the data kind's default).
        split_file: ids that go to validation (instead of every 10th).
        patience: early stopping patience in epochs (val_cer).
        workers, use_multiprocessing: data loading workers, in processes or threads.
        augment: augment real images.
        resume: continue from OUT/last.weights.h5 after its saved epoch.
        digit_fraction: synthetic training data: share of real MNIST digit strings.
        init_from: a trained model (.keras/.h5) whose matching layers start this one.
        background: the preprocessing background policy (one of `BACKGROUNDS`; None: the
            `init_from` model's, else "none"), kept in the model's metadata.
        mixed_precision: one of `MIXED_PRECISION`.
        show_samples: validation samples printed per epoch.
        keep_epochs: also keep every epoch's inference model as ``epochs/epoch-NNN.keras`` (to
            choose an epoch or average the last few afterwards with `htr.train.average`).
        verbose: "auto", 0, 1 (progress bar) or 2 (one line per epoch).
        command: the command line, recorded in the model's metadata.
    """

    arch: str = "seed-word"
    data: str = "synth:words"
    more_data: tuple[str, ...] = ()
    out: str = "runs/htr"
    val: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    schedule: str = "cosine"
    steps_per_epoch: int | None = None
    train_size: int | None = None
    val_size: int | None = None
    val_batches: int | None = None
    charset: str | None = None
    split_file: str | None = None
    patience: int = 10
    seed: int = 0
    workers: int = 2
    use_multiprocessing: bool = False
    augment: bool = True
    resume: bool = False
    digit_fraction: float = 0.1
    init_from: str | None = None
    background: str | None = None
    mixed_precision: str = "auto"
    show_samples: int = 4
    keep_epochs: bool = False
    verbose: int | str = "auto"
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def all_data(self) -> tuple[str, ...]:
        """`data` and then `more_data`: everything trained on."""
        return (self.data, *self.more_data)
