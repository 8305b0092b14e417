"""Report of bench_runtime.py: issue 6's targets, Markdown tables and PNG plots, from its results.

    python benchmarks/bench_runtime_report.py benchmarks/reports/<machine>-<date>-runtime.json

re-renders the .md and .png files next to the JSON (e.g. after changing this file) without
timing anything again. The targets are computed here from the measured figures, never
written by hand.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: Issue 6's "done when" figures.
E2E_SPEEDUP = 2.0
INT8_SPEEDUP = 1.5
RAW_SHARE = 0.85
LATENCY_SPEEDUP = 3.0
#: An int8 model may be this much worse in CER (0.5 points) than the fp32 weights.
INT8_CER_SLACK = 0.005
#: Precisions with int8 weights (the int8 CER slack applies): static QDQ + int8 LSTM, and
#: float32 with int8 LSTM weights.
INT8_PRECISIONS = ("int8", "lstm8")
#: CPUs busy with other work (measured while the benchmark sleeps) above which timings are suspect.
BUSY_CPUS = 0.25
#: Speed-vs-CER plot: one marker per precision.
PRECISION_MARKERS = {"fp32": "o", "int8": "^", "lstm8": "v", "fp16": "D"}
#: The model the issue's model-level targets are about.
TARGET_MODEL = "seed-word"


@dataclass
class Target:
    name: str
    goal: str
    value: float | None
    shown: str
    passed: bool | None  # None: not measured
    detail: str

    @property
    def verdict(self) -> str:
        return "NOT MEASURED" if self.passed is None else ("PASS" if self.passed else "FAIL")


# ---- lookups ------------------------------------------------------------------------------
def model_row(results: dict, model: str, backend: str, batch: int) -> dict | None:
    return next((r for r in results["model_only"]
                 if r["model"] == model and r["backend"] == backend and r["batch"] == batch), None)


def seed_row(results: dict, model: str) -> dict | None:
    return next((r for r in results["end_to_end"] if r["model"] == model and r["pipeline"] == "seed"), None)


def htr_rows(results: dict, model: str | None = None) -> list[dict]:
    return [r for r in results["end_to_end"] if r["pipeline"] == "htr" and model in (None, r["model"])]


def subject(results: dict, model: str) -> dict | None:
    return next((s for s in results["subjects"] if s["label"] == model), None)


def word_models(results: dict) -> list[str]:
    return [s["label"] for s in results["subjects"] if s["kind"] == "word"]


def target_model(results: dict) -> str | None:
    words = word_models(results)
    return TARGET_MODEL if TARGET_MODEL in words else (words[0] if words else None)


def cer_ok(row: dict, reference_cer: float) -> bool:
    """CER no worse than the reference on the same weights (int8: at most 0.5 points worse)."""
    slack = INT8_CER_SLACK if row["precision"] in INT8_PRECISIONS else 0.0
    return row["cer"] <= reference_cer + slack + 1e-12


def untrained_note(results: dict, models: list[str]) -> str:
    untrained = [m for m in models if not (subject(results, m) or {}).get("trained")]
    return f" Untrained weights ({', '.join(untrained)}): the CER condition means nothing." if untrained else ""


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


# ---- the four figures --------------------------------------------------------------------
def headline(results: dict) -> tuple[dict | None, dict | None]:
    """The fastest htr end-to-end row on word images whose CER is no worse than the seed
    pipeline's on the same weights, and that seed row. Models with trained weights come
    first: on untrained weights the CER condition means nothing."""
    best: tuple[dict | None, dict | None] = (None, None)
    models = word_models(results)
    trained = [m for m in models if (subject(results, m) or {}).get("trained")]
    for model in trained or models:
        seed = seed_row(results, model)
        for row in htr_rows(results, model):
            if seed and cer_ok(row, seed["cer"]) and (best[0] is None or row["x_seed"] > best[0]["x_seed"]):
                best = (row, seed)
    return best


def compute_targets(results: dict) -> list[Target]:
    return [_target_e2e(results), _target_int8(results), _target_share(results), _target_latency(results)]


def _target_e2e(results: dict) -> Target:
    goal = f">= {E2E_SPEEDUP:g}x the seed pipeline's images/s on word images, CER no worse (int8: +0.5 points)"
    name = "htr-run end to end vs seed pipeline"
    row, seed = headline(results)
    models = word_models(results)
    if row is None:
        rows = [r for m in models for r in htr_rows(results, m)]
        if not rows:
            return Target(name, goal, None, "", None, "no end-to-end rows on word images")
        fastest = max(rows, key=lambda r: r["x_seed"])
        return Target(name, goal, fastest["x_seed"], f"{fastest['x_seed']:.2f}x", False,
                      "no htr configuration kept the seed pipeline's CER; fastest: " + _config(fastest)
                      + untrained_note(results, models))
    detail = (f"{_config(row)}: {row['images_per_s']:.1f} vs {seed['images_per_s']:.1f} img/s, "
              f"CER {pct(row['cer'])} vs {pct(seed['cer'])} (same weights).") + untrained_note(results, [row["model"]])
    return Target(name, goal, row["x_seed"], f"{row['x_seed']:.2f}x", row["x_seed"] >= E2E_SPEEDUP, detail)


def _target_int8(results: dict) -> Target:
    goal = f">= {INT8_SPEEDUP:g}x onnxruntime fp32 at batch 32 on {TARGET_MODEL} (model only)"
    name = "int8 vs fp32"
    fp32 = model_row(results, TARGET_MODEL, "ort-cpu-fp32", 32)
    int8 = model_row(results, TARGET_MODEL, "ort-cpu-int8", 32)
    if not (fp32 and int8):
        return Target(name, goal, None, "", None, f"needs {TARGET_MODEL} with fp32 and int8 at batch 32")
    ratio = int8["images_per_s"] / fp32["images_per_s"]
    cer = _precision_cer(results, TARGET_MODEL)
    detail = f"{int8['images_per_s']:.1f} vs {fp32['images_per_s']:.1f} img/s" + (
        f"; greedy CER int8 {pct(cer['int8'])} vs fp32 {pct(cer['fp32'])}" if {"int8", "fp32"} <= set(cer) else "")
    return Target(name, goal, ratio, f"{ratio:.2f}x", ratio >= INT8_SPEEDUP, detail)


def _target_share(results: dict) -> Target:
    goal = f">= {100 * RAW_SHARE:.0f}% of the raw model throughput of the same session"
    name = "end to end vs raw model"
    row, _ = headline(results)
    rows = [r for m in word_models(results) for r in htr_rows(results, m)]
    if row is None and rows:
        row = max(rows, key=lambda r: r["x_seed"])
    if row is None:
        return Target(name, goal, None, "", None, "no end-to-end rows on word images")
    worst = min(rows, key=lambda r: r["share_of_raw"])
    greedy = [r for r in rows if r["decoder"] == "greedy"]
    each = ", ".join(f"{r['model']} {r['precision']} {pct(r['share_of_raw'])}" for r in greedy)
    detail = (f"{_config(row)} (the configuration of the first target): {row['images_per_s']:.1f} of "
              f"{row['raw_model_images_per_s']:.1f} img/s; greedy rows: {each}; lowest of all htr rows: "
              f"{pct(worst['share_of_raw'])} ({_config(worst)})")
    return Target(name, goal, row["share_of_raw"], pct(row["share_of_raw"]), row["share_of_raw"] >= RAW_SHARE, detail)


def _target_latency(results: dict) -> Target:
    model = target_model(results)
    goal = f"batch-1 latency of a word image >= {LATENCY_SPEEDUP:g}x better than Keras predict_on_batch"
    name = "batch-1 latency"
    best = {m: _best_latency(results, m) for m in word_models(results)}
    if not (model and best.get(model)):
        return Target(name, goal, None, "", None, "needs Keras and onnxruntime at batch 1 on a word model")
    ratio = best[model][0]
    others = "; ".join(f"{m}: {r:.2f}x ({d})" for m, (r, d) in ((m, v) for m, v in best.items() if v and m != model))
    detail = f"{model}: {best[model][1]}" + (f". Also {others}" if others else "")
    return Target(name, goal, ratio, f"{ratio:.2f}x", ratio >= LATENCY_SPEEDUP, detail)


def _best_latency(results: dict, model: str) -> tuple[float, str] | None:
    """Keras p50 over the fastest onnxruntime CPU p50 at batch 1 whose precision keeps the
    accuracy (int8 weights: at most 0.5 CER points worse than fp32 end to end)."""
    keras = model_row(results, model, "keras", 1)
    cer = _precision_cer(results, model)
    candidates = [r for r in results["model_only"] if r["model"] == model and r["batch"] == 1
                  and r["backend"].startswith("ort-cpu-")
                  and (r["backend"] == "ort-cpu-fp32" or _keeps_accuracy(cer, r["backend"].rsplit("-", 1)[1]))]
    if not (keras and candidates):
        return None
    fastest = min(candidates, key=lambda r: r["p50_ms"])
    return (keras["p50_ms"] / fastest["p50_ms"],
            f"Keras {keras['p50_ms']:.1f} ms vs {fastest['backend']} {fastest['p50_ms']:.2f} ms (p50)")


def _keeps_accuracy(cer: dict[str, float], precision: str) -> bool:
    """No end-to-end CER for it or for fp32 (untrained weights count too) -> True."""
    if precision not in cer or "fp32" not in cer:
        return True
    return cer[precision] <= cer["fp32"] + INT8_CER_SLACK + 1e-12


def _precision_cer(results: dict, model: str) -> dict[str, float]:
    """Greedy CER end to end on the CPU, by precision."""
    return {r["precision"]: r["cer"] for r in htr_rows(results, model)
            if r["decoder"] == "greedy" and "cpu" in r["backend"]}


def _config(row: dict) -> str:
    return f"{row['model']} {row['backend']} {row['decoder']}"


# ---- Markdown ----------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def machine_lines(results: dict) -> list[str]:
    m = results["machine"]
    flags = m.get("cpu_flags", {})
    has = [f for f, v in flags.items() if v]
    lacks = [f for f, v in flags.items() if not v]
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    lines = [
        f"- CPU: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs, {m.get('physical_cores') or '?'} physical cores"
        f"{', ' + format(m['cpu_mhz'], '.0f') + ' MHz' if m.get('cpu_mhz') else ''}"
        f"{', virtual machine' if m.get('hypervisor') else ''}; {m.get('memory_gb')} GB memory",
        f"- CPU flags present: {', '.join(has) or 'none'}; absent: {', '.join(lacks) or 'none'}",
        f"- GPU: {'; '.join(m['gpu']) if m.get('gpu') else 'none'}; Keras runs on the {m.get('keras_device', 'cpu').upper()}",
        f"- onnxruntime providers: {', '.join(m.get('onnxruntime_providers', []))}",
        f"- {m.get('os')}, Python {m.get('python')}; {libs}; htr commit {m.get('htr_commit')}",
    ]
    return lines


def render(results: dict, stem: Path) -> str:
    run, peak = results["run"], results["peak"]
    lines = ["# Runtime benchmark: seed notebook pipeline vs htr", ""]
    lines += machine_lines(results)
    lines += [
        "",
        f"Run {run['started']} (`{run['command']}`, plan {run['plan']}, {run.get('duration_s', 0) / 60:.1f} min). "
        f"Every figure is the median over repeats after a warm-up; ratios are against baselines from this run. "
        f"FLOPs = {results['flop_convention']}.",
        "",
    ]
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in run.get("phases_s", {}).items())
    lines += [f"Time taken: {phases}." if phases else ""]
    busy = [x for x in (results["machine"].get("busy_cpus_at_start"), run.get("busy_cpus_at_end")) if x is not None]
    if busy and max(busy) > BUSY_CPUS:
        lines += ["", f"**Warning:** other work kept {max(busy):.1f} CPUs busy while this run was idle (measured at its "
                      "start and end): it competed for the cores, so these timings are not trustworthy."]
    lines += ["", "## Targets (issue 6)", ""]
    lines += table(["target", "goal", "measured", "result", "how"],
                   [[t.name, t.goal, t.shown or "-", f"**{t.verdict}**", t.detail] for t in map(_as_target, results["targets"])])
    lines += ["", "## Models", ""]
    lines += table(["model", "weights", "parameters", "input (H x W)", "timed at width", "MFLOP / image",
                    "ONNX MB (fp32 / int8 / lstm8)"],
                   [[s["label"], _weights(s), f"{s['params']:,}", f"{s['height']} x {s['input_width'] or 'any'}",
                     str(s["bench_width"]), f"{s['flops_per_image'] / 1e6:.1f}",
                     " / ".join(str(s["onnx_mb"].get(k, "-")) for k in ("fp32", "int8", "lstm8"))] for s in results["subjects"]])
    notes = [f"- {s['label']}: {n}" for s in results["subjects"] for n in s["notes"]] + \
            [f"- {f}" for f in results.get("failures", [])]
    if notes:
        lines += ["", "Export and run notes:", ""] + notes
    lines += ["", "## FP32 peak", "",
              f"Best onnxruntime MatMul rate, same thread settings as the models ({peak['threads']}): "
              f"**{peak['gflops']:.1f} GFLOP/s**.", ""]
    lines += table(["MatMul", "runs", "best GFLOP/s", "median GFLOP/s"],
                   [[t["shape"], str(t["runs"]), f"{t['gflops_best']:.1f}", f"{t['gflops_median']:.1f}"] for t in peak["trials"]])
    over = [r for r in results["model_only"] if (r.get("peak_share") or 0) > 1.0]
    if over:
        lines += ["", f"**Warning:** {len(over)} model rows exceed 100% of this peak (e.g. {over[0]['model']} "
                      f"{over[0]['backend']} batch {over[0]['batch']}: {pct(over[0]['peak_share'])}): the MatMul "
                      "under-measured the machine, read the peak column as relative only."]
    lines += ["", "## Model only", "",
              "images/s, then p50 / p95 ms per batch and the share of the FP32 peak (int8 rows: FP32-equivalent "
              "FLOPs). Random input at the model height and the width in the Models table.", "",
              f"![throughput]({stem.name}-throughput.png) ![latency]({stem.name}-latency.png)", ""]
    for model in [s["label"] for s in results["subjects"]]:
        lines += [f"### {model}", ""] + model_table(results, model) + [""]
    lines += ["## End to end", "",
              "Read, preprocess, infer, decode, on images written to disk in held-out hands. `x seed`: images/s over "
              f"the seed notebook pipeline's with the same weights; `x {TARGET_MODEL} seed`: over the seed pipeline "
              f"with the {TARGET_MODEL} weights (across models: compare CERs too); `raw model`: the same onnxruntime session timed "
              "alone on exactly the batches the pipeline built.", "",
              f"![speed vs CER]({stem.name}-speed-cer.png)", ""]
    lines += e2e_table(results)
    lines += ["", "## int8 and lstm8 vs fp32", ""] + int8_table(results)
    lines += ["", "## Decoders", "",
              "`benchmarks/bench_decoders.py` (run by `make bench` before this script) writes its own report: "
              "[decoders.md](decoders.md)."]
    return "\n".join(lines) + "\n"


def _as_target(t: dict | Target) -> Target:
    return t if isinstance(t, Target) else Target(**{k: t[k] for k in Target.__dataclass_fields__})


def _weights(s: dict) -> str:
    if not s["trained"]:
        return "untrained"
    t = s.get("training", {})
    facts = ", ".join(f"{k} {v}" for k, v in t.items())
    return f"trained ({facts})" if facts else "trained"


def backends_of(results: dict, model: str) -> list[str]:
    return list(dict.fromkeys(r["backend"] for r in results["model_only"] if r["model"] == model))


def model_table(results: dict, model: str) -> list[str]:
    names = backends_of(results, model)
    rows = []
    for batch in results["run"]["batches"]:
        cells = [str(batch)]
        for name in names:
            r = model_row(results, model, name, batch)
            share = f", {pct(r['peak_share'])}" if r and r.get("peak_share") is not None else ""
            cells.append(f"{r['images_per_s']:.1f} ({r['p50_ms']:.1f} / {r['p95_ms']:.1f}{share})" if r else "-")
        keras, fp32 = model_row(results, model, "keras", batch), model_row(results, model, "ort-cpu-fp32", batch)
        cells.append(f"{fp32['images_per_s'] / keras['images_per_s']:.2f}x" if keras and fp32 else "-")
        rows.append(cells)
    return table(["batch"] + names + ["ort fp32 / keras"], rows)


def e2e_table(results: dict) -> list[str]:
    reference = seed_row(results, TARGET_MODEL)
    rows = []
    for r in results["end_to_end"]:
        raw = r.get("raw_model_images_per_s")
        backend = f"{r['backend']} ({r['input']})" if r.get("input") else r["backend"]
        across = f"{r['images_per_s'] / reference['images_per_s']:.2f}x" if reference and r["data"] == reference["data"] else ""
        rows.append([r["model"], r["data"], str(r["images"]), r["pipeline"], backend, r["decoder"],
                     f"{r['images_per_s']:.1f}", f"{r['x_seed']:.2f}x", across, pct(r["cer"]), pct(r["wer"]),
                     str(r.get("streams", "")), f"{raw:.1f}" if raw else "", pct(r.get("share_of_raw"))])
    return table(["model", "data", "images", "pipeline", "backend", "decoder", "images/s", "x seed",
                  f"x {TARGET_MODEL} seed", "CER", "WER", "streams", "raw model img/s", "share of raw"], rows)


def int8_table(results: dict) -> list[str]:
    rows = []
    for s in results["subjects"]:
        model = s["label"]
        cer = _precision_cer(results, model)
        for precision in INT8_PRECISIONS:
            ratios = []
            for batch in results["run"]["batches"]:
                a = model_row(results, model, f"ort-cpu-{precision}", batch)
                b = model_row(results, model, "ort-cpu-fp32", batch)
                ratios.append(f"{a['images_per_s'] / b['images_per_s']:.2f}x" if a and b else "-")
            if all(r == "-" for r in ratios):
                continue
            both = precision in cer and "fp32" in cer
            rows.append([model, precision] + ratios + ([pct(cer["fp32"]), pct(cer[precision]),
                                                        f"{100 * (cer[precision] - cer['fp32']):+.2f}"] if both else ["-"] * 3))
    header = ["model", "precision"] + [f"b={b}" for b in results["run"]["batches"]] + ["CER fp32", "CER", "points"]
    return ["Images/s over fp32 at each batch size (model only), and greedy CER end to end on the same images. "
            "int8: static QDQ convolutions + int8 LSTM weights; lstm8: float32 with int8 LSTM weights.", ""] \
        + table(header, rows)


# ---- plots -------------------------------------------------------------------------------
def plot(results: dict, stem: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    models = [s["label"] for s in results["subjects"]]
    if not models:
        return []
    written = []
    for name, ylabel, draw in (("throughput", "images/s", _draw_throughput), ("latency", "ms per batch", _draw_latency)):
        fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.8), squeeze=False)
        for ax, model in zip(axes[0], models):
            draw(ax, results, model)
            ax.set_title(model)
            ax.set_xscale("log", base=2)
            ax.set_xticks(results["run"]["batches"], [str(b) for b in results["run"]["batches"]])
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle("Model only: " + ("throughput vs batch size" if name == "throughput" else
                                       "latency per batch, p50 (line) to p95 (bar)"))
        fig.tight_layout()
        written.append(_save(fig, stem, name))
    fig, ax = plt.subplots(figsize=(10, 5))
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    for r in results["end_to_end"]:
        marker = "s" if r["pipeline"] == "seed" else PRECISION_MARKERS.get(r["precision"], "o")
        filled = r["decoder"] in ("greedy", "ctc_decode greedy")
        ax.scatter(r["images_per_s"], 100 * r["cer"], marker=marker, s=50, edgecolors=colours[r["model"]],
                   facecolors=colours[r["model"]] if filled else "none",
                   label=f"{r['model']} {r['backend']} {r['decoder']}")
    ax.set_xscale("log")
    ax.set_xlabel("images/s end to end")
    ax.set_ylabel("CER %")
    ax.set_title("End to end: speed vs CER on the same images (square: seed pipeline; hollow: not greedy)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    written.append(_save(fig, stem, "speed-cer"))
    return written


def _draw_throughput(ax, results: dict, model: str) -> None:
    for name in backends_of(results, model):
        rows = [r for r in results["model_only"] if r["model"] == model and r["backend"] == name]
        ax.plot([r["batch"] for r in rows], [r["images_per_s"] for r in rows], marker="o", label=name)


def _draw_latency(ax, results: dict, model: str) -> None:
    for name in backends_of(results, model):
        rows = [r for r in results["model_only"] if r["model"] == model and r["backend"] == name]
        p50 = [r["p50_ms"] for r in rows]
        up = [r["p95_ms"] - r["p50_ms"] for r in rows]
        ax.errorbar([r["batch"] for r in rows], p50, yerr=[[0] * len(p50), up], marker="o", capsize=3, label=name)


def _save(fig, stem: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = stem.parent / f"{stem.name}-{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- writing ------------------------------------------------------------------------------
def write(results: dict, stem: Path) -> None:
    """Compute the targets, then write STEM.json, STEM.md and the plots."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    results["targets"] = [{**asdict(t), "verdict": t.verdict} for t in compute_targets(results)]
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, stem)
    stem.with_suffix(".md").write_text(render(results, stem))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].endswith(".json"):
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    write(json.loads(path.read_text()), path.with_suffix(""))
    print(path.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
