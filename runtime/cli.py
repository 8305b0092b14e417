"""`htr-run` and `htr-eval`: parse, call the library, print.

Heavy imports (numpy, OpenCV, onnxruntime) happen inside the commands so `--help`
answers at once. Results go to stdout, progress and errors to stderr. Exit codes:
0 everything recognised, 1 some images failed, 2 usage error (bad option, bad model).
"""

from __future__ import annotations

import dataclasses
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
    page_xml = "page-xml"
    alto = "alto"


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
        engine = Engine(resolve_model(common.model, common.provider.value), provider=common.provider.value, threads=common.threads, streams=common.streams)
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
    format: Format = typer.Option(Format.txt, "--format", "-f", help="txt: path<TAB>text; tsv/csv with confidence; jsonl with everything. With --segment: txt (the page's text), jsonl (one record per line), page-xml, alto."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results here instead of stdout."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    nbest: Optional[int] = typer.Option(None, "--nbest", min=1, help="Keep the N best texts per image (beam, lexicon; shown in jsonl)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when a terminal)."),
    segment: bool = typer.Option(False, "--segment", help="The images are pages: find their lines and read them (default model: line)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="With --segment: write one file per page here (DIR/<stem>.xml for page-xml/alto); with --engine ray: result shards (Ray Data)."),
    engine: RunEngine = typer.Option(RunEngine.local, "--engine", help="local: this machine; ray: a Ray cluster (pip install 'htr[cpu,ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray: join this cluster (auto or HOST:PORT); default: start a local Ray for the run."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Ray: actors, each with one model session (default 1)."),
    threads_per_worker: Optional[int] = typer.Option(None, "--threads-per-worker", min=1, help="Ray: CPUs (and onnxruntime threads) per actor (default 1)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", min=0.0, help="Ray: GPUs per actor, e.g. 1 or 0.5 (needs --provider cuda)."),
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
                 "--gpus-per-worker": gpus_per_worker, "--resume": resume or None}
    given = [name for name, value in ray_flags.items() if value is not None]
    if engine is RunEngine.local and given:
        raise fail(prog, f"{', '.join(given)} need --engine ray")
    if segment and engine is RunEngine.ray:
        raise fail(prog, "--segment (pages) runs with --engine local only")
    if segment and common.model is None:
        common = dataclasses.replace(common, model="line")
    page_formats = (Format.txt, Format.jsonl, Format.page_xml, Format.alto)
    if segment and format not in page_formats:
        raise fail(prog, f"--segment writes txt, jsonl, page-xml or alto, not {format.value}")
    if not segment and format in (Format.page_xml, Format.alto):
        raise fail(prog, f"--format {format.value} and --output-dir need --segment (pages)")
    if not segment and output_dir and engine is RunEngine.local:
        raise fail(prog, "--output-dir needs --segment (pages) or --engine ray (result shards)")
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
    if not segment:
        try:
            writer = ResultWriter(open_output(output, images), format.value)
        except OutputError as err:
            raise fail(prog, str(err))
    for path, message in problems:
        sys.stderr.write(f"{prog}: error: {path}: {message}\n")
    if segment:
        end_startup()
        _run_pages(recognizer, images, format.value, output, output_dir, bool(problems), prog)
        return
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


def _run_pages(recognizer: Any, images: list[Path], fmt: str, output: Optional[Path], output_dir: Optional[Path],
               problems: bool, prog: str) -> None:
    """htr-run --segment: pages -> lines -> text, written as they are read."""
    import time

    from .pages import PageReader, write_pages

    if fmt in ("page-xml", "alto") and output_dir is None and output is None and len(images) > 1:
        raise fail(prog, f"{fmt} is one document per page: give --output-dir DIR for {len(images)} pages")
    try:
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
        stream = open(output, "w", encoding="utf-8") if output and output_dir is None else sys.stdout
    except OSError as err:
        raise fail(prog, f"{output_dir or output}: cannot write ({err.strerror or err})")
    lines = [0]

    def report(result: Any) -> None:
        if result.ok:
            lines[0] += len(result.lines)
        else:
            sys.stderr.write(f"{prog}: error: {result.error}\n")

    start = time.perf_counter()
    try:
        pages, failed = write_pages(PageReader(recognizer).read_paths(images), fmt, stream, output_dir, report)
    except OSError as err:
        raise fail(prog, f"cannot write ({err})", 1)
    finally:
        if stream is not sys.stdout:
            stream.close()
    seconds = time.perf_counter() - start
    sys.stderr.write(f"{prog}: {pages} pages, {lines[0]} lines, {failed} failed, "
                     f"{pages / seconds if seconds > 0 else 0.0:.2f} pages/s ({recognizer.engine.path.name})\n")
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
    pages: bool = typer.Option(False, "--pages", help="LABELLED is a folder of pages with same-stem .txt or PAGE-XML (.xml) truth: segment and read them (default model: line)."),
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
    if pages:
        if common.model is None:
            common = dataclasses.replace(common, model="line")
        recognizer = _build(common, prog)
        _evaluate_pages(recognizer, labelled, limit, report, prog)
        return
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


def _evaluate_pages(recognizer: Any, folder: Path, limit: Optional[int], report: Optional[Path], prog: str) -> None:
    """htr-eval --pages: page CER/WER (lines joined), line counts, and with PAGE-XML truth
    line detection at IoU 0.5 and CER on the given lines."""
    from .errors import HtrError
    from .pages import PageReader
    from .pages_eval import load_page_truth, page_summary, score_page

    try:
        truths, missing = load_page_truth(folder)
    except (HtrError, OSError) as err:
        raise fail(prog, f"{folder}: {err}")
    for name in missing:
        sys.stderr.write(f"{prog}: skipped {name} (no .xml or .txt ground truth beside it)\n")
    truths = truths[:limit] if limit else truths
    if not truths:
        raise fail(prog, f"{folder}: no page images with .txt or PAGE-XML ground truth")
    reader = PageReader(recognizer)
    scores = [score_page(reader, t) for t in truths]
    summary = page_summary(scores)
    for s in scores:
        if s.error:
            sys.stderr.write(f"{prog}: error: {s.error}\n")
    for key, value in summary.items():
        if key != "pages_detail":
            print(f"{key:<22}{value}")
    if report:
        report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        sys.stderr.write(f"{prog}: report written to {report}\n")
    if any(s.error for s in scores):
        raise typer.Exit(1)
