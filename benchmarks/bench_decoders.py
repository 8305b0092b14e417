"""Benchmark htr's NumPy CTC decoders against TensorFlow and pyctcdecode.

    python benchmarks/bench_decoders.py            # writes benchmarks/reports/decoders.{md,json}
    python benchmarks/bench_decoders.py --batch 200 --repeats 3 --baseline-ref HEAD~1   # quicker, before/after

Inputs are synthetic CTC outputs shaped like a trained CRNN's (see `synthetic_ctc`):
a known text aligned over T frames with blanks and repeats, a confident peak per
frame, background noise, and some ambiguous frames where a second class competes.
Every timing is the median of several runs after a warm-up, and every ratio is
against a baseline measured in the same run on the same arrays. Quality is the CTC
probability (forward algorithm, float64) of each decoder's answer.

With --baseline-ref, htr's own decoders are also timed as they were at that git
revision (a throwaway copy of runtime/decoding), on the same arrays, alternating
runs with the current ones: the before/after ratio of a change, measured in one run.

Needs: tensorflow (baseline), pyctcdecode 0.5 installed with --no-deps plus pygtrie
(baseline; it pins numpy<2 but runs on numpy 2), wordfreq (default lexicon). See
benchmarks/requirements.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_facts import busy_cpus, cpu_model

from htr.runtime.decoding import (
    beam_search_decode,
    greedy_decode,
    make_decoder,
)
from htr.runtime.decoding.alphabet import Alphabet, log_probs
from htr.runtime.decoding.ctc import forward_log_probs

#: The line model's charset: the seed word charset plus space (79 + blank = 80).
CHARSET = " !\"#&'()*+,-./0123456789:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BLANK = len(CHARSET)
REPORTS = Path(__file__).resolve().parent / "reports"


def synthetic_ctc(texts: list[str], steps: int, rng: np.random.Generator, ambiguous: float = 0.15):
    """(B, T, C) softmax reading `texts`, like a trained network's output.

    Each text is aligned over `steps` frames (every character 1-3 frames, blanks
    between and around, a blank forced between doubled letters); the aligned class
    gets a logit peak of 6-12 over N(0, 1.5) noise; a fraction `ambiguous` of frames
    also give a random rival class a peak 0-2 lower (so greedy and beam can disagree).
    """
    classes = len(CHARSET) + 1
    out = np.empty((len(texts), steps, classes), dtype=np.float32)
    for b, text in enumerate(texts):
        labels = [CHARSET.index(c) for c in text]
        path: list[int] = []
        budget = steps - len(labels) - sum(1 for x, y in zip(labels, labels[1:]) if x == y)
        for i, c in enumerate(labels):
            if i and labels[i - 1] == c:
                path.append(BLANK)
            path += [BLANK] * int(rng.integers(0, 2 if budget > len(labels) else 1))
            path += [c] * int(rng.integers(1, 3 if budget > 2 * len(labels) else 2))
        path = path[:steps]
        path += [BLANK] * (steps - len(path))
        logits = rng.normal(0, 1.5, (steps, classes))
        logits[np.arange(steps), path] += rng.uniform(6, 12, steps)
        rivals = rng.random(steps) < ambiguous
        rival = rng.integers(0, classes, steps)
        logits[np.arange(steps)[rivals], rival[rivals]] = (
            logits[np.arange(steps)[rivals], np.array(path)[rivals]] - rng.uniform(0, 2, rivals.sum())
        )
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[b] = e / e.sum(axis=1, keepdims=True)
    return out


def random_texts(words: list[str], count: int, max_chars: int, rng: np.random.Generator) -> list[str]:
    """Lines of lexicon words with spaces and some punctuation, at most max_chars."""
    texts = []
    for _ in range(count):
        text = ""
        while True:
            word = words[int(rng.zipf(1.3)) % len(words)]
            sep = " " if rng.random() > 0.15 else rng.choice([", ", ". ", "; ", " - "])
            candidate = (text + sep + word) if text else word
            if len(candidate) > max_chars:
                break
            text = candidate
        texts.append(text or words[0][:max_chars])
    return texts


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() over `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_pair(first, second, repeats: int) -> tuple[float, float]:
    """Median wall times of first() and second(), alternating runs (after a warm-up
    of each), so that both see the same background load."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def decoding_at(ref: str):
    """`htr.runtime.decoding` as it was at git revision `ref`, imported from a
    throwaway copy under another module name."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref, "runtime/decoding"], capture_output=True
    )
    if archive.returncode != 0:
        sys.exit(f"bench_decoders: cannot read runtime/decoding at {ref!r}: {archive.stderr.decode().strip()}")
    folder = Path(tempfile.mkdtemp(prefix="htr-decoding-"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(folder, **safe)
    package = folder / "runtime" / "decoding"
    name = "htr_decoding_at_" + "".join(c if c.isalnum() else "_" for c in ref)
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def machine() -> dict:
    """What this ran on."""
    cpu = cpu_model()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        info["pyctcdecode"] = version("pyctcdecode")
    except Exception:
        pass
    return info


def tf_decoder(beam_width: int):
    """TensorFlow's ctc_beam_search_decoder on a (B, T, C) softmax; blank is last."""
    import tensorflow as tf

    def decode(probs: np.ndarray) -> list[str]:
        logits = tf.constant(np.log(np.maximum(probs, 1e-30)).transpose(1, 0, 2))
        lengths = tf.fill([probs.shape[0]], probs.shape[1])
        decoded, _ = tf.nn.ctc_beam_search_decoder(logits, lengths, beam_width=beam_width, top_paths=1)
        dense = tf.sparse.to_dense(decoded[0], default_value=-1).numpy()
        return ["".join(CHARSET[c] for c in row if c >= 0) for row in dense]

    return decode


def pyctc_decoder(beam_width: int):
    """pyctcdecode (no LM), one sequence at a time, as its README shows."""
    import logging

    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    from pyctcdecode import build_ctcdecoder

    decoder = build_ctcdecoder(list(CHARSET) + [""])

    def decode(probs: np.ndarray) -> list[str]:
        logp = np.log(np.maximum(probs, 1e-30))
        return [decoder.decode(x, beam_width=beam_width) for x in logp]

    return decode


def ctc_scores(probs: np.ndarray, texts: list[str]) -> np.ndarray:
    """CTC log probability of each text (float64 forward algorithm)."""
    alphabet = Alphabet.from_charset(CHARSET, BLANK)
    lengths = np.full(len(texts), probs.shape[1])
    logp = log_probs(probs, lengths, BLANK, dtype=np.float64)
    labels = [alphabet.encode(t) for t in texts]
    return forward_log_probs(logp, np.arange(len(texts)), labels, BLANK)


def bench_beam(steps: int, width: int, batch: int, repeats: int, rng, words, baseline=None) -> dict:
    """Beam search: htr vs TensorFlow vs pyctcdecode on one batch."""
    texts = random_texts(words, batch, max_chars=max(3, steps // 3), rng=rng)
    probs = synthetic_ctc(texts, steps, rng)
    row: dict = {"T": steps, "C": probs.shape[2], "beam_width": width, "batch": batch}
    ours = lambda: beam_search_decode(probs, CHARSET, BLANK, beam_width=width)  # noqa: E731
    # htr's own runs are cheap: take more of them for a steadier median.
    if baseline is not None:
        before = lambda: baseline.beam_search_decode(probs, CHARSET, BLANK, beam_width=width)  # noqa: E731
        now, then = timed_pair(ours, before, 3 * repeats)
        row["htr_ms_per_seq"] = now * 1000 / batch
        row["baseline_ms_per_seq"] = then * 1000 / batch
        row["baseline_same_texts"] = float(np.mean([a.text == b.text for a, b in zip(ours(), before())]))
    else:
        row["htr_ms_per_seq"] = timed(ours, 3 * repeats) * 1000 / batch
    row["greedy_ms_per_seq"] = timed(lambda: greedy_decode(probs, CHARSET, BLANK), 3 * repeats) * 1000 / batch
    one = probs[:1]
    row["htr_batch1_ms"] = timed(lambda: beam_search_decode(one[0], CHARSET, BLANK, beam_width=width), 50) * 1000
    htr_texts = [r.text for r in ours()]
    htr_scores = ctc_scores(probs, htr_texts)
    greedy_texts = [r.text for r in greedy_decode(probs, CHARSET, BLANK)]
    row["htr_cer_vs_truth"] = cer(htr_texts, texts)
    row["greedy_cer_vs_truth"] = cer(greedy_texts, texts)
    try:
        tf_decode = tf_decoder(width)
        row["tf_ms_per_seq"] = timed(lambda: tf_decode(probs), repeats) * 1000 / batch
        row["tf_batch1_ms"] = timed(lambda: tf_decode(one), 50) * 1000
        tf_scores = ctc_scores(probs, tf_decode(probs))
        row["speedup_vs_tf"] = row["tf_ms_per_seq"] / row["htr_ms_per_seq"]
        row["share_ctc_prob_ge_tf"] = float(np.mean(htr_scores >= tf_scores - 1e-4))
        row["share_ctc_prob_gt_tf"] = float(np.mean(htr_scores > tf_scores + 1e-4))
    except ImportError as err:
        row["tf_error"] = str(err)
    try:
        py_decode = pyctc_decoder(width)
        row["pyctcdecode_ms_per_seq"] = timed(lambda: py_decode(probs), max(1, repeats // 2)) * 1000 / batch
        row["pyctcdecode_batch1_ms"] = timed(lambda: py_decode(one), 20) * 1000
        row["speedup_vs_pyctcdecode"] = row["pyctcdecode_ms_per_seq"] / row["htr_ms_per_seq"]
        try:
            py_scores = ctc_scores(probs, py_decode(probs))
            row["share_ctc_prob_ge_pyctcdecode"] = float(np.mean(htr_scores >= py_scores - 1e-4))
        except ValueError:
            pass
    except ImportError as err:
        row["pyctcdecode_error"] = str(err)
    return row


def bench_word_beam(steps: int, width: int, batch: int, repeats: int, rng, lexicon, words, baseline=None) -> dict:
    """Word beam search (lines mode) on 128-step lines; WER vs greedy on the same."""
    texts = random_texts(words, batch, max_chars=steps // 3, rng=rng)
    probs = synthetic_ctc(texts, steps, rng, ambiguous=0.25)
    decode = make_decoder("lexicon", CHARSET, BLANK, lexicon=lexicon, mode="lines", beam_width=width)
    row: dict = {"T": steps, "beam_width": width, "batch": batch, "lexicon_words": len(lexicon)}
    decode(probs[:2])  # builds the trie once, outside the timing
    if baseline is not None:
        before = baseline.make_decoder(
            "lexicon", CHARSET, BLANK, lexicon=dict(lexicon.frequencies), mode="lines", beam_width=width
        )
        before(probs[:2])
        now, then = timed_pair(lambda: decode(probs), lambda: before(probs), 3 * repeats)
        row["ms_per_line"], row["baseline_ms_per_line"] = now * 1000 / batch, then * 1000 / batch
        now, then = timed_pair(lambda: decode(probs[:1]), lambda: before(probs[:1]), 20)
        row["batch1_ms_per_line"], row["baseline_batch1_ms_per_line"] = now * 1000, then * 1000
        row["baseline_same_texts"] = float(np.mean([a.text == b.text for a, b in zip(decode(probs), before(probs))]))
    else:
        row["ms_per_line"] = timed(lambda: decode(probs), 3 * repeats) * 1000 / batch
        row["batch1_ms_per_line"] = timed(lambda: decode(probs[:1]), 20) * 1000
    lexicon_texts = [r.text for r in decode(probs)]
    greedy_texts = [r.text for r in greedy_decode(probs, CHARSET, BLANK)]
    beam_texts = [r.text for r in beam_search_decode(probs, CHARSET, BLANK, beam_width=width)]
    row["wer_greedy"] = wer(greedy_texts, texts)
    row["wer_beam"] = wer(beam_texts, texts)
    row["wer_lexicon"] = wer(lexicon_texts, texts)
    row["wer_reduction_vs_greedy"] = 1 - row["wer_lexicon"] / row["wer_greedy"] if row["wer_greedy"] else 0.0
    return row


def _distance(a, b) -> int:
    from htr.runtime.metrics import edit_distance

    return edit_distance(a, b)


def cer(hyps: list[str], refs: list[str]) -> float:
    """Character error rate."""
    return sum(_distance(h, r) for h, r in zip(hyps, refs)) / max(1, sum(len(r) for r in refs))


def wer(hyps: list[str], refs: list[str]) -> float:
    """Word error rate (words split on spaces)."""
    return sum(_distance(h.split(), r.split()) for h, r in zip(hyps, refs)) / max(
        1, sum(len(r.split()) for r in refs)
    )


def write_report(result: dict) -> None:
    """benchmarks/reports/decoders.json and .md."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "decoders.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# CTC decoder benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}, "
        f"NumPy {m['numpy']}, TensorFlow {m.get('tensorflow', '-')}, pyctcdecode {m.get('pyctcdecode', '-')}.",
        f"Run: {result['date']}, `{result['command']}`. Median of {result['repeats']} runs after a warm-up "
        f"({3 * result['repeats']} for htr's own timings); "
        "ratios against baselines measured in the same run on the same arrays.",
        "Inputs: synthetic CRNN-like softmax (see `synthetic_ctc` in the script); C = 80 (79 characters + blank).",
    ]
    busy = [x for x in (m.get("busy_cpus_at_start"), result.get("busy_cpus_at_end")) if x is not None]
    if busy and max(busy) >= 0.5:
        lines.append(
            f"Other work kept {max(busy):.1f} of {m['cores']} CPUs busy while the run was idle (measured at its "
            "start and end): absolute timings are inflated and noisy; compare the ratios, which are measured "
            "on the same arrays in the same run."
        )
    elif busy:
        lines.append(f"Other work kept {max(busy):.1f} of {m['cores']} CPUs busy (measured at the run's start and end): the machine was idle.")
    lines += [
        "",
        "## Beam search (no LM)",
        "",
        "| T | width | batch | htr ms/seq | TF ms/seq | pyctcdecode ms/seq | x TF | x pyctcdecode "
        "| htr P >= TF | htr P > TF | batch-1 htr / TF / pyctc ms | greedy ms/seq | CER beam / greedy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["beam"]:
        lines.append(
            f"| {r['T']} | {r['beam_width']} | {r['batch']} | {r['htr_ms_per_seq']:.3f} "
            f"| {r.get('tf_ms_per_seq', float('nan')):.3f} | {r.get('pyctcdecode_ms_per_seq', float('nan')):.3f} "
            f"| {r.get('speedup_vs_tf', float('nan')):.1f} | {r.get('speedup_vs_pyctcdecode', float('nan')):.1f} "
            f"| {100 * r.get('share_ctc_prob_ge_tf', float('nan')):.1f}% | {100 * r.get('share_ctc_prob_gt_tf', float('nan')):.1f}% "
            f"| {r['htr_batch1_ms']:.2f} / {r.get('tf_batch1_ms', float('nan')):.2f} / {r.get('pyctcdecode_batch1_ms', float('nan')):.2f} "
            f"| {r['greedy_ms_per_seq']:.4f} | {100 * r['htr_cer_vs_truth']:.2f}% / {100 * r['greedy_cer_vs_truth']:.2f}% |"
        )
    ref = result.get("baseline_ref")
    if ref:
        lines += ["", f"htr beam search at `{ref}` ({result.get('baseline_commit', '?')}), same arrays, alternating runs:"]
        for r in result["beam"]:
            lines.append(
                f"T = {r['T']}, width {r['beam_width']}: {r['baseline_ms_per_seq']:.3f} ms/seq then, "
                f"{r['htr_ms_per_seq']:.3f} now (x{r['baseline_ms_per_seq'] / r['htr_ms_per_seq']:.2f} faster); "
                f"same text for {100 * r['baseline_same_texts']:.1f}% of sequences."
            )
    w = result["word_beam"]
    lines += [
        "",
        "## Word beam search (lexicon, lines mode)",
        "",
        f"T = {w['T']}, width {w['beam_width']}, batch {w['batch']}, lexicon of {w['lexicon_words']} entries: "
        f"**{w['ms_per_line']:.2f} ms per line** in a batch, {w['batch1_ms_per_line']:.2f} ms for a single line.",
    ]
    if ref:
        lines += [
            "",
            f"The same at `{ref}` ({result.get('baseline_commit', '?')}), same arrays, alternating runs: "
            f"{w['baseline_ms_per_line']:.2f} ms per line in a batch (x{w['baseline_ms_per_line'] / w['ms_per_line']:.2f} "
            f"slower than now), {w['baseline_batch1_ms_per_line']:.2f} ms for a single line "
            f"(x{w['baseline_batch1_ms_per_line'] / w['batch1_ms_per_line']:.2f}); same text for "
            f"{100 * w['baseline_same_texts']:.1f}% of lines.",
        ]
    lines += [
        "",
        f"WER on the synthetic lines (words from the lexicon, 25% ambiguous frames): greedy {100 * w['wer_greedy']:.1f}%, "
        f"beam {100 * w['wer_beam']:.1f}%, lexicon {100 * w['wer_lexicon']:.1f}% "
        f"({100 * w['wer_reduction_vs_greedy']:.0f}% lower than greedy). Synthetic, not a trained model's output: "
        "the held-out-lines figure needs the demo model.",
        "",
        "Notes: TensorFlow may use several threads; htr's decoders are single-threaded NumPy. pyctcdecode "
        "decodes one sequence per call (no pool). `htr P >= TF`: share of sequences whose htr answer has a CTC "
        "probability at least TensorFlow's (1e-4 tolerance in log space).",
    ]
    (REPORTS / "decoders.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Run every benchmark and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--line-batch", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline-ref", metavar="REF",
        help="also time htr's decoders as they were at this git revision (before/after of a change)",
    )
    args = parser.parse_args()
    baseline = decoding_at(args.baseline_ref) if args.baseline_ref else None
    rng = np.random.default_rng(args.seed)
    try:
        from htr.runtime.decoding import default_lexicon

        lexicon = default_lexicon()
    except RuntimeError as err:
        sys.exit(f"bench_decoders: {err}")
    words = [w for w in sorted(lexicon.frequencies, key=lambda w: -lexicon.frequencies[w]) if w.isalpha()][:20000]
    result = {
        "machine": {**machine(), "busy_cpus_at_start": busy_cpus()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python", "benchmarks/bench_decoders.py", *sys.argv[1:]]),
        "repeats": args.repeats,
        "beam": [],
    }
    if args.baseline_ref:
        commit = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", args.baseline_ref],
            capture_output=True, text=True,
        )
        result["baseline_ref"], result["baseline_commit"] = args.baseline_ref, commit.stdout.strip() or None
    for steps, width in ((32, 10), (128, 25)):
        print(f"beam T={steps} width={width} ...", file=sys.stderr)
        result["beam"].append(bench_beam(steps, width, args.batch, args.repeats, rng, words, baseline))
        print(json.dumps(result["beam"][-1]), file=sys.stderr)
    print("word beam search ...", file=sys.stderr)
    result["word_beam"] = bench_word_beam(128, 25, args.line_batch, args.repeats, rng, lexicon, words, baseline)
    print(json.dumps(result["word_beam"]), file=sys.stderr)
    result["busy_cpus_at_end"] = busy_cpus()
    write_report(result)
    print(REPORTS / "decoders.md")


if __name__ == "__main__":
    main()
