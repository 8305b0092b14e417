"""Training speed of one htr architecture on each Keras backend (TensorFlow, JAX, PyTorch).

    python benchmarks/bench_backends.py --data FOLDER [--arch lean-deep] [--batches 12]
        [--passes 3] [--batch-size 16] [--threads 1] [--backends tensorflow,jax,torch]

FOLDER is a labels.tsv folder (e.g. one written by `htr-synth`); its first `batches` x
`batch-size` samples are made into model-ready batches once, by htr's own `CTCDataset`
(the widths vary as in training, so a backend that compiles per shape pays for it). Each
backend then runs in its own process (`KERAS_BACKEND=...`, every thread pool held to
`--threads`): the same model from `htr.train.models`, the same Adam and CTC loss as
`htr-train`, `train_on_batch` over those batches `passes` times. The first pass (graph
building, compilation per shape) is reported apart; images/s is the mean of the later
passes, and each backend's ratio is against TensorFlow measured in the same run. A
backend that is not installed is reported as such (`pip install "jax[cpu]"`; PyTorch's
PyPI wheel brings CUDA libraries). Report: benchmarks/reports/backends.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine_facts import busy_cpus, cpu_model  # noqa: E402

from htr.train.config import BACKEND_MODULES as MODULES  # noqa: E402
from htr.train.config import BACKENDS  # noqa: E402  (htr-train's order; this run times each)

REPORTS = Path(__file__).parent / "reports"


def thread_env(backend: str, threads: int) -> dict[str, str]:
    """The environment that holds each backend's thread pools to `threads`."""
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads)}
    if backend == "jax":
        env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
        env["JAX_PLATFORMS"] = "cpu"
    return env


def child(args: argparse.Namespace) -> dict:
    """Runs inside the backend's process: build, batch, train, time."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    from htr.train import models
    from htr.train.config import TrainConfig
    from htr.train.data import CTCDataset, open_source
    from htr.train.trainer import default_charset

    keras.utils.set_random_seed(0)
    kind = "lines" if args.kind == "lines" else "words"
    charset = default_charset(TrainConfig(arch=args.arch, data=f"synth:{kind}", command=[]), kind)
    built = models.build(args.arch, charset)
    training = built.training_model()
    training.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, clipnorm=5.0))
    source = open_source(str(args.data), charset, "all", size=args.batches * args.batch_size)
    data = CTCDataset(source, built.spec, args.batch_size, shuffle=True, seed=0, workers=1)
    batches = [data[i] for i in range(min(args.batches, len(data)))]
    images = sum(int(x.shape[0]) for x, _ in batches)
    shapes = sorted({tuple(int(d) for d in x.shape[1:3]) for x, _ in batches})
    passes, losses = [], []
    for _ in range(args.passes):
        start, cpu = time.perf_counter(), time.process_time()
        for x, y in batches:
            out = training.train_on_batch(x, y, return_dict=True)
        losses.append(float(out["loss"]))
        passes.append({"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu})
    steady = passes[1:] or passes
    wall = sum(p["wall_s"] for p in steady) / len(steady)
    return {
        "backend": keras.backend.backend(), "version": __import__(MODULES[keras.backend.backend()]).__version__,
        "keras": keras.__version__, "arch": args.arch, "params": int(built.inference.count_params()),
        "batches": len(batches), "images_per_pass": images, "batch_size": args.batch_size, "shapes": len(shapes),
        "first_pass_s": round(passes[0]["wall_s"], 2), "steady_pass_s": round(wall, 3),
        "images_per_s": round(images / wall, 2),
        "cpu_per_image_ms": round(1000 * sum(p["cpu_s"] for p in steady) / len(steady) / images, 2),
        "loss_by_pass": [round(v, 3) for v in losses],
    }


def run_backend(backend: str, args: argparse.Namespace) -> dict:
    probe = subprocess.run([sys.executable, "-c", f"import {MODULES[backend]}"], capture_output=True, text=True,
                           env=thread_env(backend, args.threads))
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return {"backend": backend, "error": f"not installed or does not import: {last}"}
    cmd = [sys.executable, __file__, "--child", "--data", str(args.data), "--arch", args.arch, "--kind", args.kind,
           "--batches", str(args.batches), "--passes", str(args.passes), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(backend, args.threads))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"backend": backend, "error": f"exit {proc.returncode}: {tail[-600:]}"}
    return json.loads(lines[-1])


def report(rows: list[dict], args: argparse.Namespace, busy: float | None) -> str:
    base = next((r for r in rows if r["backend"] == "tensorflow" and "error" not in r), None)
    out = [
        "# Keras backends: training speed of one htr model on this CPU",
        "",
        f"`python benchmarks/bench_backends.py --data {args.data} --arch {args.arch} --kind {args.kind} "
        f"--batches {args.batches} --passes {args.passes} --batch-size {args.batch_size} --threads {args.threads}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs; {args.threads} thread(s) per backend; "
        f"other work kept {'?' if busy is None else f'{busy:.1f}'} CPUs busy when the run started.",
        "",
        "| backend | version | images/s (steady) | x TensorFlow | first pass (compiles) | CPU ms / image | loss by pass |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['backend']} | - | - | - | - | - | {r['error']} |")
            continue
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "-"
        out.append(f"| {r['backend']} | {r['version']} (Keras {r['keras']}) | {r['images_per_s']:.1f} | {ratio} | "
                   f"{r['first_pass_s']:.1f} s | {r['cpu_per_image_ms']:.1f} | {', '.join(map(str, r['loss_by_pass']))} |")
    ok = [r for r in rows if "error" not in r]
    if ok:
        r0 = ok[0]
        fastest = max(ok, key=lambda r: r["images_per_s"])
        out += ["", f"{r0['arch']} ({r0['params']:,} parameters), {r0['batches']} batches of {r0['batch_size']} "
                f"({r0['images_per_pass']} images, {r0['shapes']} distinct input shapes) per pass.",
                f"Fastest here: **{fastest['backend']}** ({fastest['images_per_s']:.1f} images/s)."]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a labels.tsv folder")
    ap.add_argument("--arch", default="lean-deep")
    ap.add_argument("--kind", choices=("words", "lines"), default="lines", help="the charset: words, or lines (with the space)")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", type=Path, default=REPORTS / "backends")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return
    if not (args.data / "labels.tsv").is_file():
        raise SystemExit(f"{args.data}: expected a folder with labels.tsv (htr-synth writes one)")
    busy = busy_cpus()
    rows = []
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            raise SystemExit(f"--backends: {backend!r} is not one of {', '.join(BACKENDS)}")
        rows.append(run_backend(backend, args))
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = report(rows, args, busy)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "busy_cpus": busy, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
