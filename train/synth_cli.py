"""`htr-synth`: write synthetic handwriting to a labelled folder (PNGs + labels.tsv)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from htr.runtime.cli_options import new_app, version_option

app = new_app(help=__doc__, no_args_is_help=True)

_CHARSETS = {"seed-word": "SEED_WORD_CHARSET", "seed-line": "SEED_LINE_CHARSET"}


def _charset(value: str | None, kind: str) -> str:
    from htr.train import synth

    if value is None:
        value = "seed-word" if kind == "words" else "seed-line"
    return getattr(synth, _CHARSETS[value]) if value in _CHARSETS else value


@app.command()
def main(
    out: Path = typer.Argument(..., help="Folder to write (created; labels.tsv is replaced)."),
    kind: str = typer.Option("words", "--kind", help="words (one token per image), lines (3-9 words) or pages (page images with PAGE-XML and .txt ground truth)."),
    count: int = typer.Option(1000, "--count", min=1, help="How many images."),
    seed: int = typer.Option(0, "--seed", min=0, help="Sample i is the same for the same seed."),
    split: str = typer.Option("train", "--split",
                              help="Hands: train, val or test (unseen in training), heldout (val + test) or all."),
    style: str = typer.Option("default", "--style",
                              help="Augmentation: default (training), hard (the hardest scan style), clean."),
    charset: str = typer.Option(
        None, "--charset", help="seed-word, seed-line, or the characters themselves (default: by kind)."
    ),
    digit_fraction: float = typer.Option(0.1, "--digit-fraction", min=0.0, max=1.0,
                                         help="Share of MNIST digit strings."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Slant, warp, paper, ink, noise."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per CPU)."),
    text_only: bool = typer.Option(False, "--text-only", help="Write only the texts, one per line, to OUT (a file): text for htr-lm."),
    dpi: float = typer.Option(300.0, "--dpi", min=50.0, max=1200.0, help="Pages: resolution of the A4 page."),
    version: bool = version_option(),
) -> None:
    """Write COUNT synthetic handwriting images and labels.tsv into OUT (or with
    --text-only, just their texts into the file OUT; with --kind pages, page images with
    their PAGE-XML and .txt ground truth)."""
    from htr.train import synth

    if kind == "pages":
        _pages(out, count, seed, split, dpi)
        return

    if kind not in synth.KINDS:
        raise typer.BadParameter(f"expected one of {', '.join(synth.KINDS)}, got {kind!r}", param_hint="--kind")
    if split not in synth.SPLITS:
        raise typer.BadParameter(f"expected one of {', '.join(synth.SPLITS)}, got {split!r}", param_hint="--split")
    if style not in synth.STYLES:
        raise typer.BadParameter(f"expected one of {', '.join(synth.STYLES)}, got {style!r}", param_hint="--style")
    chars = _charset(charset, kind)
    if kind == "lines" and " " not in chars:
        raise typer.BadParameter("lines need a space in the charset", param_hint="--charset")

    if text_only:
        try:
            path = synth.write_texts(out, kind, count, seed, split, chars, digit_fraction=digit_fraction)
        except (OSError, ValueError, ImportError) as err:
            print(f"htr-synth: {err}", file=sys.stderr)
            raise typer.Exit(1)
        print(f"{path}\t{count} {kind} texts, split {split}, seed {seed}")
        return
    step = max(1, count // 20)
    shown = [0]

    def progress(done: int) -> None:
        if done - shown[0] >= step or done == count:
            shown[0] = done
            print(f"\r{done}/{count} images", end="", file=sys.stderr, flush=True)

    try:
        folder = synth.write_dataset(
            out, kind, count, seed, split, chars, workers=workers or None,
            digit_fraction=digit_fraction, augment=augment, ranges=synth.STYLES[style], progress=progress,
        )
    except (OSError, RuntimeError, ValueError, ImportError) as err:
        print(f"\nhtr-synth: {err}", file=sys.stderr)
        raise typer.Exit(1)
    print(file=sys.stderr)
    print(f"{folder / 'labels.tsv'}\t{count} {kind}, split {split}, style {style}, seed {seed}")


def _pages(out: Path, count: int, seed: int, split: str, dpi: float) -> None:
    from htr.train import synth
    from htr.train.synth_pages import PageLayout, write_pages

    if split not in synth.SPLITS:
        raise typer.BadParameter(f"expected one of {', '.join(synth.SPLITS)}, got {split!r}", param_hint="--split")
    try:
        folder = write_pages(out, count, seed, split, PageLayout(dpi=dpi),
                             progress=lambda done: print(f"\r{done}/{count} pages", end="", file=sys.stderr, flush=True))
    except (OSError, RuntimeError, ValueError, ImportError) as err:
        print(f"\nhtr-synth: {err}", file=sys.stderr)
        raise typer.Exit(1)
    print(file=sys.stderr)
    print(f"{folder}\t{count} pages (jpg + PAGE-XML + txt), split {split}, seed {seed}, {dpi:g} dpi")


if __name__ == "__main__":  # pragma: no cover
    app()
