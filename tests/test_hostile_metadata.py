"""Models whose htr metadata has the right keys but wrong types: one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import onnx
import pytest
from runtime_fixtures import draw_word, make_tiny_model

from htr.runtime.errors import MetadataError
from htr.runtime.metadata import ModelSpec

HTR_RUN = str(Path(sys.executable).with_name("htr-run"))

DEEP = "[" * 5000 + "]" * 5000

# (key, change to its JSON object or a whole new value, what the one line must say)
CASES = [
    ("htr.preprocess", {"scale": "x"}, "htr.preprocess scale must be a finite number above 0 (e.g. 1/255), got \"x\""),
    ("htr.preprocess", {"scale": 0}, "htr.preprocess scale must be a finite number above 0"),
    ("htr.preprocess", {"scale": float("nan")}, "htr.preprocess scale must be a finite number above 0 (e.g. 1/255), got NaN"),
    ("htr.preprocess", {"pad_value": "white"}, 'htr.preprocess pad_value must be an integer grey level 0..255, got "white"'),
    ("htr.preprocess", {"invert": "no"}, 'htr.preprocess invert must be true or false, got "no"'),
    ("htr.preprocess", {"width_multiple": 2.5}, "htr.preprocess width_multiple must be a positive integer, got 2.5"),
    ("htr.time_steps", {"offset": "x"}, 'htr.time_steps offset must be an integer, got "x"'),
    ("htr.input", {"height": 32.0}, "htr.input height must be a positive integer, got 32.0"),
    ("htr.source", DEEP, "htr.source nests deeper than 32 levels"),
    ("htr.input", "[1, 2]", "malformed htr metadata"),
]


def _bad_model(tmp_path: Path, key: str, change) -> Path:
    path = make_tiny_model(tmp_path / "good.onnx", width=None)
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == key:
            if isinstance(change, dict):
                doc = json.loads(prop.value)
                doc.update(change)
                prop.value = json.dumps(doc)  # NaN is written as NaN, as Python's json reads it
            else:
                prop.value = change
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    return bad


@pytest.mark.parametrize("key, change, message", CASES, ids=[c[2][:40] for c in CASES])
def test_wrong_types_in_metadata_are_one_line(tmp_path, key, change, message):
    bad = _bad_model(tmp_path, key, change)
    props = {p.key: p.value for p in onnx.load(str(bad)).metadata_props}
    with pytest.raises(MetadataError) as caught:
        ModelSpec.from_props(props, bad)
    assert message in str(caught.value) and str(caught.value).startswith(f"{bad}: ")


@pytest.mark.parametrize("case", [0, 3, 4, 6, 8])
def test_htr_run_on_a_model_with_wrong_types_exits_2_with_one_line(tmp_path, case):
    key, change, message = CASES[case]
    bad = _bad_model(tmp_path, key, change)
    cv2.imwrite(str(tmp_path / "a.png"), draw_word("ab"))
    result = subprocess.run([HTR_RUN, str(tmp_path / "a.png"), "-m", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"htr-run: error: {bad}: ") and message in lines[0], lines
    assert result.stdout == ""
