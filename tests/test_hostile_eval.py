"""htr-eval as a real process on hostile labelled folders and report paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from runtime_fixtures import draw_word

from htr.runtime.datasets import load_labelled
from htr.runtime.errors import DatasetError

HTR_EVAL = str(Path(sys.executable).with_name("htr-eval"))


def _folder(root: Path, labels: str) -> Path:
    root.mkdir()
    for name, text in (("a.png", "ab"), ("b.png", "ba")):
        cv2.imwrite(str(root / name), draw_word(text))
    (root / "labels.tsv").write_bytes(labels.encode("utf-8"))
    return root


def test_a_utf8_bom_does_not_drop_the_first_label(tmp_path, tiny_models):
    root = _folder(tmp_path / "bom", "\ufeffa.png\tab\nb.png\tba\n")
    data = load_labelled(root)
    assert [s.text for s in data.samples] == ["ab", "ba"] and data.skipped == {}
    result = subprocess.run([HTR_EVAL, str(root), "-m", str(tiny_models["dynamic"])], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "2 images, 0 unreadable" in result.stdout and "CER       0.00%" in result.stdout


@pytest.mark.parametrize("rel", ["../outside.png", "sub/../../outside.png", "/etc/hostname"])
def test_paths_leaving_the_folder_are_refused_with_one_line(tmp_path, tiny_models, rel):
    cv2.imwrite(str(tmp_path / "outside.png"), draw_word("ab"))
    root = _folder(tmp_path / "set", f"a.png\tab\n{rel}\tab\n")
    with pytest.raises(DatasetError, match=r"labels.tsv: line 2: path .* is outside the folder"):
        load_labelled(root)
    result = subprocess.run([HTR_EVAL, str(root), "-m", str(tiny_models["dynamic"])], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"htr-eval: error: {root / 'labels.tsv'}: line 2: path {rel!r} is outside the folder; expected a path relative to {root}"
    ]


def test_an_unwritable_report_is_refused_before_the_evaluation(tmp_path, tiny_models):
    root = _folder(tmp_path / "set", "a.png\tab\nb.png\tba\n")
    for report, why in ((tmp_path / "no" / "such" / "r.json", "folder"), (tmp_path, "is a folder")):
        result = subprocess.run(
            [HTR_EVAL, str(root), "-m", str(tiny_models["dynamic"]), "--report", str(report)],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"htr-eval: error: {report}: ") and why in lines[0], lines
        assert "CER" not in result.stdout  # nothing was evaluated
    good = tmp_path / "r.json"
    result = subprocess.run([HTR_EVAL, str(root), "-m", str(tiny_models["dynamic"]), "--report", str(good)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and json.loads(good.read_text())["images"] == 2
