"""`htr-train`: train a CRNN (seed-word, seed-line, lean, lean-deep, tiny) on IAM, labels.tsv or synthetic data."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from htr.runtime.cli_options import fail, new_app, version_option

from .config import ARCHITECTURES, BACKENDS, BACKGROUNDS, MIXED_PRECISION, SCHEDULES, TrainConfig, resolve_backend

app = new_app(help=__doc__, no_args_is_help=True)

#: Choices of the typed options, made from the config module's names.
Arch = Enum("Arch", [(name, name) for name in ARCHITECTURES], type=str)  # type: ignore[misc]
Schedule = Enum("Schedule", [(name, name) for name in SCHEDULES], type=str)  # type: ignore[misc]
MixedPrecision = Enum("MixedPrecision", [(name, name) for name in MIXED_PRECISION], type=str)  # type: ignore[misc]
Background = Enum("Background", [(name, name) for name in BACKGROUNDS], type=str)  # type: ignore[misc]
Backend = Enum("Backend", [("auto", "auto")] + [(name, name) for name in BACKENDS], type=str)  # type: ignore[misc]
Verbose = Enum("Verbose", [("auto", "auto"), ("0", "0"), ("1", "1"), ("2", "2")], type=str)

_D = TrainConfig(command=[])  # the defaults


@app.command()
def main(
    data: List[str] = typer.Option(..., "--data", help="synth:words, synth:lines, an IAM root (words.txt/lines.txt) or a labels.tsv folder; give it again to train on several together (each in proportion to its size, one named twice counts twice; validation: --val, else the first one's own split)"),
    out: Path = typer.Option(..., "--out", help="output folder (model.keras, model.h5, model.json, history, checkpoints)"),
    arch: Arch = typer.Option(Arch(_D.arch), "--arch", help="architecture"),
    val: Optional[str] = typer.Option(_D.val, "--val", help="validation data (default: the data's own split; held-out hands for synth)"),
    epochs: int = typer.Option(_D.epochs, "--epochs", min=1),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", min=1),
    lr: float = typer.Option(_D.lr, "--lr", min=0.0, help="initial Adam learning rate"),
    schedule: Schedule = typer.Option(Schedule(_D.schedule), "--schedule", help="learning-rate schedule"),
    steps_per_epoch: Optional[int] = typer.Option(_D.steps_per_epoch, "--steps-per-epoch", min=1),
    train_size: Optional[int] = typer.Option(_D.train_size, "--train-size", min=1, help="synthetic samples per epoch (default 20000) or a cap on labelled ones"),
    val_size: Optional[int] = typer.Option(_D.val_size, "--val-size", min=1, help="validation samples (synthetic default 1000)"),
    val_batches: Optional[int] = typer.Option(_D.val_batches, "--val-batches", min=1, help="validate on at most this many batches"),
    charset: Optional[str] = typer.Option(_D.charset, "--charset", help="words | lines | literal characters (default: the architecture's)"),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="ids that go to validation (instead of every 10th)"),
    patience: int = typer.Option(_D.patience, "--patience", min=1, help="early stopping patience in epochs (val_cer)"),
    seed: int = typer.Option(_D.seed, "--seed"),
    workers: int = typer.Option(_D.workers, "--workers", min=1, help="data loading workers"),
    processes: bool = typer.Option(_D.use_multiprocessing, "--processes/--threads", help="load data in processes instead of threads"),
    augment: bool = typer.Option(_D.augment, "--augment/--no-augment", help="augment real images"),
    resume: bool = typer.Option(_D.resume, "--resume", help="continue from OUT/last.weights.h5 after its saved epoch"),
    digit_fraction: float = typer.Option(_D.digit_fraction, "--digit-fraction", min=0.0, max=1.0, help="synthetic training data: share of real MNIST digit strings (validation keeps 0.1)"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="start from a trained model's matching layers (fine-tuning, e.g. a line model from a word model)"),
    background: Optional[Background] = typer.Option(None, "--background", help="preprocessing: flatten uneven paper and light, or none (default: the --init-from model's policy, else none)"),
    backend: Backend = typer.Option(Backend("auto"), "--backend", help="Keras backend: auto is KERAS_BACKEND if set, else the fastest installed (benchmarks/reports/backends.md)"),
    mixed_precision: MixedPrecision = typer.Option(MixedPrecision(_D.mixed_precision), "--mixed-precision", help="auto: on a GPU only"),
    keep_epochs: bool = typer.Option(_D.keep_epochs, "--keep-epochs", help="also keep every epoch's inference model as OUT/epochs/epoch-NNN.keras (to choose an epoch or average the last few)"),
    verbose: Verbose = typer.Option(Verbose(str(_D.verbose)), "--verbose", help="auto | 0 | 1 (progress bar) | 2 (one line per epoch)"),
    version: bool = version_option(),
) -> None:
    """Train ARCH on DATA and write OUT/model.keras, OUT/model.h5 and OUT/model.json."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr.runtime.errors import HtrError

    # Keras reads KERAS_BACKEND once, at its import; in a process that has imported it
    # already (htr-train called as a library), "auto" is the backend it runs on.
    loaded = sys.modules["keras"].backend.backend() if "keras" in sys.modules else None
    try:
        chosen = resolve_backend(loaded if backend.value == "auto" and loaded else backend.value)
    except ValueError as err:
        raise fail("htr-train", str(err)) from None
    if loaded and chosen != loaded:
        raise fail("htr-train", f"--backend {chosen}: Keras was already loaded with {loaded} in this process")
    os.environ["KERAS_BACKEND"] = chosen

    from .trainer import train

    cfg = TrainConfig(
        arch=arch.value, data=data[0], more_data=tuple(data[1:]), out=str(out), val=val, epochs=epochs, batch_size=batch_size, lr=lr,
        schedule=schedule.value, steps_per_epoch=steps_per_epoch, train_size=train_size, val_size=val_size,
        val_batches=val_batches, charset=charset, split_file=str(split_file) if split_file else None,
        patience=patience, seed=seed, workers=workers, use_multiprocessing=processes, augment=augment,
        resume=resume, init_from=str(init_from) if init_from else None,
        digit_fraction=digit_fraction, mixed_precision=mixed_precision.value,
        background=background.value if background else None, keep_epochs=keep_epochs,
        verbose=verbose.value if verbose.value == "auto" else int(verbose.value),
        command=["htr-train", *sys.argv[1:]],
    )
    try:
        result = train(cfg)
    except (HtrError, FileNotFoundError, ValueError) as err:
        raise fail("htr-train", str(err)) from None
    ips = result["images_per_s"]
    cer = result["val_cer"]
    typer.echo(
        f"htr-train: done: {result['epochs']} epochs, best val_cer "
        f"{'n/a' if cer is None else f'{cer:.4f}'} (epoch {result['best_epoch']}), "
        f"{'n/a' if ips is None else f'{ips:.1f}'} images/s; wrote {out}/model.keras, model.h5, model.json"
    )


if __name__ == "__main__":
    app()
