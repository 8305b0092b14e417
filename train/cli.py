"""`htr-train`: train a CRNN (seed-word, seed-line, lean, tiny) on IAM, labels.tsv or synthetic data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


@app.command()
def main(
    arch: str = typer.Option("seed-word", "--arch", help="seed-word | seed-line | lean | tiny"),
    data: str = typer.Option(..., "--data", help="synth:words, synth:lines, an IAM root (words.txt/lines.txt) or a labels.tsv folder"),
    out: Path = typer.Option(..., "--out", help="output folder (model.keras, model.h5, model.json, history, checkpoints)"),
    val: Optional[str] = typer.Option(None, "--val", help="validation data (default: the data's own split; held-out hands for synth)"),
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="initial Adam learning rate"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | plateau | constant"),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", min=1),
    train_size: Optional[int] = typer.Option(None, "--train-size", min=1, help="synthetic samples per epoch (default 20000) or a cap on labelled ones"),
    val_size: Optional[int] = typer.Option(None, "--val-size", min=1, help="validation samples (synthetic default 1000)"),
    val_batches: Optional[int] = typer.Option(None, "--val-batches", min=1, help="validate on at most this many batches"),
    charset: Optional[str] = typer.Option(None, "--charset", help="words | lines | literal characters (default: the architecture's)"),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="ids that go to validation (instead of every 10th)"),
    patience: int = typer.Option(10, "--patience", help="early stopping patience in epochs (val_cer)"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(2, "--workers", min=1, help="data loading workers"),
    processes: bool = typer.Option(False, "--processes/--threads", help="load data in processes instead of threads"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="augment real images"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/last.weights.h5 after its saved epoch"),
    digit_fraction: float = typer.Option(0.1, "--digit-fraction", min=0.0, max=1.0, help="synthetic training data: share of real MNIST digit strings (validation keeps 0.1)"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="start from a trained model's matching layers (fine-tuning, e.g. a line model from a word model)"),
    mixed_precision: str = typer.Option("auto", "--mixed-precision", help="auto (GPU only) | on | off"),
    verbose: str = typer.Option("auto", "--verbose", help="auto | 0 | 1 (progress bar) | 2 (one line per epoch)"),
) -> None:
    """Train ARCH on DATA and write OUT/model.keras, OUT/model.h5 and OUT/model.json."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr.runtime.errors import HtrError

    from .trainer import TrainConfig, train

    cfg = TrainConfig(
        arch=arch, data=data, out=str(out), val=val, epochs=epochs, batch_size=batch_size, lr=lr,
        schedule=schedule, steps_per_epoch=steps_per_epoch, train_size=train_size, val_size=val_size,
        val_batches=val_batches, charset=charset, split_file=str(split_file) if split_file else None,
        patience=patience, seed=seed, workers=workers, use_multiprocessing=processes, augment=augment,
        resume=resume, init_from=str(init_from) if init_from else None,
        digit_fraction=digit_fraction, mixed_precision=mixed_precision,
        verbose=verbose if verbose == "auto" else int(verbose), command=["htr-train", *sys.argv[1:]],
    )
    if schedule not in ("cosine", "plateau", "constant"):
        raise typer.BadParameter(f"--schedule must be cosine, plateau or constant, got {schedule!r}")
    try:
        result = train(cfg)
    except (HtrError, FileNotFoundError, ValueError) as err:
        typer.echo(f"htr-train: error: {err}", err=True)
        raise typer.Exit(2) from None
    ips = result["images_per_s"]
    cer = result["val_cer"]
    typer.echo(
        f"htr-train: done: {result['epochs']} epochs, best val_cer "
        f"{'n/a' if cer is None else f'{cer:.4f}'} (epoch {result['best_epoch']}), "
        f"{'n/a' if ips is None else f'{ips:.1f}'} images/s; wrote {out}/model.keras, model.h5, model.json"
    )


if __name__ == "__main__":
    app()
