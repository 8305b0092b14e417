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
    options = _decoder_options(spec.charset, decoder, beam_width, lexicon, lm, lm_weight, nbest, spell,
                               lexicon_mode, chars)
    try:
        decode = make_decoder(decoder.value, spec.charset, spec.blank, **options)
    except (ValueError, OSError, HtrError) as err:
        raise _fail(f"{prog}: error: {err}")
    except Exception as err:  # e.g. the default word list cannot be built
        raise _fail(f"{prog}: error: {type(err).__name__}: {err}")
    recognizer = Recognizer(engine, decode, batch_size=batch_size)
    recognizer.decoder_options = options  # what --engine ray's actors build the same decoder from
    return recognizer


def _decoder_options(charset: Any, decoder: DecoderName, beam_width: int, lexicon: Optional[Path],
                     lm: Optional[str], lm_weight: Optional[float], nbest: Optional[int], spell: bool,
                     lexicon_mode: Optional[str], chars: Optional[str]) -> dict[str, Any]:
    """`make_decoder` keyword options from CLI flags."""
    options: dict[str, Any] = {"chars": chars}
    if decoder is not DecoderName.greedy:
        options.update(beam_width=beam_width, nbest=nbest, lm=str(lm) if lm else None, lm_weight=lm_weight)
    if decoder is DecoderName.lexicon:
        mode = lexicon_mode or ("lines" if " " in charset else "words")
        options.update(lexicon=str(lexicon) if lexicon else None, mode=mode)
    elif spell:
        options["spell"] = str(lexicon) if lexicon else True
    return options


@run_app.command(help="Recognise handwriting in image files and folders (png, jpg, tif, bmp).")
def run(
    paths: List[Path] = typer.Argument(..., help="Image files and folders (folders in sorted order)."),
    model: Optional[str] = _model_opt,
    provider: Provider = _provider_opt,
    decoder: DecoderName = _decoder_opt,
    beam_width: int = _beam_opt,
    batch_size: int = _batch_opt,
    format: Format = typer.Option(Format.txt, "--format", "-f", help="txt: path<TAB>text; tsv/csv with confidence; jsonl with everything."),
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
    engine: RunEngine = typer.Option(RunEngine.local, "--engine", help="local: this machine; ray: a Ray cluster (pip install 'htr[cpu,ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray: join this cluster (auto or HOST:PORT); default: start a local Ray for the run."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Ray: actors, each with one model session (default 1)."),
    threads_per_worker: Optional[int] = typer.Option(None, "--threads-per-worker", min=1, help="Ray: CPUs (and onnxruntime threads) per actor (default 1)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", min=0.0, help="Ray: GPUs per actor, e.g. 1 or 0.5 (needs --provider cuda)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Ray: write result shards here through Ray Data instead of one output."),
    shard_format: ShardFormat = typer.Option(ShardFormat.jsonl, "--shard-format", help="Ray: shard format for --output-dir."),
    resume: bool = typer.Option(False, "--resume", help="Ray: skip images already in --output-dir's shards."),
) -> None:
    from .images import list_images
    from .output import Progress, ResultWriter

    prog = "htr-run"
    ray_flags = {"--address": address, "--workers": workers, "--threads-per-worker": threads_per_worker,
                 "--gpus-per-worker": gpus_per_worker, "--output-dir": output_dir, "--resume": resume or None}
    given = [name for name, value in ray_flags.items() if value is not None]
    if engine is RunEngine.local and given:
        raise _fail(f"{prog}: error: {', '.join(given)} need --engine ray")
    recognizer = _build(model, provider, decoder, beam_width, batch_size, threads, streams, lexicon, lm,
                        lm_weight, nbest, spell, lexicon_mode, prog, chars)
    images, problems = list_images(paths, recursive=recursive)
    for path, message in problems:
        sys.stderr.write(f"{prog}: error: {path}: {message}\n")
    if engine is RunEngine.ray:
        from .distributed import run_from_cli

        code = run_from_cli(prog, images, bool(problems), recognizer, decoder.value, provider.value, batch_size,
                            format.value, output, progress, address, workers, threads_per_worker,
                            gpus_per_worker, output_dir, shard_format.value, resume)
        raise typer.Exit(code)
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
) -> None:
    from .datasets import load_labelled
    from .errors import HtrError
    from .metrics import edit_distance, error_rates
    from .output import Progress

    prog = "htr-eval"
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
