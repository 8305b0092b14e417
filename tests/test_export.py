"""htr.export: every accepted model form exports with parity, on the CPU, with real tf2onnx.

Tiny models only (tens of thousands of parameters): the whole file runs in well under
3 minutes on 2 cores. The Keras-2 checkpoint is made by benchmarks/make_seed_checkpoint.py
--tiny in a subprocess (tf_keras, the notebook's two Lambdas, optimizer state).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")
cv2 = pytest.importorskip("cv2")
h5py = pytest.importorskip("h5py")
onnx = pytest.importorskip("onnx")

from htr.export import convert, keras_model, verify  # noqa: E402
from htr.export.errors import ExportError  # noqa: E402
from htr.runtime.decoding import greedy_decode  # noqa: E402
from htr.runtime.engine import Engine  # noqa: E402
from htr.runtime.images import load_image  # noqa: E402
from htr.runtime.metadata import InputSpec, ModelSpec, PreprocessSpec, TimeSteps  # noqa: E402
from htr.runtime.preprocess import Preprocessor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "make_seed_checkpoint.py"
TOL = 1e-5


def _quiet(msg: str) -> None:
    pass


# ---- fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def legacy_h5(tmp_path_factory) -> Path:
    """The notebook's training model (tiny widths) saved by tf_keras' ModelCheckpoint."""
    out = tmp_path_factory.mktemp("legacy") / "adam_best.hdf5"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), "--tiny",
                           "--inference-out", str(out.with_name("act_model.h5"))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i, word in enumerate(["ab", "hello", "Tiny", "x1"]):
        img = np.full((40, 40 + 25 * len(word)), 255, np.uint8)
        cv2.putText(img, word, (3, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2)
        cv2.imwrite(str(folder / f"w{i}.png"), img)
    return folder


@keras.saving.register_keras_serializable(package="htr_test_export")
class CTCHead(keras.layers.Layer):
    """A Keras 3 CTC training head: (probs, labels, input_length, label_length) -> loss (B, 1)."""

    def call(self, inputs):
        y_pred, labels, input_length, label_length = inputs
        logits = keras.ops.log(y_pred + 1e-7)
        loss = keras.ops.ctc_loss(
            keras.ops.cast(labels, "int32"), logits,
            keras.ops.cast(label_length[:, 0], "int32"), keras.ops.cast(input_length[:, 0], "int32"),
            mask_index=y_pred.shape[-1] - 1,
        )
        return keras.ops.expand_dims(loss, 1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], 1)


def keras3_training_model(classes: int = 11):
    """Tiny functional CRNN: 16x64 -> 16 steps, with a CTC head on three extra inputs."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 64, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(inp)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D((2, 1))(x)
    x = keras.layers.MaxPooling2D((2, 1))(x)
    x = keras.layers.Reshape((-1, 16), name="squeeze")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True))(x)
    probs = keras.layers.Dense(classes, activation="softmax", name="probs")(x)
    labels = keras.Input((8,), name="labels")
    in_len = keras.Input((1,), name="input_length")
    lab_len = keras.Input((1,), name="label_length")
    loss = CTCHead(name="ctc")([probs, labels, in_len, lab_len])
    return keras.Model([inp, labels, in_len, lab_len], loss), keras.Model(inp, probs)


def _probe(h: int, w: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(5).random((n, h, w, 1), dtype=np.float32)


def _export(path: Path, out: Path, **kwargs):
    dyn = kwargs.pop("dynamic_width", False)
    loaded = keras_model.load(path, dynamic_width=dyn, output_layer=kwargs.pop("output_layer", None))
    onnx_path, spec = convert.export(loaded, out, warn=_quiet, **kwargs)
    return loaded, onnx_path, spec


# ---- Keras-2 checkpoints (the seed notebook) --------------------------------------------
def test_legacy_training_checkpoint_exports_and_runs(legacy_h5, images, tmp_path):
    loaded, onnx_path, spec = _export(legacy_h5, tmp_path / "seed.onnx")
    assert loaded.kind == "keras2-hdf5" and loaded.output_layer == "dense"
    assert loaded.model.count_params() == 37247
    assert spec.num_classes == 79 and spec.blank == 78 and spec.input == InputSpec(32, 128)
    assert spec.time_steps == TimeSteps(stride=4, offset=-1)
    assert spec.source["file"] == legacy_h5.name and len(spec.source["sha256"]) == 64
    assert spec.source["keras_version"].startswith("2.")
    assert {"keras", "tensorflow", "tf2onnx"} <= set(spec.source["exported_with"])

    # The tf_keras prediction saved by the script: same weights, same graph.
    probe = np.load(str(legacy_h5) + ".probe.npz")
    engine = Engine(onnx_path)
    assert np.abs(engine.run(probe["x"]) - probe["y"]).max() < TOL

    results = verify.verify_export(onnx_path, loaded.model, spec, check=[str(images)])
    assert [r.samples for r in results] == [4, 4]
    assert all(r.max_abs_diff < TOL and r.text_agree == r.samples for r in results)

    # The runtime recognises an image written to disk, exactly as Keras does.
    img_path = images / "w1.png"
    pre = Preprocessor.from_spec(engine.spec)
    pixels = pre.batch([pre(load_image(img_path))]).pixels
    got = engine.run(pixels)
    want = np.asarray(loaded.model(pixels, training=False))
    assert np.abs(got - want).max() < TOL
    assert greedy_decode(got[0], engine.spec.charset, engine.spec.blank).text == \
        greedy_decode(want[0], engine.spec.charset, engine.spec.blank).text


def test_legacy_inference_model_h5(legacy_h5, tmp_path):
    act = legacy_h5.with_name("act_model.h5")
    loaded = keras_model.load(act)
    assert loaded.kind == "keras2-hdf5" and loaded.count_params() == 37247
    probe = np.load(str(legacy_h5) + ".probe.npz")
    assert np.abs(np.asarray(loaded.model(probe["x"], training=False)) - probe["y"]).max() < TOL


def test_legacy_checkpoint_with_corrupt_lambda_bytecode(legacy_h5, tmp_path):
    bad = tmp_path / "corrupt.hdf5"
    shutil.copy(legacy_h5, bad)
    with h5py.File(bad, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        lambdas = [l for l in config["config"]["layers"] if l["class_name"] == "Lambda"]
        assert len(lambdas) == 2
        for layer in lambdas:
            layer["config"]["function"] = ["bm90IGJ5dGVjb2Rl\n", None, None]  # "not bytecode"
        f.attrs["model_config"] = json.dumps(config)
    loaded, onnx_path, spec = _export(bad, tmp_path / "corrupt.onnx", dynamic_width=True)
    assert spec.input.width is None and spec.preprocess.resize == "dynamic"
    probe = np.load(str(legacy_h5) + ".probe.npz")
    assert np.abs(Engine(onnx_path).run(probe["x"]) - probe["y"]).max() < TOL
    # Dynamic width: a wider input gives more steps, as the metadata says.
    wide = _probe(32, 200, 2)
    out = Engine(onnx_path).run(wide)
    assert out.shape[1] == spec.time_steps.for_width(200) == 49
    assert np.abs(out - np.asarray(loaded.model(wide, training=False))).max() < TOL


def test_unknown_lambda_is_refused(legacy_h5, tmp_path):
    bad = tmp_path / "odd.hdf5"
    shutil.copy(legacy_h5, bad)
    with h5py.File(bad, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        # Move the squeeze Lambda after the first BiLSTM's input: it now sees a 3-D tensor.
        names = [l["name"] for l in layers]
        lam = layers[names.index("lambda")]
        bi = layers[names.index("bidirectional")]
        extra = json.loads(json.dumps(lam))
        extra["name"] = extra["config"]["name"] = "lambda_extra"
        extra["inbound_nodes"] = [[["lambda", 0, 0, {}]]]
        bi["inbound_nodes"] = [[["lambda_extra", 0, 0, {}]]]
        layers.insert(names.index("bidirectional"), extra)
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ExportError, match="lambda_extra.*cannot be mapped"):
        keras_model.load(bad)


# ---- Keras 3 files (htr-train) ------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_model_with_ctc_head(suffix, tmp_path, images):
    train_model, infer = keras3_training_model()
    path = tmp_path / f"crnn{suffix}"
    train_model.save(path)
    charset = "0123456789"
    ModelSpec(charset=charset, blank=10, input=InputSpec(16, 64), preprocess=PreprocessSpec(resize="pad"),
              time_steps=TimeSteps(4, 0), source={"epochs": 3, "val_cer": 0.25}).save_json(path.with_suffix(".json"))

    loaded, onnx_path, spec = _export(path, tmp_path / "crnn.onnx")
    assert loaded.kind == "keras3" and loaded.output_layer == "probs"
    assert spec.charset == tuple(charset) and spec.source["epochs"] == 3
    assert spec.source["charset_from"] == "crnn.json"
    assert spec.time_steps == TimeSteps(stride=4, offset=0)
    x = _probe(16, 64)
    want = np.asarray(infer(x, training=False))
    assert np.abs(Engine(onnx_path).run(x) - want).max() < TOL
    results = verify.verify_export(onnx_path, loaded.model, spec, check=[str(images)])
    assert all(r.max_abs_diff < TOL for r in results)


def test_keras3_dynamic_width_and_output_layer(tmp_path):
    train_model, infer = keras3_training_model()
    path = tmp_path / "crnn.keras"
    train_model.save(path)
    loaded, onnx_path, spec = _export(path, tmp_path / "dyn.onnx", dynamic_width=True, output_layer="probs",
                                      charset="0123456789")
    assert loaded.dynamic_width and spec.input.width is None
    x = _probe(16, 100)
    got = Engine(onnx_path).run(x)
    assert got.shape == (3, 25, 11) and spec.time_steps.for_width(100) == 25
    assert np.abs(got - np.asarray(loaded.model(x, training=False))).max() < TOL


def test_charset_that_does_not_fit_is_a_clear_error(tmp_path):
    train_model, _ = keras3_training_model(classes=11)
    path = tmp_path / "crnn.keras"
    train_model.save(path)
    loaded = keras_model.load(path)
    with pytest.raises(ExportError, match=r"outputs 11 classes.*3 characters \+ 1 blank = 4") as info:
        convert.resolve_spec(loaded, charset="abc", warn=_quiet)
    assert "crnn.keras" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ExportError, match="outputs 11 classes per step and no charset is known"):
        convert.resolve_spec(loaded, warn=_quiet)
    # A charset file: one JSON list.
    cs = tmp_path / "chars.json"
    cs.write_text(json.dumps(list("0123456789")))
    spec, origin = convert.resolve_spec(loaded, charset=str(cs), warn=_quiet)
    assert spec.charset == tuple("0123456789") and origin == "--charset"


def test_cli_exit_codes_and_summary(legacy_h5, images, tmp_path):
    from typer.testing import CliRunner

    from htr.export.cli import app

    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    result = runner.invoke(app, [str(legacy_h5), "-o", str(out), "--charset", "abc"])
    assert result.exit_code == 2
    assert "79 classes" in result.output and "3 characters + 1 blank = 4" in result.output
    result = runner.invoke(app, [str(tmp_path / "missing.h5")])
    assert result.exit_code == 2 and "missing.h5" in result.output
    result = runner.invoke(app, [str(legacy_h5), "-o", str(out), "--check", str(images), "--width", "128"])
    assert result.exit_code == 0, result.output
    for word in ("inputs", "outputs", "parameters 37,247", "128 px -> 31", "real images: 4 inputs", "seed notebook"):
        assert word in result.output
    assert Engine(out).spec.charset[0] == "!"


def test_unknown_custom_head_class_is_a_placeholder(tmp_path):
    train_model, infer = keras3_training_model()
    path = tmp_path / "crnn.keras"
    train_model.save(path)
    registry = keras.saving.get_custom_objects()
    saved = {k: registry.pop(k) for k in [k for k in registry if k.endswith("CTCHead")]}
    try:
        loaded = keras_model.load(path)
    finally:
        registry.update(saved)
    assert any("CTCHead" in n and "placeholder" in n for n in loaded.notes)
    x = _probe(16, 64)
    assert np.abs(np.asarray(loaded.model(x, training=False)) - np.asarray(infer(x, training=False))).max() < TOL


def test_fp16_and_int8_variants(legacy_h5, images, tmp_path):
    pytest.importorskip("onnxconverter_common")
    from htr.export import quantize

    _, onnx_path, spec = _export(legacy_h5, tmp_path / "q.onnx")
    sess = verify.session(onnx_path)
    assert [d for d in sess.get_inputs()[0].shape] == ["batch", 32, 128, 1]
    half = quantize.to_fp16(onnx_path, tmp_path / "q.fp16.onnx", spec, [])
    assert half.parity is not None and half.parity.max_abs_diff < 1e-2
    assert half.size < onnx_path.stat().st_size
    int8 = quantize.to_int8(onnx_path, tmp_path / "q.int8.onnx", spec, [str(images)], [])
    assert int8.parity is not None and int8.parity.samples == 4 and int8.parity.max_abs_diff < 0.1
    lstm8 = quantize.to_lstm8(onnx_path, tmp_path / "q.lstm8.onnx", spec, [])
    assert lstm8.parity is not None and lstm8.parity.max_abs_diff < 0.1
    ops = {v.kind: {n.op_type for n in onnx.load(str(v.path)).graph.node} for v in (int8, lstm8)}
    assert "LSTM" not in ops["int8"] | ops["lstm8"] and "DynamicQuantizeLSTM" in ops["int8"] & ops["lstm8"]
    assert "QuantizeLinear" in ops["int8"] and "QuantizeLinear" not in ops["lstm8"]  # lstm8: convs stay float32
    quantization = {"fp16": "fp16", "int8": "int8-qdq-static+lstm-int8-dynamic", "lstm8": "fp32+lstm-int8-dynamic"}
    for v in (half, int8, lstm8):
        engine = Engine(v.path)  # metadata survives quantization
        assert engine.spec.charset == spec.charset
        assert engine.spec.source["quantization"] == quantization[v.kind]


def test_calibration_and_check_folders_are_searched_recursively(tmp_path):
    nested = tmp_path / "set" / "images" / "0000"  # the layout htr-synth writes
    nested.mkdir(parents=True)
    cv2.imwrite(str(nested / "0000000.png"), np.full((20, 40), 255, np.uint8))
    (tmp_path / "set" / "labels.tsv").write_text("images/0000/0000000.png\tx\n")
    assert verify.image_files([tmp_path / "set"]) == [nested / "0000000.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="empty: folder has no png"):
        verify.image_files([tmp_path / "empty"])


def test_a_layer_tf2onnx_cannot_convert_is_one_line_from_the_real_command(tmp_path):
    # Discretization becomes TensorFlow's Bucketize, which tf2onnx leaves unconverted.
    inp = keras.Input((32, 128, 1), name="image")
    x = keras.layers.Permute((2, 1))(keras.layers.Reshape((32, 128))(inp))
    x = keras.layers.Discretization(bin_boundaries=[0.1, 0.5], name="bins")(x)
    keras.Model(inp, keras.layers.Dense(79, activation="softmax", name="probs")(x)).save(tmp_path / "odd.keras")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("htr-export")), str(tmp_path / "odd.keras"), "-o", str(tmp_path / "odd.onnx")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("htr-export:") and "warning" not in ln]
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        re.escape(f"htr-export: {tmp_path / 'odd.keras'}: tf2onnx cannot convert the TensorFlow op(s) Bucketize (layer ")
        + r"bins(_\d+)?" + re.escape(") to ONNX; replace these layers with ones ONNX supports (Conv, Dense, LSTM, ...)"),
        lines[0],
    ), lines[0]
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    assert not (tmp_path / "odd.onnx").exists()


def test_cli_output_is_the_precision_asked_for(legacy_h5, tmp_path):
    """-o X --lstm8 writes the lstm8 model to X (fp32 beside it only with --keep-fp32);
    two precisions at once are a usage error."""
    from typer.testing import CliRunner

    from htr.export.cli import app

    runner = CliRunner()
    out = tmp_path / "word.onnx"
    result = runner.invoke(app, [str(legacy_h5), "-o", str(out), "--lstm8"])
    assert result.exit_code == 0, result.output
    assert Engine(out).spec.source.get("quantization") == "fp32+lstm-int8-dynamic"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["word.onnx"]
    kept = tmp_path / "kept.onnx"
    result = runner.invoke(app, [str(legacy_h5), "-o", str(kept), "--lstm8", "--keep-fp32"])
    assert result.exit_code == 0, result.output
    assert "quantization" not in Engine(tmp_path / "kept.fp32.onnx").spec.source
    assert Engine(kept).spec.source.get("quantization") == "fp32+lstm-int8-dynamic"
    result = runner.invoke(app, [str(legacy_h5), "-o", str(tmp_path / "two.onnx"), "--lstm8", "--fp16"])
    assert result.exit_code == 2 and "one precision per export" in result.output
    assert not (tmp_path / "two.onnx").exists()
