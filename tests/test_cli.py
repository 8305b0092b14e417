"""htr-run and htr-eval end to end through typer's runner, on images written to disk."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from runtime_fixtures import FAULTY_GREEDY, draw_word, make_tiny_model
from typer.testing import CliRunner

from htr.runtime.cli import eval_app, run_app
from htr.runtime.datasets import load_labelled

WORDS = {"01.png": "ab", "02.png": "ba", "03.png": "aab", "04.png": "b"}


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart already
        return CliRunner()


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for name, text in WORDS.items():
        cv2.imwrite(str(root / name), draw_word(text))
    return root


def _with_bad_files(root):
    (root / "05_empty.png").write_bytes(b"")
    (root / "06_text.png").write_bytes(b"just some text")
    ok, buf = cv2.imencode(".png", np.full((40, 80), 200, np.uint8))
    (root / "07_truncated.png").write_bytes(buf.tobytes()[: len(buf) // 2])
    cv2.imwrite(str(root / "08_dot.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(root / "09_ab.png"), draw_word("ab"))


def test_run_prints_each_transcription(folder, tiny_models):
    result = _runner().invoke(run_app, [str(folder), "--model", str(tiny_models["fixed"])])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == [f"{folder / name}\t{text}" for name, text in WORDS.items()]
    assert "4 images, 0 failed" in result.stderr and "images/s" in result.stderr


def test_run_reports_every_bad_file_and_keeps_the_rest(folder, tiny_models):
    _with_bad_files(folder)
    result = _runner().invoke(
        run_app, [str(folder), "-m", str(tiny_models["dynamic"]), "--format", "jsonl", "--batch-size", "2"]
    )
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("text") for r in records] == ["ab", "ba", "aab", "b", None, None, None, None, "ab"]
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"htr-run: error: {folder / '05_empty.png'}: is empty (0 bytes), expected a png, jpg, tif or bmp image",
        f"htr-run: error: {folder / '06_text.png'}: is not a png, jpg, tif or bmp image",
        f"htr-run: error: {folder / '07_truncated.png'}: is a corrupt or truncated png image",
        f"htr-run: error: {folder / '08_dot.png'}: is 1x1 pixels, expected at least 4x4",
    ]
    assert "9 images, 4 failed" in result.stderr
    assert records[0]["confidence"] > 0.5 and len(records[0]["char_confidences"]) == 2


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_run_writes_table_formats_to_a_file(folder, tiny_models, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    result = _runner().invoke(
        run_app, [str(folder / "01.png"), str(folder / "02.png"), "-m", str(tiny_models["fixed"]), "-f", fmt, "-o", str(out), "-d", "beam"]
    )
    assert result.exit_code == 0, result.stderr
    rows = out.read_text().splitlines()
    sep = "\t" if fmt == "tsv" else ","
    assert rows[0] == sep.join(["path", "text", "confidence"])
    assert [r.split(sep)[1] for r in rows[1:]] == ["ab", "ba"]


def test_run_usage_errors(folder, tiny_models, tmp_path):
    runner = _runner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(run_app, [str(empty), "-m", str(tiny_models["fixed"])])
    assert result.exit_code == 1 and "folder has no png, jpg, tif or bmp images" in result.stderr
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    result = runner.invoke(run_app, [str(folder), "-m", str(junk)])
    assert result.exit_code == 2 and f"{junk}: is not a loadable ONNX model" in result.stderr
    bare = make_tiny_model(tmp_path / "bare.onnx", metadata=False)
    result = runner.invoke(run_app, [str(folder), "-m", str(bare)])
    assert result.exit_code == 2 and "no htr metadata" in result.stderr
    result = runner.invoke(run_app, [str(folder), "-m", str(tiny_models["fixed"]), "--decoder", "nope"])
    assert result.exit_code == 2
    result = runner.invoke(run_app, [str(folder), "-m", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 2 and "no such model file" in result.stderr
    model = ["-m", str(tiny_models["fixed"])]
    result = runner.invoke(run_app, [str(folder), *model, "--decoder", "beam", "--lm", str(tmp_path / "nolm.json")])
    assert result.exit_code == 2 and f"{tmp_path / 'nolm.json'}: no such language model file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(run_app, [str(folder), *model, "--lm", "words"])
    assert result.exit_code == 2 and "--lm and --lm-weight need --decoder beam or lexicon" in result.stderr


def test_run_beam_with_a_bundled_lm_by_name(folder, tiny_models):
    result = _runner().invoke(run_app, [str(folder), "-m", str(tiny_models["fixed"]), "--decoder", "beam", "--lm", "words"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == len(list(folder.glob("*.png")))


def test_run_reads_only_the_chars_asked_for(folder, tiny_models):
    model = ["-m", str(tiny_models["fixed"])]
    result = _runner().invoke(run_app, [str(folder), *model, "--chars", "b", "--format", "tsv"])
    assert result.exit_code == 0, result.stderr
    texts = [row.split("\t")[1] for row in result.stdout.splitlines()[1:]]
    assert len(texts) == len(WORDS) and all(set(t) <= {"b"} for t in texts)
    assert texts[3] == "b"  # without --chars three of the four read an 'a'
    result = _runner().invoke(run_app, [str(folder), *model, "--chars", "bz"])
    assert result.exit_code == 2 and "'z' not in the model's charset" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_cuda_absent_is_a_loud_error(folder, tiny_models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    result = _runner().invoke(run_app, [str(folder), "-m", str(tiny_models["fixed"]), "--provider", "cuda"])
    assert result.exit_code == 2 and "CUDAExecutionProvider" in result.stderr and result.stdout == ""


def _labelled(folder):
    rows = [f"{name}\t{text}" for name, text in WORDS.items()]
    rows[1] = "02.png\tbb"  # one wrong reference: 1 char error, 1 word error
    (folder / "labels.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_eval_reports_cer_wer_worst_and_json(folder, tiny_models, tmp_path):
    report = tmp_path / "report.json"
    result = _runner().invoke(
        eval_app, [str(_labelled(folder)), "-m", str(tiny_models["fixed"]), "--report", str(report)]
    )
    assert result.exit_code == 0, result.stderr
    assert "CER       12.50%  (1/8 characters)" in result.stdout
    assert "WER       25.00%  (1/4 words)" in result.stdout
    assert "'bb' -> 'ba'" in result.stdout
    doc = json.loads(report.read_text())
    assert doc["char_errors"] == 1 and doc["chars"] == 8 and len(doc["samples"]) == 4


def test_eval_on_an_iam_root(tmp_path, tiny_models):
    root = tmp_path / "iam"
    words = [("a01-000u-00-00", "ok", "ab"), ("a01-000u-00-01", "err", "ba"), ("a01-000u-00-02", "ok", "b"),
             ("a01-000u-00-03", "ok", "aab")]
    lines = ["#--- words.txt ---", "# format: a01-000u-00-00 ok 154 1 408 768 27 51 AT A"]
    for ident, status, text in words:
        lines.append(f"{ident} {status} 154 408 768 27 51 NN {text}")
        if ident != "a01-000u-00-03":  # this image is missing on disk: skipped with a count
            target = root / "words" / "a01" / "a01-000u" / f"{ident}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), draw_word(text))
    (root / "words.txt").write_text("\n".join(lines) + "\n")
    data = load_labelled(root)
    assert [s.text for s in data.samples] == ["ab", "b"]
    assert data.skipped == {"status err": 1, "missing image": 1}
    result = _runner().invoke(eval_app, [str(root), "-m", str(tiny_models["dynamic"])])
    assert result.exit_code == 0, result.stderr
    assert "CER       0.00%" in result.stdout and "skipped 1 records (missing image)" in result.stderr


def test_iam_lines_and_the_notebook_split(tmp_path):
    root = tmp_path / "iam"
    (root / "ascii").mkdir(parents=True)
    rows = ["# comment"] + [f"a01-000u-{i:02d} ok 154 19 408 746 1661 89 A|MOVE|to|{i}" for i in range(1, 21)]
    (root / "ascii" / "lines.txt").write_text("\n".join(rows) + "\n")
    data = load_labelled(root, check_files=False)
    assert data.kind == "iam-lines" and data.samples[0].text == "A MOVE to 1"
    assert str(data.samples[0].path).endswith("lines/a01/a01-000u/a01-000u-01.png")
    val = load_labelled(root, split="val", check_files=False)
    train = load_labelled(root, split="train", check_files=False)
    assert [s.id for s in val.samples] == ["a01-000u-10", "a01-000u-20"]  # file lines 10 and 20
    assert len(train) == 18
    (tmp_path / "split.txt").write_text("a01-000u-03\n")
    assert [s.id for s in load_labelled(root, split="val", split_file=tmp_path / "split.txt", check_files=False).samples] == ["a01-000u-03"]


def test_cli_module_imports_nothing_heavy():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys; from htr.runtime.cli import run_app; "
                          "print(sorted(m for m in ('numpy','cv2','onnxruntime','tensorflow') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # nothing heavy is imported just to show --help


# ---- per-image failures through the real command, in a subprocess -------------------
def _htr_run(args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + "\nimport sys\nfrom htr.runtime.cli import run_app\nsys.argv[0] = 'htr-run'\nrun_app()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_a_model_returning_nan_for_one_image_fails_only_that_image(folder, tmp_path):
    model = make_tiny_model(tmp_path / "nan.onnx", width=None, nan_when_black=True)
    cv2.imwrite(str(folder / "03_black.png"), np.zeros((32, 60), np.uint8))
    r = _htr_run([str(folder), "-m", str(model), "--batch-size", "8"])
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [f"{folder / name}\t{text}" for name, text in WORDS.items()]
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert errors == [f"htr-run: error: {folder / '03_black.png'}: the model's output has NaN or infinite values"]
    assert "5 images, 1 failed" in r.stderr


def test_a_decoder_that_raises_on_one_image_fails_only_that_image(folder, tiny_models):
    r = _htr_run([str(folder), "-m", str(tiny_models["fixed"]), "--format", "jsonl"], prelude=FAULTY_GREEDY)
    assert r.returncode == 1, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec.get("text") for rec in records] == ["ab", None, "aab", "b"]
    assert records[1]["error"] == f"{folder / '02.png'}: decoder failed: RuntimeError: injected failure on 'ba'"
    assert "4 images, 1 failed" in r.stderr and "Traceback" not in r.stderr
