"""`htr-run` and `htr-eval`: parse, call the library, print.

Heavy imports (numpy, OpenCV, onnxruntime) happen inside the commands so `--help`
answers at once. Results go to stdout, progress and errors to stderr. Exit codes:
0 everything recognised, 1 some images failed, 2 usage error (bad option, bad model).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from .cli_options import (
    RecognitionArgs,
    fail,
    new_app,
    recognition_options,
    version_option,
)


class Format(str, Enum):
    txt = "txt"
    tsv = "tsv"
    jsonl = "jsonl"
    csv = "csv"


class RunEngine(str, Enum):
    local = "local"
    ray = "ray"


class ShardFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


class SplitName(str, Enum):
    all = "all"
    train = "train"
    val = "val"


run_app = new_app()
eval_app = new_app()


def _build(common: RecognitionArgs, prog: str, nbest: int | None = None) -> Any:
    """Engine + decoder + Recognizer from the shared options; usage problems exit with code 2."""
    from .decoding import build_decoder
    from .engine import Engine
    from .errors import HtrError
    from .models import resolve_model
    from .pipeline import Recognizer

    try:
        options = common.decoder_options(nbest)
    except ValueError as err:
        raise fail(prog, str(err))
    try:
        engine = Engine(resolve_model(common.model), provider=common.provider.value, threads=common.threads, streams=common.streams)
    except HtrError as err:
        raise fail(prog, str(err))
    try:
        decoder = build_decoder(options, engine.spec.charset, engine.spec.blank)
    except (ValueError, OSError, HtrError) as err:
        raise fail(prog, str(err))
    except Exception as err:  # e.g. the default word list cannot be built
        raise fail(prog, f"{type(err).__name__}: {err}")
    return Recognizer(engine, decoder, batch_size=common.batch_size)


@run_app.command(help="Recognise handwriting in image files and folders (png, jpg, tif, bmp).")
@recognition_options
def run(
    paths: list[Path] = typer.Argument(..., help="Image files and folders (folders in sorted order)."),
    format: Format = typer.Option(Format.txt, "--format", "-f", help="txt: path<TAB>text; tsv/csv with confidence; jsonl with everything."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results here instead of stdout."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    nbest: Optional[int] = typer.Option(None, "--nbest", min=1, help="Keep the N best texts per image (beam, lexicon; shown in jsonl)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when a terminal)."),
    engine: RunEngine = typer.Option(RunEngine.local, "--engine", help="local: this machine; ray: a Ray cluster (pip install 'htr[cpu,ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray: join this cluster (auto or HOST:PORT); default: start a local Ray for the run."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Ray: actors, each with one model session (default 1)."),
    threads_per_worker: Optional[int] = typer.Option(None, "--threads-per-worker", min=1, help="Ray: CPUs (and onnxruntime threads) per actor (default 1)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", min=0.0, help="Ray: GPUs per actor, e.g. 1 or 0.5 (needs --provider cuda)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Ray: write result shards here through Ray Data instead of one output."),
    shard_format: ShardFormat = typer.Option(ShardFormat.jsonl, "--shard-format", help="Ray: shard format for --output-dir."),
    resume: bool = typer.Option(False, "--resume", help="Ray: skip images already in --output-dir's shards."),
    version: bool = version_option(),
    *,
    common: RecognitionArgs,
) -> None:
    from .images import list_images
    from .interrupts import end_startup
    from .output import OutputError, Progress, ResultWriter, open_output

    prog = "htr-run"
    ray_flags = {"--address": address, "--workers": workers, "--threads-per-worker": threads_per_worker,
                 "--gpus-per-worker": gpus_per_worker, "--output-dir": output_dir, "--resume": resume or None}
    given = [name for name, value in ray_flags.items() if value is not None]
    if engine is RunEngine.local and given:
        raise fail(prog, f"{', '.join(given)} need --engine ray")
    recognizer = _build(common, prog, nbest)
    images, problems = list_images([*paths], recursive=recursive)
    if engine is RunEngine.ray:
        from .distributed import RayRun, run_from_cli

        for path, message in problems:
            sys.stderr.write(f"{prog}: error: {path}: {message}\n")
        end_startup()
        raise typer.Exit(run_from_cli(prog, images, bool(problems), recognizer, RayRun(
            options=common.decoder_options(nbest), provider=common.provider.value, batch_size=common.batch_size,
            fmt=format.value, output=output, progress=progress, address=address, workers=workers,
            threads_per_worker=threads_per_worker, gpus_per_worker=gpus_per_worker, output_dir=output_dir,
            shard_format=shard_format.value, resume=resume)))
    try:
        writer = ResultWriter(open_output(output, images), format.value)
    except OutputError as err:
        raise fail(prog, str(err))
    for path, message in problems:
        sys.stderr.write(f"{prog}: error: {path}: {message}\n")
    bar = Progress(len(images), enabled=progress)
    failed = 0
    end_startup()
    try:
        for rec in recognizer.recognise_paths(images):
            if not rec.ok:
                failed += 1
                if bar.enabled:
                    sys.stderr.write("\n")
                sys.stderr.write(f"{prog}: error: {rec.error}\n")
            writer.write(rec)
            bar.update()
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted after {bar.done} images; results so far were written\n")
        raise typer.Exit(130)
    except OutputError as err:
        raise fail(prog, str(err), 1)
    finally:
        writer.close()
    seconds = bar.close()
    rate = len(images) / seconds if seconds > 0 else 0.0
    sys.stderr.write(
        f"{prog}: {len(images)} images, {failed} failed, {rate:.1f} images/s "
        f"({recognizer.engine.path.name}, {recognizer.engine.providers[0]}, {common.decoder.value})\n"
    )
    if failed or problems:
        raise typer.Exit(1)


@eval_app.command(help="Measure CER and WER on a labelled folder (labels.tsv) or an IAM root (words.txt / lines.txt).")
@recognition_options
def evaluate(
    labelled: Path = typer.Argument(..., help="Folder with labels.tsv, or IAM root with words.txt or lines.txt."),
    split: SplitName = typer.Option(SplitName.all, "--split", help="IAM/tsv split: all, train, or val (every 10th record, as the seed notebook)."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="File of validation ids (one per line)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N samples."),
    worst: int = typer.Option(10, "--worst", min=0, help="How many worst samples to print."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a JSON report (totals and every sample) here."),
    version: bool = version_option(),
    *,
    common: RecognitionArgs,
) -> None:
    from .atomic import atomic_write_text
    from .datasets import load_labelled
    from .errors import HtrError
    from .interrupts import end_startup
    from .metrics import edit_distance, error_rates
    from .output import Progress, report_problem

    prog = "htr-eval"
    problem = report_problem(report) if report else None
    if problem:
        raise fail(prog, f"{report}: {problem} (--report)")
    try:
        data = load_labelled(labelled, split=split.value, split_file=split_file)
    except HtrError as err:
        raise fail(prog, str(err))
    samples = list(data.samples[:limit] if limit else data.samples)
    for reason, count in sorted(data.skipped.items()):
        sys.stderr.write(f"{prog}: skipped {count} records ({reason})\n")
    if not samples:
        raise fail(prog, f"{labelled}: no labelled images to evaluate")
    recognizer = _build(common, prog)
    unknown = set("".join(s.text for s in samples)) - set(recognizer.engine.spec.charset)
    if unknown:
        sys.stderr.write(
            f"{prog}: warning: references use {len(unknown)} characters the model cannot output: "
            f"{''.join(sorted(unknown))!r} (they count as errors)\n"
        )
    bar = Progress(len(samples))
    end_startup()
    rows = []
    failed = 0
    for sample, rec in zip(samples, recognizer.recognise_paths([s.path for s in samples])):
        if not rec.ok:
            failed += 1
            sys.stderr.write(f"{prog}: error: {rec.error}\n")
        rows.append({
            "path": str(sample.path), "reference": sample.text, "prediction": rec.text,
            "confidence": round(rec.confidence, 6), "char_errors": edit_distance(sample.text, rec.text),
            "error": rec.error,
        })
        bar.update()
    seconds = bar.close()
    rates = error_rates((r["reference"], r["prediction"]) for r in rows)
    engine = recognizer.engine
    print(f"model     {engine.path}")
    print(f"data      {labelled} ({data.kind}, split {split.value}, {len(rows)} images, {failed} unreadable)")
    print(f"decoder   {common.decoder.value}")
    print(f"CER       {100 * rates.cer:.2f}%  ({rates.char_errors}/{rates.chars} characters)")
    print(f"WER       {100 * rates.wer:.2f}%  ({rates.word_errors}/{rates.words} words)")
    print(f"speed     {len(rows) / seconds:.1f} images/s")
    ranked = sorted(rows, key=lambda r: (r["char_errors"] / max(len(r["reference"]), 1), r["char_errors"]), reverse=True)
    shown = [r for r in ranked[:worst] if r["char_errors"]]
    if shown:
        print(f"worst {len(shown)}:")
        for r in shown:
            print(f"  {r['char_errors']:3d}  {r['reference']!r} -> {r['prediction']!r}  {Path(r['path']).name}")
    if report:
        doc = {
            "model": str(engine.path), "model_source": dict(engine.spec.source), "data": str(labelled),
            "kind": data.kind, "split": split.value, "decoder": common.decoder.value, "images": len(rows),
            "failed": failed, "skipped": data.skipped, "cer": rates.cer, "wer": rates.wer,
            "char_errors": rates.char_errors, "chars": rates.chars, "word_errors": rates.word_errors,
            "words": rates.words, "images_per_second": len(rows) / seconds, "samples": rows,
        }
        try:
            atomic_write_text(report, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        except OSError as err:
            raise fail(prog, f"{report}: cannot write the report ({err.strerror or err})", 1)
        sys.stderr.write(f"{prog}: report written to {report}\n")
    if failed:
        raise typer.Exit(1)
