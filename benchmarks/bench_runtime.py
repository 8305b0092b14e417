"""Model and end-to-end speed: the seed notebook's pipeline vs htr's runtime, same weights.

    python benchmarks/bench_runtime.py                      # full run (issue 6), ~25 min on 2 cores
    python benchmarks/bench_runtime.py --quick              # a few minutes
    python benchmarks/bench_runtime.py --keras lean=/tmp/train/word/model.keras --keras seed-word=seed.h5

For each model (default: seed-word, seed-line and lean; untrained unless `--keras
LABEL=PATH` gives trained weights, any file htr-export reads):

1. Export with `htr-export` (fp32; int8: static QDQ convolutions calibrated on real word
   or line images rendered in training hands + int8 LSTM weights; lstm8: float32 with
   int8 LSTM weights; fp16 when a CUDA provider is present).
2. Model only, batch sizes 1..64: Keras `predict_on_batch` vs onnxruntime fp32, int8 and
   lstm8 (vs CUDA fp32/fp16 and TensorRT fp16 when onnxruntime offers them): images/s, p50/p95
   latency, and the share of the machine's FP32 peak (the best rate of large onnxruntime
   MatMuls measured in the same run, with the same thread settings as the models).
3. End to end on images written to disk in held-out hands (1,000 words for word models,
   300 lines for line models): the seed notebook's pipeline (cv2.imread, its
   `process_image`, Keras `predict` in batches of 32, greedy `ctc_decode` with the blank
   last) vs htr's `Recognizer` (what `htr-run` runs) for each precision and decoder:
   images/s, CER/WER on the same images, ratio to the seed pipeline, and the share of
   the raw model throughput (the same engine timed alone on exactly the batches the
   Recognizer built, as many at once as it runs them, pass for pass with the pipeline).
   End to end, engines are opened as htr-run opens them (`--streams`: on the CPU, two
   batches at once, each on half the threads); model-only rows use one stream.

FLOPs are counted as 2 x multiply-accumulates everywhere: `htr.train.models.count_flops`
returns 2 x MACs per image, and a MatMul (M x K) @ (K x N) is 2MKN.

Every figure is a median over repeats after a warm-up; ratios are against baselines from
the same run. Writes benchmarks/reports/<machine>-<date>-runtime.{md,json} and PNG plots
(see bench_runtime_report.py, which can also re-render a report from its JSON). Needs the
`train` and `export` extras; `make bench` installs them and runs every benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runtime_report as report  # noqa: E402
from machine_facts import busy_cpus  # noqa: E402

HERE = Path(__file__).resolve().parent
REPORTS = HERE / "reports"
BIN = Path(sys.executable).parent
DEFAULT_ARCHS = ("seed-word", "seed-line", "lean")
#: The line-level seed's input is 64 x 800: its width is 12.5 x its height.
LINE_SEED_ASPECT = 800 / 64
#: The seed notebook predicts in batches of 32, and htr-run's default batch is 32 too.
SEED_BATCH = 32
#: Images that warm htr's pipeline up before it is timed.
WARMUP_IMAGES = 2 * SEED_BATCH
#: Data sets rendered by htr-synth: evaluation in held-out hands, calibration in training hands.
EVAL_SEED, CALIBRATION_SEED = 2026, 7


# ---- the seed notebook, reproduced ----------------------------------------------------
def process_image(img):
    """The seed notebook's process_image, verbatim apart from names."""
    w, h = img.shape
    new_w = 32
    new_h = int(h * (new_w / w))
    img = cv2.resize(img, (new_h, new_w))
    w, h = img.shape
    img = img.astype("float32")
    if w < 32:
        add_zeros = np.full((32 - w, h), 255)
        img = np.concatenate((img, add_zeros))
        w, h = img.shape
    if h < 128:
        add_zeros = np.full((w, 128 - h), 255)
        img = np.concatenate((img, add_zeros), axis=1)
        w, h = img.shape
    if h > 128 or w > 32:
        dim = (128, 32)
        img = cv2.resize(img, dim)
    img = cv2.subtract(255, img)
    img = np.expand_dims(img, axis=2)
    img = img / 255
    return img


def process_image_at(img, height: int, width: int):
    """`process_image` with its 32 x 128 as parameters (for the line seed's 64 x 800).

    The line seed's own code is not in this repository; this is the word notebook's
    recipe at the line input size. `check_process_image_at` proves that at 32 x 128 it
    gives exactly what the verbatim copy gives.
    """
    rows, cols = img.shape
    new_cols = int(cols * (height / rows))
    img = cv2.resize(img, (new_cols, height))
    rows, cols = img.shape
    img = img.astype("float32")
    if rows < height:
        img = np.concatenate((img, np.full((height - rows, cols), 255)))
        rows, cols = img.shape
    if cols < width:
        img = np.concatenate((img, np.full((rows, width - cols), 255)), axis=1)
        rows, cols = img.shape
    if cols > width or rows > height:
        img = cv2.resize(img, (width, height))
    img = cv2.subtract(255, img)
    return np.expand_dims(img, axis=2) / 255


def check_process_image_at(paths: list[Path]) -> None:
    for path in paths:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if not np.array_equal(process_image(grey), process_image_at(grey, 32, 128)):
            raise RuntimeError(f"process_image_at(32, 128) differs from process_image on {path}")


def seed_pipeline(paths: list[Path], keras_model, charset, process: Callable) -> list[str]:
    """Read all, process_image each, predict in batches of 32, greedy ctc_decode (blank last)."""
    import keras

    images = [process(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in paths]
    prediction = keras_model.predict(np.asarray(images), batch_size=SEED_BATCH, verbose=0)
    lengths = np.ones(prediction.shape[0], dtype="int32") * prediction.shape[1]
    decoded, _ = keras.ops.ctc_decode(prediction, lengths, strategy="greedy", mask_index=prediction.shape[2] - 1)
    out = keras.ops.convert_to_numpy(decoded[0])
    return ["".join(charset[int(c)] for c in row if 0 <= c < len(charset)) for row in out]


# ---- plan, timing, logging ---------------------------------------------------------------
@dataclass(frozen=True)
class Repeats:
    """How often to run a timed call: `warmup` untimed runs, then at least `min_runs`
    and, while less than `min_seconds` have passed, more up to `max_runs`."""

    warmup: int
    min_runs: int
    max_runs: int
    min_seconds: float


@dataclass(frozen=True)
class Plan:
    name: str
    batches: tuple[int, ...]
    word_images: int
    line_images: int
    calibration_words: int
    calibration_lines: int
    model_repeats: Repeats
    e2e_repeats: Repeats
    peak_repeats: int


#: End-to-end passes: at least 3, more (up to 9) while under 20 s, because a pass over
#: 1,000 small word images takes about a second and this VM varies by 30% between passes.
FULL = Plan("full", (1, 2, 4, 8, 16, 32, 64), 1000, 300, 200, 50, Repeats(1, 3, 50, 2.0), Repeats(0, 3, 9, 20.0), 5)
QUICK = Plan("quick", (1, 8, 32), 200, 40, 64, 16, Repeats(1, 3, 20, 0.5), Repeats(0, 3, 3, 0.0), 3)

_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def measure(fn: Callable[[], Any], repeats: Repeats) -> list[float]:
    """Seconds per call of `fn` after warm-up (see `Repeats`)."""
    for _ in range(repeats.warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats.min_runs or (
        len(times) < repeats.max_runs and time.perf_counter() - start < repeats.min_seconds
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def interleaved(fns: list[Callable[[], Any]], repeats: Repeats) -> tuple[list[list[float]], list[Any]]:
    """Rounds of `fns` in turn (so each sees the same moments of a noisy machine), counted
    as `Repeats` counts runs; seconds of every call per fn, and each fn's last result."""
    for _ in range(repeats.warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None] * len(fns)
    start = time.perf_counter()
    while len(times[0]) < repeats.min_runs or (
        len(times[0]) < repeats.max_runs and time.perf_counter() - start < repeats.min_seconds
    ):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return times, results


# ---- the machine -------------------------------------------------------------------------
#: CPU flags that decide which kernels onnxruntime and TensorFlow can use.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def describe_machine() -> dict:
    info: dict[str, Any] = {"hostname": platform.node(), "os": platform.platform(), "python": platform.python_version(),
                            "logical_cpus": os.cpu_count()}
    info.update(_cpuinfo())
    info["memory_gb"] = _memory_gb()
    info["libraries"] = _versions()
    import onnxruntime

    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    info["gpu"] = _nvidia_smi()
    info["htr_commit"] = _git_commit()
    return info


def _cpuinfo() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu": platform.processor() or platform.machine()}
    first = text.split("\n\n", 1)[0]
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}
    flags = set(fields.get("flags", "").split())
    cores = {(block_field(b, "physical id"), block_field(b, "core id")) for b in text.split("\n\n") if b.strip()}
    return {
        "cpu": fields.get("model name", platform.processor()),
        "cpu_mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
        "physical_cores": len(cores) if all(c != (None, None) for c in cores) else None,
        "hypervisor": "hypervisor" in flags,
        "cpu_flags": {f: f in flags for f in CPU_FLAGS},
        "simd_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse", "f16c"))),
    }


def block_field(block: str, name: str) -> str | None:
    for line in block.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _memory_gb() -> float | None:
    try:
        kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        return round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        return None


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "opencv-python-headless", "opencv-python",
                 "tensorflow", "keras", "tf2onnx", "onnxconverter-common", "htr"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _nvidia_smi() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                       capture_output=True, text=True)
    return [l.strip() for l in r.stdout.splitlines() if l.strip()] if r.returncode == 0 else []


def _git_commit() -> str | None:
    r = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or None


def keras_device() -> str:
    """Where Keras runs: a GPU if TensorFlow sees one (memory grown on demand, so
    onnxruntime's CUDA provider can share it), else the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return "gpu" if gpus else "cpu"


def session_options(threads: int | None):
    """The session options htr's Engine uses (so the MatMul peak and the models agree)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


#: (batch, M, K, N) of the MatMuls that measure the FP32 peak; the best rate counts.
PEAK_SHAPES = ((1, 4096, 4096, 4096), (8, 1024, 1024, 1024), (1, 2048, 2048, 2048))


def matmul_peak(runs: int, threads: int | None) -> dict:
    """The machine's practical FP32 peak: the best rate of large onnxruntime MatMuls.

    B is a constant (an initializer), like a model's weights, so onnxruntime may pre-pack
    it as it does for the models' Conv/MatMul/LSTM weights.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    trials = []
    rng = np.random.default_rng(0)
    for b, m, k, n in PEAK_SHAPES:
        lead = [b] if b > 1 else []
        weights = numpy_helper.from_array(rng.standard_normal(tuple(lead + [k, n]), dtype=np.float32), "b")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, lead + [m, k])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, lead + [m, n])],
            initializer=[weights],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        sess = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(threads),
                                    providers=["CPUExecutionProvider"])
        feeds = {"a": rng.standard_normal(tuple(lead + [m, k]), dtype=np.float32)}
        times = measure(lambda: sess.run(None, feeds), Repeats(1, runs, runs, 0.0))
        flop = 2 * b * m * k * n
        trials.append({"shape": f"{b} x ({m}x{k} @ {k}x{n})", "flop": flop, "runs": len(times),
                       "gflops_best": flop / min(times) / 1e9, "gflops_median": flop / float(np.median(times)) / 1e9})
        log(f"peak: {trials[-1]['shape']}: best {trials[-1]['gflops_best']:.1f} GFLOP/s")
    return {"gflops": max(t["gflops_best"] for t in trials), "trials": trials,
            "threads": threads if threads is not None else "onnxruntime default (one per physical core)"}


# ---- data -------------------------------------------------------------------------------
def synth_set(folder: Path, kind: str, count: int, seed: int, split: str) -> Path:
    """Images written to disk by htr-synth, with labels.tsv (reused when already there)."""
    if not (folder / "labels.tsv").exists():
        log(f"rendering {count} {kind} ({split} hands) into {folder}")
        subprocess.run([str(BIN / "htr-synth"), str(folder), "--kind", kind, "--count", str(count),
                        "--seed", str(seed), "--split", split], check=True, stdout=subprocess.DEVNULL)
    return folder


@dataclass
class DataSets:
    """The evaluation and calibration sets, rendered on first use."""

    work: Path
    plan: Plan
    _cache: dict = field(default_factory=dict)

    def evaluation(self, kind: str):
        from htr.runtime.datasets import load_labelled

        count = self.plan.word_images if kind == "word" else self.plan.line_images
        key = ("eval", kind)
        if key not in self._cache:
            folder = synth_set(self.work / f"{kind}s-heldout-{EVAL_SEED}-{count}", f"{kind}s", count, EVAL_SEED, "heldout")
            self._cache[key] = load_labelled(folder).samples
        return self._cache[key]

    def calibration(self, kind: str) -> Path:
        """Calibration images for int8 (training hands, never the evaluation images)."""
        count = self.plan.calibration_words if kind == "word" else self.plan.calibration_lines
        return synth_set(self.work / f"{kind}s-train-{CALIBRATION_SEED}-{count}", f"{kind}s", count,
                         CALIBRATION_SEED, "train")


# ---- the models under test --------------------------------------------------------------
@dataclass
class Subject:
    """One model: its Keras weights, their ONNX exports and what the benchmark needs."""

    label: str
    keras_path: Path
    trained: bool
    keras_model: Any = None
    spec: Any = None
    kind: str = "word"  # "word" or "line": whether the charset has a space
    width: int = 0  # input width of the model-only timings
    flops: int = 0  # per image at `width` (2 x MACs)
    onnx: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        src = dict(self.spec.source) if self.spec is not None else {}
        return {
            "label": self.label, "keras": str(self.keras_path), "trained": self.trained, "kind": self.kind,
            "architecture": src.get("architecture"), "params": int(self.keras_model.count_params()),
            "height": self.spec.input.height, "input_width": self.spec.input.width, "bench_width": self.width,
            "flops_per_image": self.flops, "onnx": {k: str(v) for k, v in self.onnx.items()},
            "onnx_mb": {k: round(v.stat().st_size / 1e6, 2) for k, v in self.onnx.items()},
            "training": {k: src[k] for k in ("data", "epochs", "val_cer", "train_samples") if k in src},
            "notes": self.notes,
        }


def parse_keras_args(values: list[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"bench_runtime: --keras expects LABEL=PATH (e.g. lean=model.keras), got {value!r}")
        if not Path(path).is_file():
            raise SystemExit(f"bench_runtime: --keras {label}: no such file {path}")
        out[label] = Path(path)
    return out


def untrained_keras(arch: str, work: Path) -> Path:
    """`arch` as built (random weights), saved with its charset sidecar for htr-export."""
    from htr.train import models as arch_models

    path = work / f"{arch}-untrained.keras"
    if not path.exists():
        import keras

        keras.utils.set_random_seed(0)
        built = arch_models.build(arch)
        built.inference.save(path)
        built.spec.save_json(path.with_suffix(".json"))
    return path


def export(subject: Subject, out: Path, calibrate: Callable[[str], Path], fp16: bool) -> None:
    """htr-export to fp32, int8 and lstm8 (and fp16), once per weights file and calibration
    set; failures become notes."""
    from htr.export.convert import sha256

    calibration = calibrate("line" if _charset_has_space(subject.keras_path) else "word")
    folder = out / f"{subject.label}-{sha256(subject.keras_path)[:12]}-{calibration.name}-v2{'-fp16' if fp16 else ''}"
    folder.mkdir(parents=True, exist_ok=True)
    fp32, log_file = folder / "model.onnx", folder / "export.log"
    wanted = {"fp32": fp32, "int8": fp32.with_suffix(".int8.onnx"), "lstm8": fp32.with_suffix(".lstm8.onnx")}
    if fp16:
        wanted["fp16"] = fp32.with_suffix(".fp16.onnx")
    if not (log_file.exists() and fp32.exists()):  # exported (or tried) before: reuse
        # htr-synth writes images/0000/..., and --calibrate takes folders without recursing
        folders = sorted(p for p in (calibration / "images").iterdir() if p.is_dir())
        log(f"{subject.label}: htr-export {subject.keras_path.name} ({', '.join(wanted)})")
        # -o names the model written: one htr-export per precision.
        extra = {"fp32": [], "int8": ["--int8", "--calibrate", *map(str, folders)], "lstm8": ["--lstm8"], "fp16": ["--fp16"]}
        logged = []
        for kind, path in wanted.items():
            cmd = [str(BIN / "htr-export"), str(subject.keras_path), "-o", str(path), *extra[kind]]
            r = subprocess.run(cmd, capture_output=True, text=True)
            lines = [l for l in (r.stdout + r.stderr).splitlines() if "htr-export" in l or l.startswith(("wrote", "  "))]
            logged.append(f"exit {r.returncode}: {' '.join(cmd)}\n" + "\n".join(lines))
        log_file.write_text("\n".join(logged) + "\n")
    text = log_file.read_text()
    if not fp32.exists():
        raise RuntimeError(f"htr-export failed for {subject.keras_path}: {text.strip().splitlines()[-1]}")
    subject.onnx = {k: p for k, p in wanted.items() if p.exists()}
    for line in text.splitlines():
        if line.startswith(("  parity", "wrote int8", "wrote lstm8", "wrote fp16", "htr-export")):
            subject.notes.append(" ".join(line.split()))
    for k in wanted:
        if k not in subject.onnx:
            subject.notes.append(f"no {k} model: htr-export failed (see {log_file})")


def _charset_has_space(keras_path: Path) -> bool:
    from htr.export.convert import find_sidecar

    sidecar = find_sidecar(keras_path)
    return sidecar is not None and " " in json.loads(sidecar.read_text()).get("htr.charset", [])


def prepare(label: str, keras_path: Path, trained: bool, data: DataSets, work: Path, fp16: bool) -> Subject:
    from htr.export import keras_model as keras_loader
    from htr.runtime import Engine, Preprocessor, load_image
    from htr.train.models import count_flops

    subject = Subject(label, keras_path, trained)
    export(subject, work, data.calibration, fp16)
    subject.keras_model = keras_loader.load(keras_path).model
    subject.spec = Engine(subject.onnx["fp32"]).spec
    subject.kind = "line" if " " in subject.spec.charset else "word"
    if subject.spec.input.width is not None:
        subject.width = subject.spec.input.width
    else:  # the median width of the evaluation images after preprocessing
        pre = Preprocessor.from_spec(subject.spec)
        widths = [pre.resize(load_image(s.path)).shape[1] for s in data.evaluation(subject.kind)]
        subject.width = int(np.median(widths)) // pre.policy.width_multiple * pre.policy.width_multiple
    subject.flops = count_flops(subject.keras_model, subject.width)
    if not trained:
        subject.notes.append("untrained weights (as built): speeds are real, CER is meaningless")
    return subject


# ---- backends ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """One way of running an exported model: onnxruntime provider x model file."""

    name: str  # e.g. "ort-cpu-int8"
    provider: str  # htr's --provider: cpu, cuda, tensorrt
    precision: str  # fp32, int8, fp16
    model: str  # key of Subject.onnx

    @property
    def on_cpu(self) -> bool:
        return self.provider == "cpu"


def backends(available: list[str]) -> list[Backend]:
    out = [Backend("ort-cpu-fp32", "cpu", "fp32", "fp32"), Backend("ort-cpu-int8", "cpu", "int8", "int8"),
           Backend("ort-cpu-lstm8", "cpu", "lstm8", "lstm8")]
    if "CUDAExecutionProvider" in available:
        out += [Backend("ort-cuda-fp32", "cuda", "fp32", "fp32"), Backend("ort-cuda-fp16", "cuda", "fp16", "fp16")]
    if "TensorrtExecutionProvider" in available:
        out.append(Backend("ort-tensorrt-fp16", "tensorrt", "fp16", "fp32"))
    return out


#: TensorRT builds an engine per input shape unless given a range: batches up to this, any width.
TRT_MAX_BATCH = 64


def tensorrt_options(subject: Subject, work: Path) -> list[dict]:
    """One optimisation profile covering every batch and width the benchmark feeds (no
    engine rebuild per shape), fp16, engines cached under WORK/trt."""
    import onnx

    name = onnx.load(str(subject.onnx["fp32"]), load_external_data=False).graph.input[0].name
    h, pol = subject.spec.input.height, subject.spec.preprocess
    w_min, w_max = (subject.width, subject.width) if subject.spec.input.width else (pol.min_width, pol.max_width)
    trt = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(work / "trt"),
           "trt_profile_min_shapes": f"{name}:1x{h}x{w_min}x1",
           "trt_profile_opt_shapes": f"{name}:{SEED_BATCH}x{h}x{subject.width}x1",
           "trt_profile_max_shapes": f"{name}:{TRT_MAX_BATCH}x{h}x{w_max}x1"}
    return [trt, {}, {}]  # TensorRT, then its CUDA and CPU fallbacks


def open_engines(subject: Subject, wanted: list[Backend], threads: int | None, work: Path,
                 streams: int | None = 1) -> dict[Backend, Any]:
    """One Engine per backend; streams=None picks them as htr-run does."""
    from htr.runtime import Engine

    engines = {}
    for b in wanted:
        if b.model not in subject.onnx:
            continue
        try:
            options = tensorrt_options(subject, work) if b.provider == "tensorrt" else None
            engines[b] = Engine(subject.onnx[b.model], provider=b.provider, threads=threads, streams=streams,
                                provider_options=options)
        except Exception as err:  # one backend failing must not stop the others
            subject.notes.append(f"{b.name}: cannot open ({str(err).splitlines()[0][:200]})")
    return engines


# ---- 1. model only ----------------------------------------------------------------------
def timing_row(times: list[float], batch: int, subject: Subject, backend: str, peak_gflops: float | None) -> dict:
    t = np.asarray(times)
    rate = batch / float(np.median(t))
    return {
        "model": subject.label, "backend": backend, "batch": batch, "runs": len(times),
        "images_per_s": rate, "p50_ms": 1e3 * float(np.median(t)), "p95_ms": 1e3 * float(np.percentile(t, 95)),
        "peak_share": rate * subject.flops / (peak_gflops * 1e9) if peak_gflops else None,
    }


def bench_model_only(subject: Subject, engines: dict, plan: Plan, peak_gflops: float, keras_on_cpu: bool) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for batch in plan.batches:
        x = rng.random((batch, subject.spec.input.height, subject.width, 1), dtype=np.float32)
        times = measure(lambda: subject.keras_model.predict_on_batch(x), plan.model_repeats)
        rows.append(timing_row(times, batch, subject, "keras", peak_gflops if keras_on_cpu else None))
        for backend, engine in engines.items():
            times = measure(lambda: engine.run(x), plan.model_repeats)
            rows.append(timing_row(times, batch, subject, backend.name, peak_gflops if backend.on_cpu else None))
        log(f"{subject.label} batch {batch}: " + ", ".join(
            f"{r['backend']} {r['images_per_s']:.1f}/s" for r in rows if r["batch"] == batch))
    return rows


# ---- 2. end to end -------------------------------------------------------------------------
class RecordingEngine:
    """Stands in for an Engine inside a Recognizer and keeps the batches it is given, so
    the raw model can be timed on exactly the batches the pipeline built."""

    def __init__(self, engine):
        self.engine, self.spec, self.path, self.streams = engine, engine.spec, engine.path, engine.streams
        self.recording = False
        self.batches: list[np.ndarray] = []

    def run(self, pixels: np.ndarray) -> np.ndarray:
        if self.recording:
            self.batches.append(pixels)
        return self.engine.run(pixels)


def run_batches(engine, batches: list[np.ndarray]) -> None:
    """The engine alone on these batches, as many at once as the Recognizer runs them."""
    if engine.streams == 1:
        for b in batches:
            engine.run(b)
        return
    with ThreadPoolExecutor(engine.streams) as pool:
        list(pool.map(engine.run, batches))


def error_row(refs: list[str], hyps: list[str]) -> dict:
    from htr.runtime.metrics import error_rates

    rates = error_rates(zip(refs, hyps))
    return {"cer": rates.cer, "wer": rates.wer}


def bench_seed(subject: Subject, samples, plan: Plan) -> dict:
    """The seed notebook's pipeline with this model's Keras weights."""
    paths, refs = [s.path for s in samples], [s.text for s in samples]
    height = subject.spec.input.height
    width = subject.spec.input.width or (128 if subject.kind == "word" else round(LINE_SEED_ASPECT * height))
    if (height, width) == (32, 128):
        check_process_image_at(paths[:20])
        process = process_image
    else:
        process = lambda img: process_image_at(img, height, width)  # noqa: E731
    run = lambda p: seed_pipeline(p, subject.keras_model, subject.spec.charset, process)  # noqa: E731
    run(paths[:SEED_BATCH + len(paths) % SEED_BATCH])  # the batch shapes of the timed runs: no retracing there
    (times,), (texts,) = interleaved([lambda: run(paths)], plan.e2e_repeats)
    row = {"model": subject.label, "data": f"{subject.kind}s", "images": len(paths), "pipeline": "seed",
           "backend": "keras", "precision": "fp32", "decoder": "ctc_decode greedy", "input": f"{height}x{width}",
           "runs": len(times), "images_per_s": len(paths) / float(np.median(times)), **error_row(refs, texts)}
    log(f"{subject.label} seed pipeline: {row['images_per_s']:.1f} img/s, CER {100 * row['cer']:.2f}%")
    return row


def make_decoder_for(name: str, subject: Subject):
    """The decoder htr-run builds for --decoder NAME (the lexicon mode from the charset)."""
    from htr.runtime.decoding import build_decoder, decoder_options

    return build_decoder(decoder_options(name), subject.spec.charset, subject.spec.blank)


def bench_htr(subject: Subject, backend: Backend, engine, decoders: list[str], samples, plan: Plan,
              batch_size: int) -> list[dict]:
    """htr's Recognizer (what htr-run runs) per decoder; the raw model on the same batches."""
    from htr.runtime import Recognizer

    paths, refs = [s.path for s in samples], [s.text for s in samples]
    recorder = RecordingEngine(engine)
    rows, raw = [], None
    for decoder in decoders:
        recognizer = Recognizer(recorder, make_decoder_for(decoder, subject), batch_size=batch_size)
        list(recognizer.recognise_paths(paths[:WARMUP_IMAGES]))
        e2e = lambda: list(recognizer.recognise_paths(paths))  # noqa: E731
        if raw is None:  # record the batches the pipeline builds, then time it and the same
            recorder.recording = True  # engine alone on those batches, pass for pass
            e2e()
            recorder.recording = False
            batches = recorder.batches
            (times, raw_times), (results, _) = interleaved([e2e, lambda: run_batches(engine, batches)],
                                                           plan.e2e_repeats)
            raw = sum(len(b) for b in batches) / float(np.median(raw_times))
            recorder.batches = []
        else:
            (times,), (results,) = interleaved([e2e], plan.e2e_repeats)
        failed = [r.error for r in results if not r.ok]
        if failed:
            subject.notes.append(f"{backend.name} {decoder}: {len(failed)} images failed, e.g. {failed[0]}")
        rate = len(paths) / float(np.median(times))
        rows.append({"model": subject.label, "data": f"{subject.kind}s", "images": len(paths), "pipeline": "htr",
                     "backend": backend.name, "precision": backend.precision, "decoder": decoder,
                     "batch": batch_size, "streams": engine.streams, "runs": len(times), "images_per_s": rate,
                     **error_row(refs, [r.text for r in results]),
                     "raw_model_images_per_s": raw, "share_of_raw": rate / raw})
        log(f"{subject.label} htr {backend.name} {decoder}: {rate:.1f} img/s ({100 * rate / raw:.0f}% of raw "
            f"{raw:.1f}), CER {100 * rows[-1]['cer']:.2f}%")
    return rows


# ---- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[1])
    ap.add_argument("--quick", action="store_true", help="fewer images, batch sizes and repeats (a few minutes)")
    ap.add_argument("--archs", default=",".join(DEFAULT_ARCHS),
                    help="models to benchmark, comma-separated architecture names (default: %(default)s)")
    ap.add_argument("--keras", action="append", default=[], metavar="LABEL=PATH",
                    help="trained weights for LABEL (an architecture name, or a new label); repeatable")
    ap.add_argument("--batches", help="model-only batch sizes, comma-separated (default: 1..64, quick 1,8,32)")
    ap.add_argument("--images", type=int, help="word images end to end (default 1000, quick 200)")
    ap.add_argument("--line-images", type=int, help="line images end to end (default 300, quick 40)")
    ap.add_argument("--decoders", default="greedy,beam", help="decoders end to end for word models (greedy, beam, lexicon)")
    ap.add_argument("--line-decoders", default="greedy", help="decoders end to end for line models")
    ap.add_argument("--e2e-batch", type=int, default=SEED_BATCH, help="htr Recognizer batch size (htr-run's default)")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads for models and the MatMul peak "
                                                "(default: onnxruntime's, as htr-run)")
    ap.add_argument("--streams", type=int, help="batches run at once end to end (default: htr-run's choice)")
    ap.add_argument("--repeats", type=int, help="end-to-end passes (default: 3 to 9, while under 20 s; quick 3)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 backend")
    ap.add_argument("--work", type=Path, default=Path("/tmp/htr-bench"), help="images and exported models (reused)")
    ap.add_argument("--machine", default=platform.node().split(".")[0] or "machine", help="name in the report file")
    ap.add_argument("--out", type=Path, default=REPORTS, help="report folder (default: benchmarks/reports)")
    return ap.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    from dataclasses import replace

    plan = QUICK if args.quick else FULL
    if args.batches:
        plan = replace(plan, batches=tuple(int(b) for b in args.batches.split(",")))
    if args.images:
        plan = replace(plan, word_images=args.images)
    if args.line_images:
        plan = replace(plan, line_images=args.line_images)
    if args.repeats:
        plan = replace(plan, e2e_repeats=Repeats(0, args.repeats, args.repeats, 0.0))
    return plan


def bench_subject(label: str, keras_path: Path, trained: bool, args, plan: Plan, data: DataSets,
                  wanted: list[Backend], peak_gflops: float, keras_on_cpu: bool, results: dict) -> None:
    """Export one model, time it alone, then end to end; rows go into `results`."""
    subject = prepare(label, keras_path, trained, data, args.work, any(b.model == "fp16" for b in wanted))
    engines = open_engines(subject, wanted, args.threads, args.work)
    results["model_only"] += bench_model_only(subject, engines, plan, peak_gflops, keras_on_cpu)
    samples = data.evaluation(subject.kind)
    seed = bench_seed(subject, samples, plan)
    rows = [seed]
    decoders = (args.line_decoders if subject.kind == "line" else args.decoders).split(",")
    if args.streams != 1:  # htr-run's engines: the same models, their threads shared out between streams
        engines = open_engines(subject, list(engines), args.threads, args.work, streams=args.streams)
    for backend, engine in engines.items():
        rows += bench_htr(subject, backend, engine, decoders, samples, plan, args.e2e_batch)
    for row in rows:
        row["x_seed"] = row["images_per_s"] / seed["images_per_s"]
    results["end_to_end"] += rows
    results["subjects"].append(subject.summary())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = make_plan(args)
    started = dt.datetime.now()
    trained = parse_keras_args(args.keras)
    labels = list(dict.fromkeys([a for a in args.archs.split(",") if a] + list(trained)))
    from htr.train.models import ARCHITECTURES

    for label in labels:
        if label not in trained and label not in ARCHITECTURES:
            raise SystemExit(f"bench_runtime: {label!r} is no architecture ({', '.join(ARCHITECTURES)}); "
                             "give its weights with --keras LABEL=PATH")
    args.work.mkdir(parents=True, exist_ok=True)
    device = keras_device()
    machine = {**describe_machine(), "keras_device": device, "busy_cpus_at_start": busy_cpus()}
    wanted = [b for b in backends(machine["onnxruntime_providers"])
              if not (args.no_int8 and b.precision == "int8")]
    log(f"plan {plan.name}: models {', '.join(labels)}; backends {', '.join(b.name for b in wanted)}")
    command = " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "run": {"command": f"python benchmarks/bench_runtime.py {command}".strip(), "plan": plan.name,
                "started": started.isoformat(timespec="seconds"), "threads": args.threads, "streams": args.streams,
                "batches": list(plan.batches), "model_repeats": asdict(plan.model_repeats),
                "e2e_repeats": asdict(plan.e2e_repeats), "e2e_batch": args.e2e_batch, "phases_s": {}},
        "machine": machine,
        "flop_convention": "2 x multiply-accumulates (model: htr.train.models.count_flops; MatMul: 2MKN)",
        "subjects": [], "model_only": [], "end_to_end": [], "failures": [],
    }
    phases = results["run"]["phases_s"]
    t0 = time.perf_counter()
    results["peak"] = matmul_peak(plan.peak_repeats, args.threads)
    phases["peak"] = round(time.perf_counter() - t0, 1)
    data = DataSets(args.work, plan)
    for label in labels:
        t0 = time.perf_counter()
        keras_path = trained.get(label) or untrained_keras(label, args.work)
        try:
            bench_subject(label, keras_path, label in trained, args, plan, data, wanted, results["peak"]["gflops"],
                          device == "cpu", results)
        except Exception as err:  # report the others; the failure is in the report
            log(f"{label}: failed:\n{traceback.format_exc()}")
            results["failures"].append(f"{label}: {type(err).__name__}: {err}")
        phases[label] = round(time.perf_counter() - t0, 1)
    results["run"]["duration_s"] = round(time.perf_counter() - _START, 1)
    results["run"]["busy_cpus_at_end"] = busy_cpus()
    stem = args.out / f"{args.machine}-{started.date().isoformat()}-runtime"
    report.write(results, stem)
    log(f"wrote {stem}.md, .json and plots")
    print(stem.with_suffix(".md"))


if __name__ == "__main__":
    main()
