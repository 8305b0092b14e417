"""The issue-6 targets in benchmarks/bench_runtime_report.py, computed from made-up results.

The benchmark itself is timed by hand (`make bench`); this checks that the verdicts it
writes follow the rules: ratios from the measured rows, int8 weights counted only when they
keep the accuracy, every word model shown.
"""

from __future__ import annotations

import bench_runtime_report as report  # benchmarks/ is on pytest's pythonpath (pyproject.toml)


def model_row(model: str, backend: str, batch: int, p50_ms: float) -> dict:
    return {"model": model, "backend": backend, "batch": batch, "p50_ms": p50_ms,
            "images_per_s": 1000.0 * batch / p50_ms}


def htr_row(model: str, precision: str, rate: float, raw: float, cer: float, seed_rate: float,
            decoder: str = "greedy") -> dict:
    return {"model": model, "data": "words", "pipeline": "htr", "backend": f"ort-cpu-{precision}",
            "precision": precision, "decoder": decoder, "images_per_s": rate, "x_seed": rate / seed_rate,
            "cer": cer, "wer": 0.3, "raw_model_images_per_s": raw, "share_of_raw": rate / raw}


def seed(model: str, rate: float, cer: float) -> dict:
    return {"model": model, "data": "words", "pipeline": "seed", "backend": "keras", "precision": "fp32",
            "decoder": "ctc_decode greedy", "images_per_s": rate, "x_seed": 1.0, "cer": cer, "wer": 0.3}


def results() -> dict:
    return {
        "subjects": [{"label": "seed-word", "kind": "word", "trained": True},
                     {"label": "lean", "kind": "word", "trained": True}],
        "model_only": [
            model_row("seed-word", "keras", 1, 36.0), model_row("seed-word", "ort-cpu-fp32", 1, 15.0),
            model_row("seed-word", "ort-cpu-int8", 1, 10.0), model_row("seed-word", "ort-cpu-lstm8", 1, 13.0),
            model_row("seed-word", "keras", 32, 700.0), model_row("seed-word", "ort-cpu-fp32", 32, 400.0),
            model_row("seed-word", "ort-cpu-int8", 32, 250.0),
            model_row("lean", "keras", 1, 7.0), model_row("lean", "ort-cpu-fp32", 1, 0.7),
        ],
        "end_to_end": [
            seed("seed-word", 50.0, 0.10),
            htr_row("seed-word", "fp32", 80.0, 85.0, 0.10, 50.0),
            htr_row("seed-word", "int8", 140.0, 160.0, 0.103, 50.0),
            htr_row("seed-word", "lstm8", 90.0, 95.0, 0.10, 50.0),
            seed("lean", 400.0, 0.10),
            htr_row("lean", "fp32", 1200.0, 2000.0, 0.099, 400.0),
            htr_row("lean", "int8", 1500.0, 2500.0, 0.124, 400.0),  # 2.5 points worse: does not count
        ],
        "run": {"batches": [1, 32]},
    }


def verdicts(res: dict) -> dict[str, report.Target]:
    return {t.name: t for t in report.compute_targets(res)}


def test_targets_follow_the_measured_rows():
    t = verdicts(results())
    e2e = t["htr-run end to end vs seed pipeline"]
    # lean int8 is faster but 2.5 CER points worse, so lean fp32 (3.0x) is the headline
    assert e2e.passed and abs(e2e.value - 3.0) < 1e-9 and "lean ort-cpu-fp32 greedy" in e2e.detail
    int8 = t["int8 vs fp32"]
    assert int8.passed and abs(int8.value - 1.6) < 1e-9
    share = t["end to end vs raw model"]
    assert not share.passed and abs(share.value - 0.6) < 1e-9  # the headline row's 1200 of 2000
    assert "seed-word fp32 94.1%" in share.detail and "lean int8 60.0%" in share.detail
    latency = t["batch-1 latency"]
    assert latency.passed and abs(latency.value - 3.6) < 1e-9  # seed-word: 36 ms / int8's 10 ms
    assert "lean: 10.00x" in latency.detail


def test_int8_that_loses_accuracy_does_not_count_for_latency():
    res = results()
    for row in res["end_to_end"]:
        if row["model"] == "seed-word" and row["precision"] == "int8":
            row["cer"] = 0.20  # 10 points worse than fp32
    latency = verdicts(res)["batch-1 latency"]
    assert abs(latency.value - 36.0 / 13.0) < 1e-9 and not latency.passed  # lstm8 is the fastest that counts
    assert "ort-cpu-lstm8" in latency.detail


def test_untrained_models_do_not_make_the_headline_when_a_trained_one_exists():
    res = results()
    res["subjects"][0]["trained"] = False
    for row in res["end_to_end"]:
        if row["model"] == "seed-word" and row["pipeline"] == "htr":
            row["images_per_s"] *= 3
            row["x_seed"] *= 3  # faster than lean, but its CER says nothing
    e2e = verdicts(res)["htr-run end to end vs seed pipeline"]
    assert "lean ort-cpu-fp32 greedy" in e2e.detail and abs(e2e.value - 3.0) < 1e-9


def test_missing_measurements_are_not_measured_rather_than_failed():
    res = results()
    res["model_only"] = [r for r in res["model_only"] if r["backend"] != "keras"]
    assert verdicts(res)["batch-1 latency"].verdict == "NOT MEASURED"
