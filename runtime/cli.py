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
from typing import Any, List, Optional

import typer

from .constants import DEFAULT_BATCH_SIZE, DEFAULT_BEAM_WIDTH


class Provider(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class DecoderName(str, Enum):
    greedy = "greedy"
    beam = "beam"
    lexicon = "lexicon"


class Format(str, Enum):
    txt = "txt"
    tsv = "tsv"
    jsonl = "jsonl"
    csv = "csv"
    page_xml = "page-xml"
    alto = "alto"


class SplitName(str, Enum):
    all = "all"
    train = "train"
    val = "val"


run_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
eval_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

MODEL_HELP = "Model: a bundled name (word, line) or an .onnx file from htr-export. Default: the bundled word model."
_model_opt = typer.Option(None, "--model", "-m", help=MODEL_HELP)
_provider_opt = typer.Option(Provider.cpu, "--provider", "-p", help="Execution provider; cuda/tensorrt fail loudly if not active.")
_decoder_opt = typer.Option(DecoderName.greedy, "--decoder", "-d", help="CTC decoder.")
_beam_opt = typer.Option(DEFAULT_BEAM_WIDTH, "--beam-width", min=1, help="Beam width (beam, lexicon).")
_batch_opt = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", "-b", min=1, help="Images per inference call.")
_threads_opt = typer.Option(None, "--threads", min=1, help="CPU threads for the model (default: all cores), shared out between --streams.")
_streams_opt = typer.Option(None, "--streams", min=1, help="Batches the model runs at once (default: 2 on the CPU with 2+ threads, else 1).")
_lexicon_opt = typer.Option(None, "--lexicon", help="Lexicon file (one word per line, or 'word count'); default English list.")
_lm_opt = typer.Option(None, "--lm", help="Character n-gram LM for beam/lexicon: a bundled name (words, lines) or an htr-lm file.")
_lm_weight_opt = typer.Option(None, "--lm-weight", help="Weight of the character LM (default: the one stored in the LM file, else 0.5).")
_nbest_opt = typer.Option(None, "--nbest", min=1, help="Keep the N best texts per image (beam, lexicon; shown in jsonl).")
_spell_opt = typer.Option(False, "--spell", help="Spelling-correction post-pass (greedy, beam), as the line-level seed had.")
_chars_opt = typer.Option(None, "--chars", help="Read only these characters, e.g. '0-9/' for a column of dates (ranges as in tr); 'digits' = 0-9 and the separators / . , : - and space.")
_mode_opt = typer.Option(None, "--lexicon-mode", help="Lexicon decoding for 'words' (one word per image) or 'lines'. Default: from the model.")


def _fail(message: str, code: int = 2) -> "typer.Exit":
    sys.stderr.write(message.rstrip() + "\n")
    return typer.Exit(code)


def _build(model: Optional[str], provider: Provider, decoder: DecoderName, beam_width: int,
           batch_size: int, threads: Optional[int], streams: Optional[int], lexicon: Optional[Path],
           lm: Optional[str], lm_weight: Optional[float], nbest: Optional[int], spell: bool,
           lexicon_mode: Optional[str], prog: str, chars: Optional[str] = None) -> Any:
    """Engine + decoder + Recognizer from CLI options; usage problems exit with code 2."""
    from .decoding import make_decoder
    from .engine import Engine
    from .errors import HtrError
    from .models import resolve_model
    from .pipeline import Recognizer

    try:
        engine = Engine(resolve_model(model), provider=provider.value, threads=threads, streams=streams)
    except HtrError as err:
        raise _fail(f"{prog}: error: {err}")
    spec = engine.spec
    if decoder is DecoderName.greedy and (lm or lm_weight is not None):
        raise _fail(f"{prog}: error: --lm and --lm-weight need --decoder beam or lexicon (greedy uses no LM)")
    options: dict[str, Any] = {"chars": chars}
    if decoder is not DecoderName.greedy:
        options.update(beam_width=beam_width, nbest=nbest, lm=str(lm) if lm else None, lm_weight=lm_weight)
    if decoder is DecoderName.lexicon:
        mode = lexicon_mode or ("lines" if " " in spec.charset else "words")
        options.update(lexicon=str(lexicon) if lexicon else None, mode=mode)
    elif spell:
        options["spell"] = str(lexicon) if lexicon else True
    try:
        decode = make_decoder(decoder.value, spec.charset, spec.blank, **options)
    except (ValueError, OSError, HtrError) as err:
        raise _fail(f"{prog}: error: {err}")
    except Exception as err:  # e.g. the default word list cannot be built
        raise _fail(f"{prog}: error: {type(err).__name__}: {err}")
    return Recognizer(engine, decode, batch_size=batch_size)


@run_app.command(help="Recognise handwriting in image files and folders (png, jpg, tif, bmp).")
def run(
    paths: List[Path] = typer.Argument(..., help="Image files and folders (folders in sorted order)."),
    model: Optional[str] = _model_opt,
    provider: Provider = _provider_opt,
    decoder: DecoderName = _decoder_opt,
    beam_width: int = _beam_opt,
    batch_size: int = _batch_opt,
    format: Format = typer.Option(Format.txt, "--format", "-f", help="txt: path<TAB>text; tsv/csv with confidence; jsonl with everything. With --segment: txt (the page's text), jsonl (one record per line), page-xml, alto."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results here instead of stdout."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    threads: Optional[int] = _threads_opt,
    streams: Optional[int] = _streams_opt,
    lexicon: Optional[Path] = _lexicon_opt,
    lm: Optional[str] = _lm_opt,
    lm_weight: Optional[float] = _lm_weight_opt,
    nbest: Optional[int] = _nbest_opt,
    spell: bool = _spell_opt,
    lexicon_mode: Optional[str] = _mode_opt,
    chars: Optional[str] = _chars_opt,
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when a terminal)."),
    segment: bool = typer.Option(False, "--segment", help="The images are pages: find their lines and read them (default model: line)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="With --segment: write one file per page here (DIR/<stem>.xml for page-xml/alto)."),
) -> None:
    from .images import list_images
    from .output import Progress, ResultWriter

    prog = "htr-run"
    if segment:
        model = model or "line"
    page_formats = (Format.txt, Format.jsonl, Format.page_xml, Format.alto)
    if segment and format not in page_formats:
        raise _fail(f"{prog}: error: --segment writes txt, jsonl, page-xml or alto, not {format.value}")
    if not segment and (format in (Format.page_xml, Format.alto) or output_dir):
        raise _fail(f"{prog}: error: --format {format.value} and --output-dir need --segment (pages)")
    recognizer = _build(model, provider, decoder, beam_width, batch_size, threads, streams, lexicon, lm,
                        lm_weight, nbest, spell, lexicon_mode, prog, chars)
    images, problems = list_images(paths, recursive=recursive)
    for path, message in problems:
        sys.stderr.write(f"{prog}: error: {path}: {message}\n")
    if segment:
        _run_pages(recognizer, images, format.value, output, output_dir, bool(problems), prog)
        return
    try:
        stream = open(output, "w", encoding="utf-8") if output else sys.stdout
    except OSError as err:
        raise _fail(f"{prog}: error: {output}: cannot write ({err.strerror or err})")
    writer = ResultWriter(stream, format.value)
    bar = Progress(len(images), enabled=progress)
    failed = 0
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
    finally:
        if output:
            stream.close()
    seconds = bar.close()
    rate = len(images) / seconds if seconds > 0 else 0.0
    sys.stderr.write(
        f"{prog}: {len(images)} images, {failed} failed, {rate:.1f} images/s "
        f"({recognizer.engine.path.name}, {recognizer.engine.providers[0]}, {decoder.value})\n"
    )
    if failed or problems:
        raise typer.Exit(1)


def _run_pages(recognizer: Any, images: list, fmt: str, output: Optional[Path], output_dir: Optional[Path],
               problems: bool, prog: str) -> None:
    """htr-run --segment: pages -> lines -> text, written as they are read."""
    import time

    from .pages import PageReader, write_pages

    if fmt in ("page-xml", "alto") and output_dir is None and output is None and len(images) > 1:
        raise _fail(f"{prog}: error: {fmt} is one document per page: give --output-dir DIR for {len(images)} pages")
    try:
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
        stream = open(output, "w", encoding="utf-8") if output and output_dir is None else sys.stdout
    except OSError as err:
        raise _fail(f"{prog}: error: {output_dir or output}: cannot write ({err.strerror or err})")
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
        raise _fail(f"{prog}: error: cannot write ({err})", 1)
    finally:
        if stream is not sys.stdout:
            stream.close()
    seconds = time.perf_counter() - start
    sys.stderr.write(f"{prog}: {pages} pages, {lines[0]} lines, {failed} failed, "
                     f"{pages / seconds if seconds > 0 else 0.0:.2f} pages/s ({recognizer.engine.path.name})\n")
    if failed or problems:
        raise typer.Exit(1)


@eval_app.command(help="Measure CER and WER on a labelled folder (labels.tsv) or an IAM root (words.txt / lines.txt).")
def evaluate(
    labelled: Path = typer.Argument(..., help="Folder with labels.tsv, or IAM root with words.txt or lines.txt."),
    model: Optional[str] = _model_opt,
    provider: Provider = _provider_opt,
    decoder: DecoderName = _decoder_opt,
    beam_width: int = _beam_opt,
    batch_size: int = _batch_opt,
    threads: Optional[int] = _threads_opt,
    streams: Optional[int] = _streams_opt,
    lexicon: Optional[Path] = _lexicon_opt,
    lm: Optional[str] = _lm_opt,
    lm_weight: Optional[float] = _lm_weight_opt,
    spell: bool = _spell_opt,
    lexicon_mode: Optional[str] = _mode_opt,
    chars: Optional[str] = _chars_opt,
    split: SplitName = typer.Option(SplitName.all, "--split", help="IAM/tsv split: all, train, or val (every 10th record, as the seed notebook)."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="File of validation ids (one per line)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N samples."),
    worst: int = typer.Option(10, "--worst", min=0, help="How many worst samples to print."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a JSON report (totals and every sample) here."),
    pages: bool = typer.Option(False, "--pages", help="LABELLED is a folder of pages with same-stem .txt or PAGE-XML (.xml) truth: segment and read them (default model: line)."),
) -> None:
    from .datasets import load_labelled
    from .errors import HtrError
    from .metrics import edit_distance, error_rates
    from .output import Progress

    prog = "htr-eval"
    if pages:
        recognizer = _build(model or "line", provider, decoder, beam_width, batch_size, threads, streams, lexicon, lm,
                            lm_weight, None, spell, lexicon_mode, prog, chars)
        _evaluate_pages(recognizer, labelled, limit, report, prog)
        return
    try:
        data = load_labelled(labelled, split=split.value, split_file=split_file)
    except HtrError as err:
        raise _fail(f"{prog}: error: {err}")
    samples = list(data.samples[:limit] if limit else data.samples)
    for reason, count in sorted(data.skipped.items()):
        sys.stderr.write(f"{prog}: skipped {count} records ({reason})\n")
    if not samples:
        raise _fail(f"{prog}: error: {labelled}: no labelled images to evaluate")
    recognizer = _build(model, provider, decoder, beam_width, batch_size, threads, streams, lexicon, lm,
                        lm_weight, None, spell, lexicon_mode, prog, chars)
    unknown = set("".join(s.text for s in samples)) - set(recognizer.engine.spec.charset)
    if unknown:
        sys.stderr.write(
            f"{prog}: warning: references use {len(unknown)} characters the model cannot output: "
            f"{''.join(sorted(unknown))!r} (they count as errors)\n"
        )
    bar = Progress(len(samples))
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
    print(f"decoder   {decoder.value}")
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
            "kind": data.kind, "split": split.value, "decoder": decoder.value, "images": len(rows),
            "failed": failed, "skipped": data.skipped, "cer": rates.cer, "wer": rates.wer,
            "char_errors": rates.char_errors, "chars": rates.chars, "word_errors": rates.word_errors,
            "words": rates.words, "images_per_second": len(rows) / seconds, "samples": rows,
        }
        report.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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
        raise _fail(f"{prog}: error: {folder}: {err}")
    for name in missing:
        sys.stderr.write(f"{prog}: skipped {name} (no .xml or .txt ground truth beside it)\n")
    truths = truths[:limit] if limit else truths
    if not truths:
        raise _fail(f"{prog}: error: {folder}: no page images with .txt or PAGE-XML ground truth")
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
