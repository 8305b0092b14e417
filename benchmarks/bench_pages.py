"""Pages: line detection, page CER against the ground-truth lines, and speed.

    python benchmarks/bench_pages.py                  # 50 held-out A4 300 dpi pages
    python benchmarks/bench_pages.py --pages 10       # quicker

On synthetic pages from hands never used in training (`split="heldout"`; rotation up to
3 degrees, ruled and plain paper, photographed look, marginal noise), written to JPEG and
read back as a user's files would be:

- line detection: precision, recall and F1 of the segmenter's line polygons against the
  ground truth's at IoU 0.5 (one-to-one matching);
- page CER (lines joined with spaces) of the segmented page, and of the baseline measured
  in the same run: the same page's ground-truth lines cut the same way (`cut_lines` at
  the true rotation) and read by the same model and decoder;
- speed on 2 onnxruntime threads: each page's time split into decoding the JPEG,
  segmenting (segment_page + cut_lines) and recognising its lines, as medians; and
  end-to-end pages/s through `PageReader.read_paths` (what `htr-run --segment` runs),
  against the baseline of recognising the ground-truth line images alone.

Writes benchmarks/reports/pages.{json,md}. `--draw docs/page-segmentation.png` instead
draws one held-out page with the lines found on it (polygons and baselines) and their text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_facts import busy_cpus, cpu_model  # noqa: E402

from htr.runtime import Engine, Recognizer, make_decoder, resolve_model  # noqa: E402
from htr.runtime.images import load_image  # noqa: E402
from htr.runtime.metrics import edit_distance, error_rates  # noqa: E402
from htr.runtime.pages import PageReader  # noqa: E402
from htr.runtime.pages_eval import match_lines  # noqa: E402
from htr.runtime.segment import Segmentation, TextLine, cut_lines, segment_page  # noqa: E402
from htr.train.synth_pages import PageGenerator, PageLayout  # noqa: E402

REPORTS = Path(__file__).resolve().parent / "reports"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="line")
    parser.add_argument("--draw", type=Path, help="Only draw page --index with its lines into this PNG.")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    if args.draw:
        draw(args.draw, args.seed, args.index, args.model)
        return

    busy_before = busy_cpus()
    engine = Engine(resolve_model(args.model), threads=args.threads)
    recognizer = Recognizer(engine, make_decoder("greedy", engine.spec.charset, engine.spec.blank))
    max_height = 2 * engine.spec.input.height  # as PageReader cuts lines
    generator = PageGenerator(split="heldout", seed=args.seed, layout=PageLayout(dpi=300.0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        t0 = time.perf_counter()
        pages = []
        for i in range(args.pages):
            page = generator.page(i)
            path = Path(tmp) / f"page-{i:03d}.jpg"
            cv2.imwrite(str(path), page.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            paths.append(path)
            pages.append(page)
        seconds_generate = time.perf_counter() - t0
        print(f"{args.pages} pages generated in {seconds_generate:.0f} s", file=sys.stderr)
        # warm-up (sessions, caches)
        warm = load_image(paths[0])
        recognizer.recognise_arrays(cut_lines(warm, segment_page(warm), max_height=max_height))

        for page, path in zip(pages, paths):
            t = time.perf_counter()
            gray = load_image(path)
            t_load = time.perf_counter() - t
            t, c = time.perf_counter(), time.process_time()
            seg = segment_page(gray)
            crops = cut_lines(gray, seg, max_height=max_height)
            t_seg, c_seg = time.perf_counter() - t, time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            decoded = recognizer.recognise_arrays(crops) if crops else []
            t_rec, c_rec = time.perf_counter() - t, time.process_time() - c
            h, w = gray.shape
            truth = Segmentation(w, h, page.rotation_deg, 1.0,
                                 tuple(TextLine(ln.polygon, ln.baseline, ln.bbox) for ln in page.lines))
            t = time.perf_counter()
            truth_crops = cut_lines(gray, truth, max_height=max_height)
            t_truth_cut = time.perf_counter() - t
            t = time.perf_counter()
            truth_decoded = recognizer.recognise_arrays(truth_crops)
            t_truth_rec = time.perf_counter() - t
            m = match_lines([ln.polygon for ln in seg.lines], [ln.polygon for ln in page.lines], w, h)
            rows.append({
                "page": path.name, "ruled": page.ruled, "rotation_deg": round(page.rotation_deg, 3),
                "skew_found_deg": round(seg.angle, 3), "lines_true": m.truth, "lines_found": m.found,
                "matched": m.matched, "mean_iou": round(statistics.fmean(p[2] for p in m.pairs), 4) if m.pairs else 0.0,
                "reference": " ".join(ln.text for ln in page.lines),
                "prediction": " ".join(d.text for d in decoded),
                "prediction_truth_lines": " ".join(d.text for d in truth_decoded),
                "seconds_load": t_load, "seconds_segment": t_seg, "seconds_recognise": t_rec,
                "cpu_seconds_segment": c_seg, "cpu_seconds_recognise": c_rec,
                "seconds_truth_cut": t_truth_cut, "seconds_truth_recognise": t_truth_rec,
            })
            print(f"{path.name}: {m.matched}/{m.truth} lines, found {m.found}, seg {t_seg:.3f}s rec {t_rec:.3f}s",
                  file=sys.stderr)

        # end to end, as htr-run --segment runs it (pages segmented in threads while the model reads)
        reader = PageReader(recognizer)
        t = time.perf_counter()
        n_lines = sum(len(r.lines) for r in reader.read_paths(paths))
        seconds_e2e = time.perf_counter() - t
        # baseline: the same pages' ground-truth line images, already cut, read alone
        truth_images = []
        for page, path in zip(pages, paths):
            gray = load_image(path)
            h, w = gray.shape
            truth_images.append(cut_lines(gray, Segmentation(w, h, page.rotation_deg, 1.0, tuple(
                TextLine(ln.polygon, ln.baseline, ln.bbox) for ln in page.lines)), max_height=max_height))
        t = time.perf_counter()
        for images in truth_images:
            recognizer.recognise_arrays(images)
        seconds_lines_only = time.perf_counter() - t
    busy_after = busy_cpus()

    matched = sum(r["matched"] for r in rows)
    found = sum(r["lines_found"] for r in rows)
    true = sum(r["lines_true"] for r in rows)
    precision, recall = matched / found, matched / true
    f1 = 2 * precision * recall / (precision + recall)
    cer_seg = error_rates((r["reference"], r["prediction"]) for r in rows)
    cer_truth = error_rates((r["reference"], r["prediction_truth_lines"]) for r in rows)
    # the report keeps each page's error counts, not its texts: the synthetic text draws from
    # wordfreq's list, whose names would otherwise fill the report (the pages are re-made by seed)
    for r in rows:
        ref, seg_text, truth_text = r.pop("reference"), r.pop("prediction"), r.pop("prediction_truth_lines")
        r["characters"] = len(ref)
        r["char_errors_segmented"] = edit_distance(ref, seg_text)
        r["char_errors_truth_lines"] = edit_distance(ref, truth_text)
    med = {k: statistics.median(r[k] for r in rows) for k in ("seconds_load", "seconds_segment", "seconds_recognise")}
    share = med["seconds_segment"] / (med["seconds_load"] + med["seconds_segment"] + med["seconds_recognise"])
    share_no_load = med["seconds_segment"] / (med["seconds_segment"] + med["seconds_recognise"])
    cpu_seg = sum(r["cpu_seconds_segment"] for r in rows)
    cpu_rec = sum(r["cpu_seconds_recognise"] for r in rows)
    result = {
        "pages": len(rows), "seed": args.seed, "split": "heldout", "dpi": 300, "page_size": [2480, 3508],
        "lines_true": true, "lines_found": found, "lines_matched": matched,
        "precision": precision, "recall": recall, "f1_iou_0_5": f1,
        "cer_segmented": cer_seg.cer, "cer_truth_lines": cer_truth.cer,
        "cer_gap_points": 100 * (cer_seg.cer - cer_truth.cer),
        "wer_segmented": cer_seg.wer, "wer_truth_lines": cer_truth.wer,
        "median_seconds": med, "segment_share": share, "segment_share_without_decoding": share_no_load,
        "cpu_seconds_per_page_segment": cpu_seg / len(rows), "cpu_seconds_per_page_recognise": cpu_rec / len(rows),
        "segment_share_of_cpu_time": cpu_seg / (cpu_seg + cpu_rec),
        "lines_per_page": true / len(rows),
        "pages_per_second_end_to_end": len(rows) / seconds_e2e, "lines_end_to_end": n_lines,
        "pages_per_second_truth_lines_only": len(rows) / seconds_lines_only,
        "end_to_end_vs_lines_only": seconds_lines_only / seconds_e2e,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "onnxruntime_threads": args.threads,
                    "busy_cpus_before": busy_before, "busy_cpus_after": busy_after},
        "model": str(engine.path), "decoder": "greedy", "rows": rows,
    }
    write_report(result)


def draw(target: Path, seed: int, index: int, model: str) -> None:
    """A held-out page, its detected line polygons and baselines, and the text read beside it."""
    from htr.runtime.pages import PageReader

    engine = Engine(resolve_model(model), threads=2)
    reader = PageReader(Recognizer(engine, make_decoder("greedy", engine.spec.charset, engine.spec.blank)))
    page = PageGenerator(split="heldout", seed=seed, layout=PageLayout(dpi=300.0)).page(index)
    result = reader.read_image(page.image, f"held-out page {index}")
    s = 0.36
    picture = cv2.cvtColor(cv2.resize(page.image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    colours = [(40, 40, 220), (220, 110, 20)]
    for k, line in enumerate(result.lines):
        poly = np.round(np.asarray(line.line.polygon) * s).astype(np.int32)
        cv2.polylines(picture, [poly], True, colours[k % 2], 2, cv2.LINE_AA)
        base = np.round(np.asarray(line.line.baseline) * s).astype(np.int32)
        cv2.polylines(picture, [base], False, (30, 160, 30), 1, cv2.LINE_AA)
    h, w = picture.shape[:2]
    panel = np.full((h, int(w * 1.05), 3), 255, np.uint8)
    y = 40
    for k, line in enumerate(result.lines):
        cv2.putText(panel, f"{k + 1:2d} {line.text}"[:64], (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.48,
                    colours[k % 2], 1, cv2.LINE_AA)
        y += int((h - 60) / max(len(result.lines), 1))
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), np.hstack([picture, panel]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    try:  # 32 colours: a third of the size, no visible difference
        from PIL import Image

        Image.open(target).convert("RGB").quantize(colors=32, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    except ImportError:
        pass
    print(f"{target}: {len(result.lines)} lines found, {len(page.lines)} true; skew {result.angle:.2f} "
          f"(page turned {page.rotation_deg:.2f})")


def write_report(r: dict) -> None:
    REPORTS.mkdir(exist_ok=True)
    tmp = REPORTS / "pages.json.tmp"
    tmp.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(REPORTS / "pages.json")
    med = r["median_seconds"]
    m = r["machine"]
    ruled = [x for x in r["rows"] if x["ruled"]]
    text = f"""# Pages: segmentation and reading ({r['pages']} synthetic held-out pages)

A4 at 300 dpi ({r['page_size'][0]} x {r['page_size'][1]}), {r['lines_per_page']:.1f} lines a page on average,
hands never used in training, rotation up to 3 degrees, {len(ruled)} ruled and {r['pages'] - len(ruled)} plain,
photographed look (perspective, uneven light, vignetting, table or scanner edge, specks), JPEG.
Model `{Path(r['model']).name}`, greedy decoding. Made by `python benchmarks/bench_pages.py --pages {r['pages']}`
(seed {r['seed']}).

| measure | value | target |
| --- | --- | --- |
| line detection precision / recall at IoU 0.5 | {r['precision']:.4f} / {r['recall']:.4f} ({r['lines_matched']} of {r['lines_true']} true, {r['lines_found']} found) | |
| line detection F1 at IoU 0.5 | **{r['f1_iou_0_5']:.4f}** | >= 0.97 |
| page CER, segmented | {100 * r['cer_segmented']:.2f}% | |
| page CER, ground-truth lines cut the same way (baseline) | {100 * r['cer_truth_lines']:.2f}% | |
| gap | **{r['cer_gap_points']:+.2f} points** | within 1.5 |
| page WER, segmented / ground-truth lines | {100 * r['wer_segmented']:.1f}% / {100 * r['wer_truth_lines']:.1f}% | |
| median seconds per page: decode JPEG / segment + cut / recognise | {med['seconds_load']:.3f} / {med['seconds_segment']:.3f} / {med['seconds_recognise']:.3f} | |
| share of a page's time spent segmenting (with decoding / without) | **{100 * r['segment_share']:.0f}%** / {100 * r['segment_share_without_decoding']:.0f}% | <= 25% |
| CPU seconds per page (all threads): segment + cut / recognise; segmenting's share | {r['cpu_seconds_per_page_segment']:.3f} / {r['cpu_seconds_per_page_recognise']:.3f}; **{100 * r['segment_share_of_cpu_time']:.0f}%** | <= 25% |
| pages/s end to end (`PageReader.read_paths`, as `htr-run --segment`) | {r['pages_per_second_end_to_end']:.2f} | |
| pages/s reading the ground-truth line images alone (baseline) | {r['pages_per_second_truth_lines_only']:.2f} | |

Machine: {m['cpu']}, {m['cores']} cores, onnxruntime on {m['onnxruntime_threads']} threads. CPUs kept busy by other
work (a training run shares this machine): {m['busy_cpus_before']} before, {m['busy_cpus_after']} after; the
timings are only as steady as that allows.
"""
    tmp = REPORTS / "pages.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(REPORTS / "pages.md")
    print(text)


if __name__ == "__main__":
    main()
