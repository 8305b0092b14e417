"""Model and end-to-end speed: the seed notebook's pipeline vs htr's runtime, same weights.

    python benchmarks/bench_runtime.py [--quick] [--keras model.keras] [--arch seed-word]

1. Model only: Keras `predict_on_batch` vs onnxruntime (fp32, and int8 when exported),
   batch sizes 1..64: images/s, p50/p95 latency, and the share of the machine's FP32
   peak (model FLOPs per image x images/s over the rate of a large onnxruntime MatMul
   measured in the same run).
2. End to end on a folder of synthetic word images rendered with held-out hands: the
   seed notebook's pipeline (cv2.imread, its `process_image`, Keras `predict` in
   batches of 32, `ctc_decode` greedy with the blank last) vs htr's Recognizer (what
   `htr-run` runs) on the ONNX export of the same weights; images/s and CER.

Every figure is a median over repeats after a warm-up; ratios are against baselines
measured in the same run. Writes benchmarks/reports/<machine>-<date>-runtime.{md,json}
and a PNG plot. Needs the `train` and `export` extras.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # Keras baseline and export on the CPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).parent
REPORTS = HERE / "reports"
BIN = Path(sys.executable).parent


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


def seed_pipeline(paths, keras_model, charset: str) -> list[str]:
    """Read, process_image, predict in batches of 32, greedy ctc_decode (blank last)."""
    import keras

    images = [process_image(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in paths]
    prediction = keras_model.predict(np.asarray(images), batch_size=32, verbose=0)
    lengths = np.ones(prediction.shape[0], dtype="int32") * prediction.shape[1]
    decoded, _ = keras.ops.ctc_decode(prediction, lengths, strategy="greedy", mask_index=prediction.shape[2] - 1)
    out = keras.ops.convert_to_numpy(decoded[0])
    return ["".join(charset[int(c)] for c in row if 0 <= c < len(charset)) for row in out]


# ---- helpers -----------------------------------------------------------------------
def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags"))
        info["cpu_flags"] = " ".join(f for f in flags if f.startswith(("avx", "fma", "amx")) or f in ("avx512_vnni", "avx_vnni"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    info["numpy"] = np.__version__
    info["opencv"] = cv2.__version__
    try:
        import keras
        import tensorflow as tf

        info["tensorflow"], info["keras"] = tf.__version__, keras.__version__
    except ImportError:
        pass
    return info


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_peak(repeats: int) -> float:
    """FLOP/s of a large float32 MatMul in onnxruntime: the machine's practical FP32 peak."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 2048
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    t = float(np.median(timed(lambda: sess.run(None, {"a": a, "b": a}), repeats, warmup=2)))
    return 2 * n**3 / t


def make_words(folder: Path, count: int) -> Path:
    """Synthetic word images in held-out hands (never seen by the bundled models), with labels.tsv."""
    if not (folder / "labels.tsv").exists():
        subprocess.run([str(BIN / "htr-synth"), str(folder), "--kind", "words", "--count", str(count),
                        "--seed", "2026", "--split", "heldout"], check=True)
    return folder


def export(keras_path: Path, out: Path, calibrate: Path | None) -> dict[str, Path]:
    models = {"fp32": out / "model.onnx"}
    if not models["fp32"].exists():
        subprocess.run([str(BIN / "htr-export"), str(keras_path), "-o", str(models["fp32"])], check=True)
    if calibrate is not None:
        int8 = out / "model.int8.onnx"
        if not int8.exists():
            r = subprocess.run([str(BIN / "htr-export"), str(keras_path), "-o", str(models["fp32"]),
                                "--int8", "--calibrate", str(calibrate)])
            if r.returncode != 0:
                print("int8 export failed; skipping int8", file=sys.stderr)
        for candidate in out.glob("*int8*.onnx"):
            models["int8"] = candidate
    return models


# ---- the benchmark -------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images, repeats and batch sizes (a few minutes)")
    ap.add_argument("--keras", type=Path, help="trained Keras model (.keras/.h5); default: build --arch untrained")
    ap.add_argument("--arch", default="seed-word")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--int8", action="store_true", help="also export and time static int8 (QDQ)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/htr-bench"))
    args = ap.parse_args()
    repeats = 3 if args.quick else 5
    batches = [1, 8, 32] if args.quick else [1, 2, 4, 8, 16, 32, 64]
    count = 200 if args.quick else args.images
    args.work.mkdir(parents=True, exist_ok=True)

    import keras

    from htr.runtime import Engine, Recognizer, make_decoder
    from htr.runtime.constants import SEED_WORD_CHARSET
    from htr.runtime.datasets import load_labelled
    from htr.runtime.metrics import error_rates
    from htr.train import models as arch_models

    keras_path = args.keras
    if keras_path is None:
        keras_path = args.work / f"{args.arch}-untrained.keras"
        if not keras_path.exists():
            built = arch_models.build(args.arch)
            built.inference.save(keras_path)
            built.spec.save_json(keras_path.with_suffix(".json"))
        print(f"note: {args.arch} with untrained weights: speed is real, CER is not meaningful", file=sys.stderr)
    keras_model = keras.models.load_model(keras_path, compile=False)
    data_dir = make_words(args.work / f"words-{count}", count)
    samples = load_labelled(data_dir).samples
    paths = [s.path for s in samples]
    models = export(keras_path, args.work / keras_path.stem, data_dir if args.int8 else None)
    info = machine()
    peak = matmul_peak(repeats)
    height, width = keras_model.input_shape[1], keras_model.input_shape[2] or 128
    flops = arch_models.count_flops(keras_model, width)
    results: dict = {"machine": info, "matmul_peak_gflops": peak / 1e9, "model_flops_per_image": flops,
                     "keras_model": str(keras_path), "images": len(paths), "model": [], "end_to_end": []}

    # 1. model only
    rng = np.random.default_rng(0)
    for batch in batches:
        x = rng.random((batch, height, width, 1), dtype=np.float32)
        row = {"batch": batch}
        t = timed(lambda: keras_model.predict_on_batch(x), repeats * 3, warmup=2)
        row["keras"] = _rate(t, batch, flops, peak)
        for name, path in models.items():
            eng = Engine(path)
            t = timed(lambda: eng.run(x), repeats * 3, warmup=2)
            row[f"ort_{name}"] = _rate(t, batch, flops, peak)
        results["model"].append(row)
        print(json.dumps(row), file=sys.stderr)

    # 2. end to end (same images, same weights)
    refs = [s.text for s in samples]
    seed_times, seed_out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        seed_out = seed_pipeline(paths, keras_model, SEED_WORD_CHARSET)
        seed_times.append(time.perf_counter() - start)
    base = len(paths) / float(np.median(seed_times))
    seed_cer = error_rates(zip(refs, seed_out)).cer
    results["end_to_end"].append({"pipeline": "seed notebook (Keras predict, ctc_decode)", "images_per_s": base, "cer": seed_cer, "ratio": 1.0})
    for name, path in models.items():
        engine = Engine(path)
        spec = engine.spec
        for decoder in ("greedy", "beam"):
            rec = Recognizer(engine, make_decoder(decoder, spec.charset, spec.blank), batch_size=32)
            out: list = []
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                out = [r.text for r in rec.recognise_paths(paths)]
                times.append(time.perf_counter() - start)
            rate = len(paths) / float(np.median(times))
            raw = next(r[f"ort_{name}"]["images_per_s"] for r in results["model"] if r["batch"] == 32) if 32 in batches else None
            results["end_to_end"].append({
                "pipeline": f"htr {name} {decoder}", "images_per_s": rate, "cer": error_rates(zip(refs, out)).cer,
                "ratio": rate / base, "share_of_raw_model": rate / raw if raw else None,
            })
            print(json.dumps(results["end_to_end"][-1]), file=sys.stderr)
    write_report(results, args)


def _rate(times: list[float], batch: int, flops: int, peak: float) -> dict:
    t = np.array(times)
    rate = batch / float(np.median(t))
    return {"images_per_s": rate, "p50_ms": 1e3 * float(np.median(t)), "p95_ms": 1e3 * float(np.percentile(t, 95)),
            "peak_share": rate * flops / peak}


def write_report(results: dict, args) -> None:
    REPORTS.mkdir(exist_ok=True)
    host = platform.node().split(".")[0] or "machine"
    stem = REPORTS / f"{host}-{dt.date.today().isoformat()}-runtime"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# Runtime benchmark: seed notebook pipeline vs htr", "",
        f"Machine: {m.get('cpu')} ({m.get('cpu_flags', '')}), {m['cores']} cores; Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}, TensorFlow {m.get('tensorflow')}, Keras {m.get('keras')}, NumPy {m['numpy']}, OpenCV {m['opencv']}.",
        f"Run: {dt.datetime.now():%Y-%m-%d %H:%M}, `python benchmarks/bench_runtime.py {' '.join(sys.argv[1:])}`; "
        f"model `{results['keras_model']}`; {results['images']} synthetic word images (held-out hands).",
        f"FP32 peak (onnxruntime 2048x2048 MatMul, same run): {results['matmul_peak_gflops']:.1f} GFLOP/s; "
        f"model: {results['model_flops_per_image'] / 1e6:.1f} MFLOP per image.", "",
        "## Model only (median after warm-up)", "",
    ]
    names = [k for k in results["model"][0] if k != "batch"]
    lines.append("| batch | " + " | ".join(f"{n} img/s (p50/p95 ms, peak %)" for n in names) + " | ort fp32 / keras |")
    lines.append("| --- " * (len(names) + 2) + "|")
    for row in results["model"]:
        cells = [f"{row[n]['images_per_s']:.1f} ({row[n]['p50_ms']:.1f}/{row[n]['p95_ms']:.1f}, {100 * row[n]['peak_share']:.0f}%)" for n in names]
        ratio = row["ort_fp32"]["images_per_s"] / row["keras"]["images_per_s"]
        lines.append(f"| {row['batch']} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    lines += ["", "## End to end (read, preprocess, infer, decode)", "",
              "| pipeline | images/s | x seed | CER | share of raw model (batch 32) |", "| --- | --- | --- | --- | --- |"]
    for row in results["end_to_end"]:
        share = f"{100 * row['share_of_raw_model']:.0f}%" if row.get("share_of_raw_model") else ""
        lines.append(f"| {row['pipeline']} | {row['images_per_s']:.1f} | {row['ratio']:.2f}x | {100 * row['cer']:.2f}% | {share} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for n in names:
            ax.plot([r["batch"] for r in results["model"]], [r[n]["images_per_s"] for r in results["model"]], marker="o", label=n)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        ax.legend()
        ax.set_title("Model throughput vs batch size")
        fig.tight_layout()
        fig.savefig(stem.with_suffix(".png"), dpi=100)
    except ImportError:
        pass
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
