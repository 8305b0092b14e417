"""Word error rate of a line model with greedy, beam and lexicon (word beam search) decoding.

    htr-synth /tmp/heldout-lines --kind lines --count 300 --seed 777 --split heldout
    python benchmarks/bench_lexicon_wer.py --model line.onnx /tmp/heldout-lines \\
        --data-note "htr-synth --kind lines --count 300 --seed 777 --split heldout"
    # writes benchmarks/reports/lexicon-wer.md and .json

The model runs once over the labelled folder (labels.tsv, or an IAM root); every
batch of its output is decoded by all three decoders, so they read exactly the same
network output, and each decoder's time is measured on its own. The lexicon holds
every word of the labels, so lexicon decoding is not penalised for words it cannot
spell; by default it is the default English lexicon (wordfreq) plus the label words
missing from it, which get the lowest frequency of that list, so that the word prior
does not favour the words of the test set (see `build_lexicon`).

Lines mode (word beam search) is used when the model's charset has a space, words
mode (the image is one lexicon word) otherwise, as `htr-run --decoder lexicon`
does. Use held-out data the model never trained on: with `htr-synth`, `--split
heldout` draws hands the bundled models were not trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from machine_facts import cpu_model

from htr.runtime.decoding import (
    BeamOptions,
    Decoded,
    Decoder,
    GreedyOptions,
    Lexicon,
    LexiconOptions,
    build_decoder,
)
from htr.runtime.decoding.constants import DEFAULT_WORD_LM_WEIGHT
from htr.runtime.metrics import error_rates

REPORTS = Path(__file__).resolve().parent / "reports"
DECODERS = ("greedy", "beam", "lexicon")
LEXICON_SOURCES = ("default+labels", "labels", "default")
#: Beam width of the beam and lexicon decoders (the decoder benchmark's line setting).
BEAM_WIDTH = 25


class TimedDecoder:
    """A decoder that adds the time it spends to `seconds`."""

    def __init__(self, decoder: Decoder):
        self.decoder = decoder
        self.seconds = 0.0

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        start = time.perf_counter()
        try:
            return self.decoder(probs, lengths)
        finally:
            self.seconds += time.perf_counter() - start


@dataclass(frozen=True)
class LexiconInfo:
    """What the lexicon decoder's word list was made of."""

    source: str
    words: int
    label_words: int
    added_label_words: int
    added_frequency: float | None
    note: str = ""


def label_words(texts: list[str]) -> list[str]:
    """The words of the labels (split at white space), in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in text.split():
            seen.setdefault(word, None)
    return list(seen)


def build_lexicon(texts: list[str], source: str) -> tuple[Lexicon, LexiconInfo]:
    """The lexicon for `source` (one of LEXICON_SOURCES) and what it holds.

    ``default+labels``: the default English lexicon plus the label words it lacks,
    each at the lowest frequency of that list. ``labels``: the label words, all at
    the same frequency (so no word prior). ``default``: the default list alone (it
    may lack label words: the lexicon decoder then cannot read them). Without
    `wordfreq`, ``default+labels`` falls back to ``labels`` and says so.
    """
    if source not in LEXICON_SOURCES:
        raise ValueError(f"lexicon source must be one of {', '.join(LEXICON_SOURCES)}, got {source!r}")
    words = label_words(texts)
    if source == "labels":
        lexicon = Lexicon({w: 1.0 for w in words})
        return lexicon, LexiconInfo(source, len(lexicon), len(words), len(words), 1.0)
    from htr.runtime.decoding import WordlistUnavailable, default_lexicon

    try:
        base = default_lexicon()
    except WordlistUnavailable as err:
        if source == "default":
            raise
        lexicon = Lexicon({w: 1.0 for w in words})
        note = f"the default English lexicon is unavailable ({err}); used the label words alone"
        return lexicon, LexiconInfo("labels", len(lexicon), len(words), len(words), 1.0, note)
    if source == "default":
        missing = sum(1 for w in words if w not in base)
        note = f"{missing} label words are not in it" if missing else ""
        return base, LexiconInfo(source, len(base), len(words), 0, None, note)
    lowest = min(base.frequencies.values())
    frequencies = dict(base.frequencies)
    added = [w for w in words if w not in frequencies]
    for word in added:
        frequencies[word] = lowest
    return Lexicon(frequencies), LexiconInfo(source, len(frequencies), len(words), len(added), lowest)


def machine() -> dict:
    """What this ran on, and how busy it was with other work."""
    cpu = cpu_model()
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="labelled folder (labels.tsv) or IAM root of held-out lines")
    parser.add_argument("--model", "-m", required=True, help="line model (.onnx from htr-export, or a bundled name)")
    parser.add_argument("--lexicon-source", choices=LEXICON_SOURCES, default="default+labels",
                        help="what the lexicon decoder's word list holds (default: %(default)s)")
    parser.add_argument("--mode", choices=("lines", "words"), default=None,
                        help="lexicon mode (default: lines when the charset has a space, else words)")
    parser.add_argument("--beam-width", type=int, default=BEAM_WIDTH, help="beam and lexicon (default: %(default)s)")
    parser.add_argument("--word-weight", type=float, default=DEFAULT_WORD_LM_WEIGHT,
                        help="weight of the lexicon's word model (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "tensorrt"))
    parser.add_argument("--data-note", default="", help="how the data was made (for the report)")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder (default: benchmarks/reports)")
    parser.add_argument("--name", default="lexicon-wer", help="report file stem (default: %(default)s)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Recognise the folder once, decode it three ways, and return the results."""
    from htr.runtime.datasets import load_labelled
    from htr.runtime.engine import Engine
    from htr.runtime.models import resolve_model
    from htr.runtime.pipeline import Recognizer

    data = load_labelled(args.data)
    samples = list(data.samples[: args.limit] if args.limit else data.samples)
    if not samples:
        raise ValueError(f"{args.data}: no labelled images")
    engine = Engine(resolve_model(args.model, args.provider), provider=args.provider, threads=args.threads)
    spec = engine.spec
    lexicon, info = build_lexicon([s.text for s in samples], args.lexicon_source)
    options = {
        "greedy": GreedyOptions(),
        "beam": BeamOptions(beam_width=args.beam_width),
        "lexicon": LexiconOptions(beam_width=args.beam_width, lexicon=lexicon, mode=args.mode,
                                  word_weight=args.word_weight),
    }
    # One model run per batch feeds all three decoders (the pipeline's decode stage takes a mapping).
    decoders = {name: TimedDecoder(build_decoder(o, spec.charset, spec.blank)) for name, o in options.items()}
    recognizer = Recognizer(engine, decoders, batch_size=args.batch_size)
    start = time.perf_counter()
    rows, failed = [], []
    for sample, rec in zip(samples, recognizer.recognise_paths([s.path for s in samples])):
        if not rec.ok:
            failed.append(rec.error)
            print(f"bench_lexicon_wer: {rec.error}", file=sys.stderr)
            continue
        texts = {name: d.text for name, d in rec.alternatives.items()}
        rows.append({"path": str(sample.path), "reference": sample.text, **texts})
    seconds = time.perf_counter() - start
    if not rows:
        raise ValueError(f"{args.data}: no image could be recognised")

    results = {}
    for name in DECODERS:
        rates = error_rates((r["reference"], r[name]) for r in rows)
        results[name] = {
            "cer": rates.cer, "wer": rates.wer, "char_errors": rates.char_errors, "chars": rates.chars,
            "word_errors": rates.word_errors, "words": rates.words,
            "decode_ms_per_image": 1000 * decoders[name].seconds / len(samples),
        }
    greedy_wer = results["greedy"]["wer"]
    reduction = 1 - results["lexicon"]["wer"] / greedy_wer if greedy_wer else None
    unknown = sorted(set("".join(s.text for s in samples)) - set(spec.charset))
    return {
        "model": str(engine.path),
        "model_source": dict(spec.source),
        "charset_size": len(spec.charset),
        "data": str(args.data),
        "data_kind": data.kind,
        "data_note": args.data_note,
        "images": len(rows),
        "failed": len(failed),
        "skipped": data.skipped,
        "reference_chars_not_in_charset": "".join(unknown),
        "lexicon_mode": options["lexicon"].mode_for(spec.charset),
        "beam_width": args.beam_width,
        "word_weight": args.word_weight,
        "lexicon": asdict(info),
        "decoders": results,
        "lexicon_wer_reduction_vs_greedy": reduction,
        "seconds": seconds,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": shlex.join(["python", "benchmarks/bench_lexicon_wer.py", *args.argv]),
        "samples": rows,
    }


def write_report(result: dict, out: Path, name: str) -> tuple[Path, Path]:
    """`out/name.json` (everything, every sample) and `out/name.md` (the summary)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    m, lex = result["machine"], result["lexicon"]
    source = result["model_source"]
    lines = [
        "# Lexicon decoding: error rates on held-out data",
        "",
        f"Model: `{result['model']}` ({result['charset_size']} characters"
        + (f"; {', '.join(f'{k}: {v}' for k, v in source.items() if not isinstance(v, (dict, list)))}" if source else "")
        + ").",
        f"Data: `{result['data']}` ({result['data_kind']}, {result['images']} images"
        + (f", {result['failed']} unreadable" if result["failed"] else "")
        + ")" + (f": {result['data_note']}" if result["data_note"] else "") + ".",
        f"Run: {result['date']}, `{result['command']}`; {m['cpu']}, {m['cores']} cores"
        + (f", load average {m['load_average_1min']}" if "load_average_1min" in m else "") + ".",
        "",
        f"Lexicon ({result['lexicon_mode']} mode, beam width {result['beam_width']}, word weight "
        f"{result['word_weight']}): {describe_lexicon(lex)}",
        "",
        "| decoder | CER | WER | word errors / words | decode ms per image |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in DECODERS:
        r = result["decoders"][name]
        lines.append(
            f"| {name} | {100 * r['cer']:.2f}% | {100 * r['wer']:.2f}% | {r['word_errors']} / {r['words']} "
            f"| {r['decode_ms_per_image']:.2f} |"
        )
    reduction = result["lexicon_wer_reduction_vs_greedy"]
    lines += [
        "",
        "Lexicon vs greedy: "
        + (f"**{100 * reduction:.1f}% relative WER reduction**." if reduction is not None
           else "greedy made no word errors, so there is no reduction to measure."),
        "",
        "Every decoder reads the same network output (the model runs once per batch). Decode times are "
        "single-threaded NumPy and include nothing of the model; they depend on the machine's load.",
    ]
    if result["reference_chars_not_in_charset"]:
        lines.append(
            f"References use characters the model cannot output (counted as errors): "
            f"{result['reference_chars_not_in_charset']!r}."
        )
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, json_path


def describe_lexicon(lex: dict) -> str:
    """One sentence on what the lexicon holds."""
    if lex["source"] == "default+labels":
        text = (f"the default English lexicon (wordfreq) plus the {lex['added_label_words']} of the "
                f"{lex['label_words']} label words it lacks, added at its lowest frequency "
                f"({lex['added_frequency']:.3g}); {lex['words']} entries.")
    elif lex["source"] == "labels":
        text = f"the {lex['label_words']} words of the labels, all at the same frequency (no word prior)."
    else:
        text = f"the default English lexicon (wordfreq) alone, {lex['words']} entries."
    return text + (f" Note: {lex['note']}." if lex.get("note") else "")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write the report; returns the result."""
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from htr.runtime.errors import HtrError

    try:
        result = run(args)
    except (HtrError, ValueError) as err:
        sys.exit(f"bench_lexicon_wer: error: {err}")
    md_path, _ = write_report(result, args.out, args.name)
    for name in DECODERS:
        r = result["decoders"][name]
        print(f"{name:8s} CER {100 * r['cer']:6.2f}%  WER {100 * r['wer']:6.2f}%", file=sys.stderr)
    print(md_path)
    return result


if __name__ == "__main__":
    main()
