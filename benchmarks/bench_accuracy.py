"""Peer benchmark (issue 15): htr vs RapidOCR's recogniser vs Tesseract 5 on the same pre-cut images.

    python benchmarks/bench_accuracy.py \\
        --words /work/data/test-words --lines /work/data/test-lines --digits /work/data/test-digits \\
        --word-model word --line-model line
    python benchmarks/bench_accuracy.py --words samples/words --systems htr --report /tmp/acc   # htr only

Each labelled folder (`labels.tsv`: `relative/path.png<TAB>text`) is given with its kind:
`--words` and `--digits` (one word or digit string per image, read by the word model) and
`--lines` (one line per image, read by the line model); each option may be repeated. On
every set, every system reads every image from its file:

- htr: the runtime's own `Engine` + `Recognizer` (what `htr-run` runs), greedy, and beam
  search with the bundled character LM (`--lm words` on word and digit sets, `--lm lines` on
  line sets); on digit sets also greedy with `--chars digits`.
- RapidOCR (`rapidocr_onnxruntime`, whose wheel bundles PP-OCRv4 ONNX models): its
  recogniser alone, `RapidOCR(...)(path, use_det=False, use_cls=False)`, one image per call.
- Tesseract 5 (Debian `tesseract-ocr`, LSTM engine `--oem 1`): `--psm 8` for words and digits,
  `--psm 7` for lines, `OMP_THREAD_LIMIT=1`; each process reads a list file of images (the
  model is loaded once per process, not once per image; results per page are the same, the
  LSTM engine keeps no state between pages). On digit sets also with a digits whitelist, the
  counterpart of htr's `--chars digits`.

Threads: `--threads N` (default: the cores this process may use) for everyone: htr's
engine gets N threads (shared out between its streams, as htr-run does), RapidOCR's
onnxruntime sessions get intra_op_num_threads=N, and Tesseract runs N processes at once on
N slices of the set. Images/s is the wall time of the whole set, from the first file read
to the last result, after a warm-up on a few images for htr and RapidOCR (their sessions
are created before the clock starts; Tesseract's model load in each process is timed).

Scoring uses htr's own `error_rates` (htr.runtime.metrics), case-sensitively against the
labels as they are; a case-insensitive CER is reported beside it. Peer output goes through
a whitespace normalisation only (runs of whitespace -> one space, ends stripped); htr's
output is scored as htr-eval scores it (unchanged; the JSON counts how many of its outputs
that normalisation would have changed).

Writes `<report>.md` and `<report>.json` (default benchmarks/reports/accuracy), with the
machine, the commands, the sets, the peers' versions and the issue-15 "done when" checks.
Peers are benchmark-only dependencies (benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_facts import busy_cpus, cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_REPORT = HERE / "reports" / "accuracy"
KINDS = ("word", "line", "digits")
SYSTEMS = ("htr", "rapidocr", "tesseract")
#: Images recognised (untimed) before htr and RapidOCR are timed.
WARMUP_IMAGES = 16
#: Tesseract page segmentation mode per kind of set.
TESSERACT_PSM = {"word": 8, "digits": 8, "line": 7}
#: Tesseract whitelist for digit sets: the characters of htr's `--chars digits`.
DIGIT_CHARS = "0123456789 /.,:-"
#: Issue 15's "done when" thresholds.
MAX_GREEDY_CER = {"word": 0.10, "line": 0.12, "digits": 0.04}
BEAT_FACTOR = 0.75  # htr greedy CER <= 0.75 x the better peer's CER (25% relative)
EXAMPLES = 8  # samples per set shown with every system's output in the markdown


class UsageError(Exception):
    """A bad command line or a missing peer: one line on stderr, exit 2."""


# ---- sets -----------------------------------------------------------------------------
@dataclass
class BenchSet:
    name: str
    kind: str  # word, line or digits
    root: Path
    paths: list[Path]
    texts: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        n = len(self.texts)
        chars = sum(len(t) for t in self.texts)
        return {
            "name": self.name, "kind": self.kind, "folder": str(self.root), "images": n,
            "skipped": self.skipped, "chars": chars, "words": sum(len(t.split()) for t in self.texts),
            "mean_chars": round(chars / n, 2) if n else 0.0,
            "with_digits": sum(any(c.isdigit() for c in t) for t in self.texts),
            "with_upper": sum(any(c.isupper() for c in t) for t in self.texts),
            "labels_sha256": sha256(self.root / "labels.tsv"),
        }


def load_set(folder: Path, kind: str, limit: int | None) -> BenchSet:
    from htr.runtime.datasets import load_labelled
    from htr.runtime.errors import HtrError

    if not (folder / "labels.tsv").is_file():
        raise UsageError(f"{folder}: expected a folder with labels.tsv (relative/path.png<TAB>text)")
    try:
        data = load_labelled(folder)
    except HtrError as err:
        raise UsageError(str(err)) from None
    samples = list(data.samples[:limit] if limit else data.samples)
    if not samples:
        raise UsageError(f"{folder}: no labelled images")
    return BenchSet(folder.resolve().name, kind, folder.resolve(), [s.path for s in samples],
                    [s.text for s in samples], dict(data.skipped))


# ---- scoring --------------------------------------------------------------------------
def normalise_whitespace(text: str) -> str:
    """Runs of whitespace -> one space, ends stripped: the only change made to peer output."""
    return " ".join(text.split())


_DIGIT = re.compile(r"\d")


def score(refs: list[str], hyps: list[str]) -> dict[str, Any]:
    """CER/WER (case-sensitive, htr's error_rates), case-insensitive CER, and how often a
    digit appears in an output whose reference has none."""
    from htr.runtime.metrics import error_rates

    exact = error_rates(zip(refs, hyps))
    folded = error_rates((r.lower(), h.lower()) for r, h in zip(refs, hyps))
    no_digit = [h for r, h in zip(refs, hyps) if not _DIGIT.search(r)]
    return {
        "cer": exact.cer, "wer": exact.wer, "cer_nocase": folded.cer,
        "char_errors": exact.char_errors, "chars": exact.chars,
        "word_errors": exact.word_errors, "words": exact.words,
        "char_errors_nocase": folded.char_errors,
        "exact_match": sum(r == h for r, h in zip(refs, hyps)) / len(refs) if refs else 0.0,
        "invented_digits": (sum(bool(_DIGIT.search(h)) for h in no_digit) / len(no_digit)) if no_digit else None,
    }


# ---- systems --------------------------------------------------------------------------
@dataclass
class Outcome:
    """One system/decoder on one set: its texts (in set order), wall time, failures."""

    texts: list[str]
    seconds: float
    failures: int = 0
    first_error: str | None = None
    notes: list[str] = field(default_factory=list)


class Htr:
    """htr's engine and Recognizer, as htr-run builds them; engines are opened once per model."""

    def __init__(self, threads: int, batch_size: int, beam_width: int):
        from htr.runtime.engine import Engine
        from htr.runtime.models import resolve_model

        self._engine_cls, self._resolve = Engine, resolve_model
        self.threads, self.batch_size, self.beam_width = threads, batch_size, beam_width
        self.engines: dict[str, Any] = {}

    def engine(self, model: str):
        if model not in self.engines:
            # streams=None: as htr-run opens it (on the CPU with 2+ threads, two batches at once)
            self.engines[model] = self._engine_cls(self._resolve(model), threads=self.threads, streams=None)
        return self.engines[model]

    def decoders(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(label, make_decoder options) run on a set of this kind."""
        lm = "lines" if kind == "line" else "words"
        rows = [("greedy", {"name": "greedy"}),
                (f"beam{self.beam_width} + LM {lm}", {"name": "beam", "beam_width": self.beam_width, "lm": lm})]
        if kind == "digits":
            rows.append(("greedy --chars digits", {"name": "greedy", "chars": "digits"}))
        return rows

    def cli(self, model: str, options: dict[str, Any]) -> str:
        """The htr-eval command that scores the same run."""
        args = ["htr-eval", "SET", "--model", model, "--decoder", options["name"], "--threads", str(self.threads)]
        if "beam_width" in options:
            args += ["--beam-width", str(options["beam_width"])]
        if "lm" in options:
            args += ["--lm", options["lm"]]
        if "chars" in options:
            args += ["--chars", options["chars"]]
        return " ".join(args)

    def run(self, model: str, options: dict[str, Any], paths: list[Path]) -> Outcome:
        from htr.runtime.decoding import make_decoder
        from htr.runtime.pipeline import Recognizer

        engine = self.engine(model)
        opts = {k: v for k, v in options.items() if k != "name"}
        decoder = make_decoder(options["name"], engine.spec.charset, engine.spec.blank, **opts)
        recognizer = Recognizer(engine, decoder, batch_size=self.batch_size)
        list(recognizer.recognise_paths(paths[:WARMUP_IMAGES]))
        texts, failures, first = [], 0, None
        start = time.perf_counter()
        for rec in recognizer.recognise_paths(paths):
            texts.append(rec.text)
            if not rec.ok:
                failures += 1
                first = first or rec.error
        return Outcome(texts, time.perf_counter() - start, failures, first)

    def facts(self) -> dict[str, Any]:
        out = {}
        for name, engine in self.engines.items():
            source = dict(engine.spec.source)
            out[name] = {
                "file": str(engine.path), "bytes": engine.path.stat().st_size, "sha256": sha256(engine.path),
                "charset_size": len(engine.spec.charset), "streams": getattr(engine, "streams", 1),
                "trained_by": source.get("command"), "val_cer": source.get("val_cer"),
            }
        return out


class Rapid:
    """RapidOCR's text recogniser alone (no detector, no angle classifier), one image per call."""

    def __init__(self, threads: int):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as err:
            raise UsageError(
                f"rapidocr_onnxruntime is not importable ({err}): pip install -r benchmarks/requirements.txt "
                "(see the note there on --no-deps), or leave it out with --systems"
            ) from None
        self.threads = threads
        self.ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def read(self, path: Path) -> str:
        result, _ = self.ocr(str(path), use_det=False, use_cls=False)
        if not result:  # None when nothing was recognised
            return ""
        if len(result) != 1:  # one pre-cut image gives one [text, score]; anything else is a format change
            raise RuntimeError(f"expected one [text, score] for one image, got {result!r:.200}")
        return normalise_whitespace(str(result[0][0]))

    def run(self, paths: list[Path]) -> Outcome:
        for path in paths[:WARMUP_IMAGES]:
            try:
                self.read(path)
            except Exception:  # the timed pass reports it
                pass
        texts, failures, first = [], 0, None
        start = time.perf_counter()
        for path in paths:
            try:
                texts.append(self.read(path))
            except Exception as err:
                texts.append("")
                failures += 1
                first = first or f"{path}: {type(err).__name__}: {err}"
        return Outcome(texts, time.perf_counter() - start, failures, first)

    def facts(self) -> dict[str, Any]:
        import rapidocr_onnxruntime

        rec = self.ocr.text_rec
        models = sorted((Path(rapidocr_onnxruntime.__file__).parent / "models").glob("*rec*.onnx"))
        rec_model = models[0] if len(models) == 1 else None
        return {
            "package": "rapidocr_onnxruntime", "version": importlib.metadata.version("rapidocr_onnxruntime"),
            "rec_model": rec_model.name if rec_model else None,
            "rec_model_sha256": sha256(rec_model) if rec_model else None,
            "charset_size": len(rec.postprocess_op.character) - 1,  # without the CTC blank
            "rec_img_shape": list(rec.rec_image_shape), "intra_op_num_threads": self.threads,
            "call": "RapidOCR(intra_op_num_threads=N, inter_op_num_threads=1)(path, use_det=False, use_cls=False)",
        }


class Tesseract:
    """The `tesseract` command, N processes of OMP_THREAD_LIMIT=1 on N slices of a set."""

    def __init__(self, threads: int, binary: str = "tesseract"):
        path = shutil.which(binary)
        if path is None:
            raise UsageError(
                f"{binary}: not found on PATH (Debian: apt-get install -y tesseract-ocr), or leave it out with --systems"
            )
        self.binary, self.threads = path, threads
        self.env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def args(self, source: str, out: str, psm: int, whitelist: str | None) -> list[str]:
        args = [self.binary, source, out, "--psm", str(psm), "--oem", "1", "-l", "eng"]
        if whitelist:
            args += ["-c", f"tessedit_char_whitelist={whitelist}"]
        return args

    def cli(self, psm: int, whitelist: str | None) -> str:
        return "OMP_THREAD_LIMIT=1 " + shlex.join(["tesseract", "LIST.txt", "OUT"] + self.args("", "", psm, whitelist)[3:])

    def _chunk(self, paths: list[Path], psm: int, whitelist: str | None, work: Path, index: int) -> tuple[list[str], int, str | None, bool]:
        """(texts, failures, first error, fell back to one process per image)."""
        listing = work / f"list{index}.txt"
        listing.write_text("".join(f"{p.resolve()}\n" for p in paths), encoding="utf-8")
        out = work / f"out{index}"
        proc = subprocess.run(self.args(str(listing), str(out), psm, whitelist), env=self.env,
                              capture_output=True, text=True)
        pages = []
        if proc.returncode == 0 and out.with_suffix(".txt").is_file():
            pages = out.with_suffix(".txt").read_text(encoding="utf-8", errors="replace").split("\f")
        # Tesseract writes a form feed between pages (not after the last): n pages, n - 1 of them.
        if len(pages) == len(paths):
            return [normalise_whitespace(p) for p in pages], 0, None, False
        # A list run stops at the first unreadable image: read this slice one image per process.
        texts, failures, first = [], 0, None
        for path in paths:
            one = subprocess.run(self.args(str(path), "-", psm, whitelist), env=self.env, capture_output=True, text=True)
            if one.returncode != 0:
                failures += 1
                last = one.stderr.strip().splitlines()[-1:] or [""]
                first = first or f"{path}: tesseract exit {one.returncode}: {last[0]}"
                texts.append("")
            else:
                texts.append(normalise_whitespace(one.stdout.replace("\f", "")))
        return texts, failures, first, True

    def run(self, paths: list[Path], psm: int, whitelist: str | None = None) -> Outcome:
        n = len(paths)
        k = max(1, min(self.threads, n))
        bounds = [(i * n // k, (i + 1) * n // k) for i in range(k)]
        with tempfile.TemporaryDirectory(prefix="bench-tess-") as tmp:
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(k) as pool:
                parts = list(pool.map(lambda ib: self._chunk(paths[ib[1][0]:ib[1][1]], psm, whitelist, Path(tmp), ib[0]),
                                      enumerate(bounds)))
            seconds = time.perf_counter() - start
        texts = [t for part in parts for t in part[0]]
        failures = sum(p[1] for p in parts)
        first = next((p[2] for p in parts if p[2]), None)
        notes = ["a list run failed; slices re-read one image per process"] if any(p[3] for p in parts) else []
        return Outcome(texts, seconds, failures, first, notes)

    def facts(self) -> dict[str, Any]:
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        lines = (version.stdout + version.stderr).strip().splitlines()
        listed = subprocess.run([self.binary, "--list-langs"], capture_output=True, text=True)
        tessdata = None
        m = re.search(r'"([^"]+)"', listed.stdout + listed.stderr)
        if m:
            tessdata = Path(m.group(1))
        eng = tessdata / "eng.traineddata" if tessdata else None
        return {
            "binary": self.binary, "version": lines[0] if lines else None, "libraries": lines[1:3],
            "eng_traineddata": str(eng) if eng and eng.is_file() else None,
            "eng_traineddata_bytes": eng.stat().st_size if eng and eng.is_file() else None,
            "eng_traineddata_sha256": sha256(eng) if eng and eng.is_file() else None,
            "debian_packages": _dpkg_versions(["tesseract-ocr", "tesseract-ocr-eng", "libtesseract5"]),
            "processes": self.threads, "OMP_THREAD_LIMIT": 1, "oem": 1,
        }


def _dpkg_versions(names: list[str]) -> dict[str, str]:
    if shutil.which("dpkg-query") is None:
        return {}
    out = {}
    for name in names:
        q = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
        if q.returncode == 0 and q.stdout:
            out[name] = q.stdout
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- the run --------------------------------------------------------------------------
def run_all(sets: list[BenchSet], systems: list[str], models: dict[str, str], threads: int,
            batch_size: int, beam_width: int, log: Callable[[str], None]) -> tuple[list[dict], dict, dict]:
    """Every (system, decoder) on every set: result rows, per-set predictions, facts."""
    htr = Htr(threads, batch_size, beam_width) if "htr" in systems else None
    rapid = Rapid(threads) if "rapidocr" in systems else None
    tess = Tesseract(threads) if "tesseract" in systems else None
    if htr:  # open the models now: a bad --word-model / --line-model fails before anything runs
        for kind in dict.fromkeys("line" if s.kind == "line" else "word" for s in sets):
            htr.engine(models[kind])
    rows: list[dict] = []
    predictions: dict[str, dict[str, list[str]]] = {}
    for s in sets:
        jobs: list[tuple[str, str, str, Callable[[], Outcome]]] = []
        model = models["line" if s.kind == "line" else "word"]
        if htr:
            for label, options in htr.decoders(s.kind):
                jobs.append(("htr", f"{model} {label}", htr.cli(model, options),
                             lambda o=options: htr.run(model, o, s.paths)))
        if rapid:
            jobs.append(("rapidocr", "PP-OCRv4 rec", "RapidOCR()(path, use_det=False, use_cls=False)",
                         lambda: rapid.run(s.paths)))
        if tess:
            psm = TESSERACT_PSM[s.kind]
            jobs.append(("tesseract", f"LSTM psm {psm}", tess.cli(psm, None), lambda p=psm: tess.run(s.paths, p)))
            if s.kind == "digits":
                jobs.append(("tesseract", f"LSTM psm {psm} digits whitelist", tess.cli(psm, DIGIT_CHARS),
                             lambda p=psm: tess.run(s.paths, p, DIGIT_CHARS)))
        predictions[s.name] = {}
        for system, decoder, command, job in jobs:
            log(f"{s.name}: {system} {decoder} on {len(s.paths)} images ...")
            outcome = job()
            if len(outcome.texts) != len(s.texts):
                raise RuntimeError(f"{system} {decoder} returned {len(outcome.texts)} texts for {len(s.texts)} images")
            row = {
                "set": s.name, "kind": s.kind, "system": system, "decoder": decoder, "command": command,
                "images": len(s.paths), "seconds": round(outcome.seconds, 3),
                "images_per_s": len(s.paths) / outcome.seconds if outcome.seconds > 0 else None,
                "failures": outcome.failures, "first_error": outcome.first_error, "notes": outcome.notes,
                "whitespace_changed": sum(normalise_whitespace(t) != t for t in outcome.texts),
                **score(s.texts, outcome.texts),
            }
            rows.append(row)
            predictions[s.name][f"{system}: {decoder}"] = outcome.texts
            log(f"  CER {100 * row['cer']:.2f}%  WER {100 * row['wer']:.2f}%  "
                f"{row['images_per_s']:.1f} images/s  ({outcome.seconds:.1f} s, {outcome.failures} failed)")
    facts = {
        "htr": htr.facts() if htr else None,
        "rapidocr": rapid.facts() if rapid else None,
        "tesseract": tess.facts() if tess else None,
    }
    return rows, predictions, facts


def done_when(rows: list[dict]) -> list[dict]:
    """Issue 15's checks, per set, from the rows of one run.

    - htr greedy CER <= 0.75 x the better peer's CER, on word and line sets (needs both peers);
    - htr greedy CER <= 10% (words), 12% (lines), 4% (digits; plain greedy, no --chars).
    """
    checks = []
    for name in dict.fromkeys(r["set"] for r in rows):
        on_set = [r for r in rows if r["set"] == name]
        kind = on_set[0]["kind"]
        greedy = next((r for r in on_set if r["system"] == "htr" and r["decoder"].endswith(" greedy")), None)
        if greedy is None:
            continue
        limit = MAX_GREEDY_CER[kind]
        checks.append({
            "set": name, "check": f"htr greedy CER <= {100 * limit:.0f}%", "value": greedy["cer"],
            "threshold": limit, "passed": greedy["cer"] <= limit,
        })
        if kind in ("word", "line"):
            peers = {}
            for system in ("rapidocr", "tesseract"):
                plain = [r["cer"] for r in on_set if r["system"] == system and "whitelist" not in r["decoder"]]
                if plain:
                    peers[system] = min(plain)
            check = {"set": name, "check": f"htr greedy CER <= {BEAT_FACTOR} x best peer CER (beats both by >= 25%)",
                     "value": greedy["cer"], "peers": peers}
            if len(peers) == 2:
                check["threshold"] = BEAT_FACTOR * min(peers.values())
                check["passed"] = greedy["cer"] <= check["threshold"]
                check["relative_to_best_peer"] = greedy["cer"] / min(peers.values()) if min(peers.values()) else None
            else:
                check["threshold"] = None
                check["passed"] = None  # not computed: a peer was left out
            checks.append(check)
    return checks


def machine(threads: int) -> dict[str, Any]:
    import numpy
    import onnxruntime

    try:
        import cv2
        cv2_version = cv2.__version__
    except ImportError:
        cv2_version = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "host": platform.node(), "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cores": cores,
        "threads": threads, "platform": platform.platform(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__, "opencv": cv2_version,
        "htr": _version("htr"),
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- the report -----------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def render_markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    out = [
        "# Peer benchmark: htr vs RapidOCR's recogniser vs Tesseract 5 (issue 15)",
        "",
        f"Run {doc['started']} to {doc['finished']} ({doc['wall_s']:.0f} s). Written by `benchmarks/bench_accuracy.py`.",
        "",
        "## Machine",
        "",
        f"- {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cores']} usable), {m['platform']}",
        f"- Python {m['python']}, onnxruntime {m['onnxruntime']}, NumPy {m['numpy']}, OpenCV {m['opencv']}, htr {m['htr']}",
        f"- Other work on the machine: {_busy(doc['load'])}. Images/s are only as steady as that load.",
        f"- Threads: {m['threads']} for every system (htr: engine threads, shared out between its streams; "
        f"RapidOCR: onnxruntime intra_op_num_threads, inter_op 1, one image per call; "
        f"Tesseract: {m['threads']} processes at once with OMP_THREAD_LIMIT=1, each on a slice of the set, "
        "its model load timed). htr and RapidOCR warm up on a few images before the clock starts.",
        "",
        "## Command",
        "",
        "```",
        doc["command"],
        "```",
        "",
        "## Sets",
        "",
        "| set | kind | images | characters | mean chars | with digits | with capitals | folder | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for s in doc["sets"]:
        out.append(f"| {s['name']} | {s['kind']} | {s['images']} | {s['chars']} | {s['mean_chars']} | "
                   f"{s['with_digits']} | {s['with_upper']} | `{s['folder']}` | {s.get('note') or ''} |")
    out += ["", "## Results", "",
            "CER and WER case-sensitive against the labels; `CER nocase` lower-cases both sides. "
            "`digits in digit-free` is the share of outputs with a digit among images whose label has none.",
            ""]
    for s in doc["sets"]:
        out += [f"### {s['name']} ({s['kind']}, {s['images']} images)", "",
                "| system | decoder | CER | CER nocase | WER | exact | digits in digit-free | images/s | failed |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in (r for r in doc["results"] if r["set"] == s["name"]):
            rate = f"{r['images_per_s']:.1f}" if r["images_per_s"] else ""
            out.append(f"| {r['system']} | {r['decoder']} | {_pct(r['cer'])} | {_pct(r['cer_nocase'])} | "
                       f"{_pct(r['wer'])} | {_pct(r['exact_match'])} | {_pct(r['invented_digits'])} | {rate} | {r['failures']} |")
        out.append("")
    out += ["## Issue 15 \"done when\" checks (this run)", "",
            "| set | check | htr greedy CER | threshold | peers' CER | verdict |", "| --- | --- | ---: | ---: | --- | --- |"]
    for c in doc["checks"]:
        peers = ", ".join(f"{k} {_pct(v)}" for k, v in c.get("peers", {}).items())
        verdict = {True: "**pass**", False: "**FAIL**", None: "not computed (a peer was left out)"}[c["passed"]]
        out.append(f"| {c['set']} | {c['check']} | {_pct(c['value'])} | {_pct(c['threshold'])} | {peers} | {verdict} |")
    out += ["", "## Systems and versions", ""]
    f = doc["facts"]
    if f.get("htr"):
        for name, e in f["htr"].items():
            out.append(f"- htr model `{name}`: `{e['file']}` ({e['bytes']:,} bytes, sha256 {e['sha256'][:12]}, "
                       f"{e['charset_size']} characters, {e['streams']} streams), trained by `{e['trained_by']}`")
    if f.get("rapidocr"):
        r = f["rapidocr"]
        out.append(f"- RapidOCR: {r['package']} {r['version']}, recogniser {r['rec_model']} (sha256 "
                   f"{(r['rec_model_sha256'] or '')[:12]}), {r['charset_size']} characters, input {r['rec_img_shape']}; "
                   f"call `{r['call']}`")
    if f.get("tesseract"):
        t = f["tesseract"]
        out.append(f"- Tesseract: {t['version']} ({', '.join(t['libraries'])}), Debian {t['debian_packages']}, "
                   f"`{t['eng_traineddata']}` ({t['eng_traineddata_bytes']:,} bytes, sha256 "
                   f"{(t['eng_traineddata_sha256'] or '')[:12]}), `--oem 1` (LSTM)")
    out += ["", "Exact per-row commands (SET: the set's folder; LIST.txt: its images, one path a line):", ""]
    for cmd in dict.fromkeys(r["command"] for r in doc["results"]):
        out.append(f"- `{cmd}`")
    out += ["", "## Fairness notes", "",
            "- All systems read the same pre-cut image files; no system is given the label's length or charset, "
            "apart from the rows that say `--chars digits` / `digits whitelist`.",
            "- RapidOCR's PP-OCRv4 recogniser reads a charset of Chinese + English (thousands of classes) and was "
            "trained on printed and scene text, not handwriting; Tesseract's `eng` LSTM model is for print. "
            "Neither was tuned for these sets; htr's models were trained on synthetic handwriting in other hands.",
            "- Scoring is case-sensitive, as the labels are; the `CER nocase` column shows how much of each "
            "system's error is letter case.",
            "- Peer output is normalised for whitespace only (runs of whitespace to one space, ends stripped). "
            "htr output is scored unchanged, as htr-eval scores it.",
            "- Tesseract runs in list mode (one model load per process); with the LSTM engine (`--oem 1`) a page's "
            "result does not depend on the pages before it.",
            ""]
    notes = [f"- {r['set']} / {r['system']} {r['decoder']}: {n}" for r in doc["results"] for n in r["notes"]]
    notes += [f"- {r['set']} / {r['system']} {r['decoder']}: {r['failures']} failed, first: {r['first_error']}"
              for r in doc["results"] if r["failures"]]
    if notes:
        out += ["## Anomalies in this run", "", *notes, ""]
    out += ["## Examples (first images of each set)", ""]
    for s in doc["sets"]:
        ex = doc["examples"].get(s["name"], [])
        if not ex:
            continue
        labels = list(ex[0]["outputs"])
        out += [f"### {s['name']}", "", "| label | " + " | ".join(labels) + " |",
                "| --- | " + " | ".join("---" for _ in labels) + " |"]
        for e in ex:
            out.append("| " + " | ".join(_cell(x) for x in [e["label"], *e["outputs"].values()]) + " |")
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else "(empty)"


def _busy(load: dict[str, Any]) -> str:
    parts = []
    if load.get("busy_cpus_before") is not None:
        parts.append(f"{load['busy_cpus_before']} CPUs busy before the run")
    if load.get("busy_cpus_after") is not None:
        parts.append(f"{load['busy_cpus_after']} after")
    if load.get("loadavg_before"):
        parts.append(f"load average {load['loadavg_before'][0]:.2f} before, {load['loadavg_after'][0]:.2f} after")
    return ", ".join(parts) or "unknown"


def build_doc(args_line: str, sets: list[BenchSet], notes: dict[str, str], rows: list[dict],
              predictions: dict, facts: dict, mach: dict, load: dict, started: str, finished: str, wall: float) -> dict:
    described = []
    for s in sets:
        d = s.describe()
        d["note"] = notes.get(s.name)
        described.append(d)
    examples = {}
    for s in sets:
        outs = predictions.get(s.name, {})
        examples[s.name] = [
            {"path": str(s.paths[i].relative_to(s.root)) if s.paths[i].is_relative_to(s.root) else str(s.paths[i]),
             "label": s.texts[i], "outputs": {k: v[i] for k, v in outs.items()}}
            for i in range(min(EXAMPLES, len(s.paths)))
        ]
    return {
        "benchmark": "bench_accuracy", "started": started, "finished": finished, "wall_s": wall,
        "command": args_line, "machine": mach, "load": load, "sets": described, "results": rows,
        "checks": done_when(rows), "facts": facts, "examples": examples,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--words", action="append", type=Path, default=[], help="labelled folder of word images (repeatable)")
    p.add_argument("--lines", action="append", type=Path, default=[], help="labelled folder of line images (repeatable)")
    p.add_argument("--digits", action="append", type=Path, default=[], help="labelled folder of digit-string images (repeatable)")
    p.add_argument("--word-model", default="word", help="htr model for word and digit sets (bundled name or .onnx)")
    p.add_argument("--line-model", default="line", help="htr model for line sets (bundled name or .onnx)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--threads", type=int, default=None, help="threads for every system (default: usable cores)")
    p.add_argument("--batch-size", type=int, default=32, help="htr batch size (htr-run's default: 32)")
    p.add_argument("--beam-width", type=int, default=10, help="htr beam width (htr-run's default: 10)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each set (quick runs)")
    p.add_argument("--note", action="append", default=[], metavar="SET=TEXT",
                   help="a description of a set for the report, e.g. 'test-words=htr-synth ... --seed 4242'")
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                   help=f"report path without suffix: writes .md and .json (default {DEFAULT_REPORT})")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = set(args.systems) - set(SYSTEMS)
    if bad or not args.systems:
        p.error(f"--systems: unknown {', '.join(sorted(bad)) or '(none given)'}; choose from {', '.join(SYSTEMS)}")
    if not (args.words or args.lines or args.digits):
        p.error("give at least one set: --words DIR, --lines DIR or --digits DIR")
    for opt in ("threads", "batch_size", "beam_width", "limit"):
        if getattr(args, opt) is not None and getattr(args, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} must be at least 1")
    args.notes = {}
    for n in args.note:
        name, sep, text = n.partition("=")
        if not sep:
            p.error(f"--note: expected SET=TEXT, got {n!r}")
        args.notes[name] = text
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        threads = args.threads or len(os.sched_getaffinity(0))
    except AttributeError:
        threads = os.cpu_count() or 1

    def log(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    try:
        sets = ([load_set(d, "word", args.limit) for d in args.words]
                + [load_set(d, "line", args.limit) for d in args.lines]
                + [load_set(d, "digits", args.limit) for d in args.digits])
        names = [s.name for s in sets]
        if len(set(names)) != len(names):
            raise UsageError(f"two sets share a folder name ({', '.join(names)}): rename one")
        unknown_notes = set(args.notes) - set(names)
        if unknown_notes:
            raise UsageError(f"--note names no set given: {', '.join(sorted(unknown_notes))}")
        # Open everything before anything is timed: missing peers fail here, at once.
        load = {"busy_cpus_before": busy_cpus(), "loadavg_before": list(os.getloadavg())}
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        rows, predictions, facts = run_all(sets, args.systems, {"word": args.word_model, "line": args.line_model},
                                           threads, args.batch_size, args.beam_width, log)
    except UsageError as err:
        sys.stderr.write(f"bench_accuracy: error: {err}\n")
        return 2
    except Exception as err:
        from htr.runtime.errors import HtrError

        if isinstance(err, HtrError):  # e.g. a model that cannot be opened
            sys.stderr.write(f"bench_accuracy: error: {err}\n")
            return 2
        raise
    wall = time.perf_counter() - t0
    finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load.update(busy_cpus_after=busy_cpus(), loadavg_after=list(os.getloadavg()))
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "benchmarks/bench_accuracy.py",
                                                *(argv if argv is not None else sys.argv[1:])])
    doc = build_doc(command, sets, args.notes, rows, predictions, facts, machine(threads), load, started, finished, wall)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    md, js = args.report.with_suffix(".md"), args.report.with_suffix(".json")
    js.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md.write_text(render_markdown(doc) + "\n", encoding="utf-8")
    log(f"wrote {md} and {js} ({wall:.0f} s)")
    for c in doc["checks"]:
        verdict = {True: "pass", False: "FAIL", None: "not computed"}[c["passed"]]
        log(f"  {c['set']}: {c['check']}: {_pct(c['value'])} vs {_pct(c['threshold'])}: {verdict}")
    failed = sum(r["failures"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
