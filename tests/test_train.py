"""htr.train: architectures, metadata, label encoding, a tiny training run, resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
cv2 = pytest.importorskip("cv2")

from htr.runtime.metadata import ModelSpec  # noqa: E402
from htr.train import models  # noqa: E402
from htr.train.data import (  # noqa: E402
    SKIP_TOO_LONG,
    SKIP_UNKNOWN,
    CTCDataset,
    LabelEncoder,
    LabelledSource,
    required_steps,
)

WORDS = ["cab", "bad", "dab", "ace", "bead", "face", "deed", "fad", "add", "cafe", "bed", "dace"]


def draw(text: str, height: int = 40) -> np.ndarray:
    """Dark text on white paper, in a plain OpenCV font."""
    width = 22 * len(text) + 16
    image = np.full((height, width), 255, np.uint8)
    cv2.putText(image, text, (8, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
    return image


def write_set(root, texts, bad_lines=()):
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        name = f"img{i:03d}.png"
        cv2.imwrite(str(root / name), draw(text))
        lines.append(f"{name}\t{text}")
    lines.extend(bad_lines)
    (root / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    rng = np.random.default_rng(0)
    texts = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=120)]
    return write_set(tmp_path_factory.mktemp("tiny_set"), texts)


# ---- architectures ---------------------------------------------------------------------


def test_seed_word_is_the_notebook_model():
    built = models.build("seed-word")
    model = built.inference
    assert model.count_params() == 8_743_247
    assert tuple(model.input.shape) == (None, 32, 128, 1)
    assert tuple(model.output.shape) == (None, 31, 79)
    assert model.layers[-1].name == models.PROBS
    spec = built.spec
    assert spec.blank == 78 == len(spec.charset)
    assert spec.time_steps.for_width(128) == 31
    assert models.output_steps(model, 32, 128) == 31


@pytest.mark.parametrize("arch", ["seed-line", "lean", "tiny"])
def test_time_steps_metadata_matches_the_real_output(arch):
    built = models.build(arch)
    spec = built.spec
    assert spec.input.width is None and spec.preprocess.resize == "dynamic"
    assert built.inference.output.shape[-1] == spec.num_classes
    multiple = spec.preprocess.width_multiple
    widths = [64, 128, 200, 328] + ([800] if arch == "seed-line" else [])
    for width in widths:
        width = -(-width // multiple) * multiple
        assert models.output_steps(built.inference, spec.input.height, width) == spec.time_steps.for_width(width), width
    if arch == "seed-line":
        assert spec.time_steps.for_width(800) == 100
        assert " " in spec.charset


def test_lean_costs_a_fraction_of_seed_word():
    seed = models.count_flops(models.build("seed-word").inference, 128)
    lean = models.count_flops(models.build("lean").inference, 128)
    assert 1.5e9 < seed < 2e9
    assert lean < seed / 10


def test_ctc_blank_is_last():
    built = models.build("tiny", charset="ab")
    trainer = built.training_model()
    assert trainer.blank == 2 == built.spec.blank
    # A perfect "a" prediction (a then blanks) costs almost nothing with blank = last.
    steps = 8
    logits = np.full((1, steps, 3), -20.0, np.float32)
    logits[0, 0, 0] = 20.0
    logits[0, 1:, 2] = 20.0
    y = {"labels": np.array([[0, 0]], np.int32), "label_length": np.array([1], np.int32), "logit_length": np.array([steps], np.int32)}
    assert float(models.ctc_loss(y, logits, blank=2)) < 1e-3


# ---- data -----------------------------------------------------------------------------


def test_label_encoding_refuses_and_counts_unknown_characters(tmp_path):
    enc = LabelEncoder("abc")
    assert enc.encode("cab").tolist() == [2, 0, 1]
    assert enc.encode("cat") is None
    assert enc.unknown("cat!") == {"t", "!"}
    assert enc.decode([2, 0, 1]) == "cab"
    assert required_steps([0, 0, 1]) == 4

    root = write_set(tmp_path / "set", ["cab", "bad", "café", "dab", "a" * 40, "fa~d"])
    spec = models.build("seed-word").spec  # fixed width: 31 steps, so 40 letters cannot fit
    data = CTCDataset(LabelledSource(root), spec, batch_size=4, shuffle=False, workers=1)
    assert data.skipped[SKIP_UNKNOWN] == 2
    assert data.skipped[SKIP_TOO_LONG] == 1
    assert len(data.indices) == 3
    pixels, y = data[0]
    assert pixels.shape == (3, 32, 128, 1) and pixels.dtype == np.float32
    assert y["label_length"].tolist() == [3, 3, 3]
    assert y["logit_length"].tolist() == [31, 31, 31]
    assert LabelEncoder(spec.charset).decode(y["labels"][0, :3]) == "cab"


def test_batches_use_the_runtime_preprocessor(tiny_set):
    from htr.runtime.images import load_image
    from htr.runtime.preprocess import Preprocessor

    spec = models.build("tiny").spec
    source = LabelledSource(tiny_set)
    data = CTCDataset(source, spec, batch_size=4, shuffle=False, workers=1, width_group=1)
    batch = data.batch(0)
    expected = Preprocessor.from_spec(spec)(load_image(source.samples[0].path))
    np.testing.assert_array_equal(batch.pixels[0, :, : expected.shape[1], 0], expected)
    assert batch.pixels.shape[2] % data.width_bucket == 0
    assert batch.logit_length[0] == spec.time_steps.for_width(expected.shape[1])


def test_the_data_not_its_folder_name_says_whether_it_holds_lines(tmp_path):
    from htr.train.trainer import TrainConfig, data_kind, default_charset

    scans = write_set(tmp_path / "my_scans", ["cab bad", "face", "dab ace"])  # lines in a folder named anything
    words = write_set(tmp_path / "lines_project", ["cab", "bad"])  # words in a folder whose name says lines
    assert data_kind(str(scans)) == "lines" and data_kind(str(words)) == "words"
    assert (data_kind("synth:lines"), data_kind("synth:words")) == ("lines", "words")
    cfg = TrainConfig(arch="lean-deep", data=str(scans), out=str(tmp_path / "run"))
    assert " " in default_charset(cfg, data_kind(cfg.data))
    assert " " not in default_charset(TrainConfig(arch="lean-deep", data=str(words), out=str(tmp_path / "r")), "words")


def test_several_data_train_together_and_one_named_twice_counts_twice(tiny_set, tmp_path):
    from htr.train.trainer import TrainConfig, Trainer

    scans = write_set(tmp_path / "scans", [f"{WORDS[i]} {WORDS[i + 1]}" for i in range(10)])
    cfg = TrainConfig(arch="tiny", data=str(scans), more_data=(str(scans), str(tiny_set), "synth:words"),
                      out=str(tmp_path / "run"), train_size=12, batch_size=4, workers=1, verbose=0, command=["t"])
    trainer = Trainer(cfg)
    source = trainer.train_data.source
    texts = [source.text(i) for i in range(len(source))]
    # 9 of the 10 lines (every 10th validates), twice; 12 of tiny_set's words; 12 synthetic samples
    assert len(source) == len(trainer.train_data.indices) == 9 + 9 + 12 + 12
    assert texts[:9] == texts[9:18] and all(" " in t for t in texts[:18])
    assert all(t and " " not in t for t in texts[18:30]) and texts[30:] == [None] * 12
    image, text = source.get(35)
    assert image.ndim == 2 and image.dtype == np.uint8 and text
    assert " " in trainer.spec.charset  # lines among the data: the line charset
    assert trainer.val_data.source.name.startswith(f"{scans} ") and len(trainer.val_data.indices) == 1
    assert trainer.spec_with_facts().source["data"] == [str(scans), str(scans), str(tiny_set), "synth:words"]
    data = trainer.train_data
    assert data.augment_images  # real images among the data: augmented; the synthetic ones came augmented already
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(data._load(35, rng)[0], data.preprocessor(source.get(35)[0]))
    assert any(data._load(i, rng)[0].shape != data.preprocessor(source.get(i)[0]).shape for i in range(18, 30))
    # width grouping: a synthetic sample counts as the median known label length
    assert list(data._lengths[30:]) == [int(np.median([len(t) for t in texts[:30]]))] * 12
    assert data.batch(0).pixels.shape[0] == 4


def test_one_step_per_epoch_on_images_of_varying_width_is_refused_in_one_line(tiny_set):
    spec = models.build("tiny").spec
    source = LabelledSource(tiny_set)
    with pytest.raises(ValueError, match=r"one batch per epoch cannot train on images of varying width \(30 batches of 4\)"):
        CTCDataset(source, spec, batch_size=4, workers=1, steps_per_epoch=1)
    with pytest.raises(ValueError, match=r"\(1 batches of 200\); expected 2 or more steps"):  # augmentation varies widths
        CTCDataset(source, spec, batch_size=200, workers=1, augment_images=True)
    assert len(CTCDataset(source, spec, batch_size=4, workers=1, steps_per_epoch=2)) == 2
    assert len(CTCDataset(source, spec, batch_size=200, workers=1)) == 1  # the same images every epoch
    assert len(CTCDataset(source, spec, batch_size=4, workers=1, steps_per_epoch=1, shuffle=False)) == 1  # validation


# ---- training ---------------------------------------------------------------------------


def test_tiny_training_lowers_loss_writes_checkpoints_and_resumes(tiny_set, tmp_path):
    from htr.train.trainer import TrainConfig, Trainer

    out = tmp_path / "run"
    cfg = TrainConfig(
        arch="tiny", data=str(tiny_set), out=str(out), epochs=2, batch_size=8, lr=1e-2,
        schedule="constant", steps_per_epoch=14, charset="abcdef", workers=1, augment=False,
        verbose=0, show_samples=0, command=["htr-train", "test"],
    )
    trainer = Trainer(cfg)
    from htr.train.trainer import Validation

    before = Validation(trainer.built, trainer.val_data).evaluate()["val_loss"]
    result = trainer.fit()
    assert result["epochs"] == 2
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["val_loss"] < 0.8 * before
    assert history[-1]["loss"] < history[0]["loss"]

    for name in ("model.keras", "model.h5", "model.json", "best_loss.keras", "last.weights.h5", "history.csv", "history.png", "state.json"):
        assert (out / name).is_file(), name
    assert not (out / "epochs").exists()  # only with keep_epochs
    spec = ModelSpec.from_json(out / "model.json")
    assert spec.charset == tuple("abcdef") and spec.blank == 6
    assert spec.time_steps == trainer.spec.time_steps
    assert spec.source["epochs"] in (1, 2) and spec.source["val_cer"] is not None
    assert spec.source["data"] == str(tiny_set)

    x = trainer.val_data.batch(0).pixels
    for name in ("model.keras", "model.h5"):
        loaded = keras.saving.load_model(out / name)
        assert loaded.layers[-1].name == models.PROBS
        probs = loaded.predict_on_batch(x)
        assert probs.shape[-1] == 7
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)

    # Resume: continues after the saved epoch, with the optimizer state.
    saved_iterations = int(keras.ops.convert_to_numpy(trainer.training.optimizer.iterations))
    resumed = Trainer(TrainConfig(**{**cfg.__dict__, "epochs": 3, "resume": True}))
    assert resumed.load_state() == 2
    assert int(keras.ops.convert_to_numpy(resumed.training.optimizer.iterations)) == saved_iterations == 28
    result = Trainer(TrainConfig(**{**cfg.__dict__, "epochs": 3, "resume": True})).fit()
    assert result["epochs"] == 3
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 3
    assert ModelSpec.from_json(out / "model.json").source["commands"] == ["htr-train test"] * 2
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 4  # header + 3 epochs


def test_keep_epochs_keeps_every_epochs_inference_model(tiny_set, tmp_path):
    from htr.train.trainer import TrainConfig, Trainer

    out = tmp_path / "run"
    cfg = TrainConfig(
        arch="tiny", data=str(tiny_set), out=str(out), epochs=2, batch_size=8, lr=1e-2,
        schedule="constant", steps_per_epoch=6, charset="abcdef", workers=1, augment=False,
        verbose=0, show_samples=0, keep_epochs=True, command=["htr-train", "test"],
    )
    trainer = Trainer(cfg)
    trainer.fit()
    kept = sorted(p.name for p in (out / "epochs").iterdir())
    assert kept == ["epoch-001.json", "epoch-001.keras", "epoch-002.json", "epoch-002.keras"]
    history = json.loads((out / "state.json").read_text())["history"]
    for n in (1, 2):
        meta = ModelSpec.from_json(out / "epochs" / f"epoch-00{n}.json").source
        assert meta["epochs"] == n and meta["val_cer"] == pytest.approx(history[n - 1]["val_cer"])
    x = trainer.val_data.batch(0).pixels
    first, last = (keras.saving.load_model(out / "epochs" / f"epoch-00{n}.keras").predict_on_batch(x) for n in (1, 2))
    np.testing.assert_allclose(last, trainer.built.inference.predict_on_batch(x), atol=1e-6)  # the weights at the end
    assert np.abs(first - last).max() > 1e-3  # epoch 1's own weights, not a copy of the last


def test_init_from_copies_every_layer_that_fits_and_refuses_a_foreign_model(tmp_path):
    from htr.train.trainer import init_from

    word = models.build("tiny", "abc")
    word.inference.save(tmp_path / "word.keras")
    line = models.build("tiny", " abc")  # one more class: only the output layer differs
    result = init_from(line.inference, tmp_path / "word.keras")
    assert result["skipped"] == [models.LOGITS]
    assert len(result["copied"]) == len([layer for layer in line.inference.layers if layer.weights]) - 1
    x = np.random.default_rng(0).random((2, 32, 64, 1), dtype=np.float32)
    before_head = keras.Model(line.inference.inputs, line.inference.get_layer(models.LOGITS).input)
    donor_head = keras.Model(word.inference.inputs, word.inference.get_layer(models.LOGITS).input)
    np.testing.assert_allclose(before_head.predict_on_batch(x), donor_head.predict_on_batch(x), atol=1e-6)

    foreign_in = keras.Input((4,))
    keras.Model(foreign_in, keras.layers.Dense(3)(foreign_in)).save(tmp_path / "foreign.keras")
    with pytest.raises(ValueError, match="foreign.keras: none of its layers fits"):
        init_from(line.inference, tmp_path / "foreign.keras")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        init_from(line.inference, tmp_path / "missing.keras")


def test_lean_deep_from_lean_reads_as_its_donor_and_keeps_its_new_layers_fresh(tmp_path):
    from htr.train.trainer import init_from

    donor = models.build("lean", "abc")
    donor.inference.save(tmp_path / "lean.keras")
    models.build("lean", "abc")  # Keras numbers the next layers' names on: bidirectional_2, ...
    deep = models.build("lean-deep", "abc")
    assert deep.spec.source["architecture"] == "lean-deep" and deep.spec.preprocess == donor.spec.preprocess
    result = init_from(deep.inference, tmp_path / "lean.keras")
    assert result["skipped"] == ["deep_rnn", "deep_proj"]
    x = np.random.default_rng(1).random((2, 32, 96, 1), dtype=np.float32)
    np.testing.assert_allclose(deep.inference.predict_on_batch(x), donor.inference.predict_on_batch(x), atol=1e-6)
    assert models.count_flops(deep.inference, 128) > models.count_flops(donor.inference, 128)


def test_the_background_policy_comes_from_the_option_or_the_model_fine_tuned(tmp_path):
    import dataclasses

    from htr.runtime.metadata import BACKGROUND_POLICIES
    from htr.train.config import BACKGROUNDS, TrainConfig
    from htr.train.trainer import with_background

    assert BACKGROUNDS == BACKGROUND_POLICIES
    spec = models.build("tiny", "abc").spec
    flat = dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, background="flatten"))
    flat.save_json(tmp_path / "donor.json")
    spec.save_json(tmp_path / "plain.json")
    assert with_background(spec, TrainConfig(command=[])).preprocess.background == "none"
    assert with_background(spec, TrainConfig(background="flatten", command=[])).preprocess.background == "flatten"
    assert with_background(spec, TrainConfig(init_from=str(tmp_path / "donor.keras"), command=[])).preprocess.background == "flatten"
    assert with_background(spec, TrainConfig(init_from=str(tmp_path / "donor.keras"), background="none", command=[])) == spec
    assert with_background(spec, TrainConfig(init_from=str(tmp_path / "plain.keras"), command=[])) == spec


def test_a_flatten_run_feeds_flattened_pixels_and_writes_the_policy(tiny_set, tmp_path):
    from htr.runtime.preprocess import Preprocessor
    from htr.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(arch="tiny", data=str(tiny_set), out=str(tmp_path / "run"), epochs=1, batch_size=4,
                      steps_per_epoch=2, charset="abcdef", workers=1, augment=False, verbose=0, show_samples=0,
                      background="flatten", command=["htr-train", "test"])
    trainer = Trainer(cfg)
    assert trainer.train_data.preprocessor.policy.background == "flatten"
    assert trainer.val_data.preprocessor.policy.background == "flatten"
    trainer.fit()
    written = ModelSpec.from_json(tmp_path / "run" / "model.json")
    assert written.preprocess.background == "flatten"
    # on grey, unevenly lit paper, what the run trained on is what the runtime makes of it, and not the plain policy's
    image = (cv2.imread(str(tiny_set / "img000.png"), cv2.IMREAD_GRAYSCALE) * np.linspace(0.5, 1.0, 40)[:, None]).astype(np.uint8)
    ours = trainer.train_data.preprocessor(image)
    assert np.array_equal(Preprocessor.from_spec(written)(image), ours)
    assert not np.array_equal(Preprocessor.from_spec(models.build("tiny", "abcdef").spec)(image), ours)


def test_digit_fraction_reaches_the_synthetic_training_data():
    from htr.train.data import open_source
    from htr.train.synth import MNIST_HAND

    def hands(fraction):
        source = open_source("synth:words", models.SEED_WORD_CHARSET, "train", size=12, seed=3, digit_fraction=fraction)
        return [source.generator.sample(i).hand for i in range(len(source))]

    assert hands(1.0) == [MNIST_HAND] * 12
    assert MNIST_HAND not in hands(0.0)


def test_the_bundled_models_keras_checkpoints_start_a_lean_deep_or_lean_run():
    from pathlib import Path

    from htr.train.trainer import init_from

    root = Path(__file__).resolve().parents[1] / "train" / "checkpoints"
    for name, charset in (("word", None), ("line", " " + models.SEED_WORD_CHARSET)):
        spec = ModelSpec.from_json(root / f"{name}.json")
        assert spec.source["architecture"] == "lean-deep"
        built = models.build("lean-deep", charset)
        result = init_from(built.inference, root / f"{name}.keras")
        assert result["skipped"] == [], (name, result["skipped"])
        assert spec.charset == built.spec.charset
        # a plain lean run from the deeper checkpoint takes every layer it has
        assert init_from(models.build("lean", charset).inference, root / f"{name}.keras")["skipped"] == []


def test_average_means_the_weights_and_measures_the_average(tmp_path, tiny_set, capsys):
    from htr.train.average import average_weights, greedy_cer, main

    paths = []
    for k in range(2):
        built = models.build("tiny", "abcdef")
        folder = tmp_path / f"run{k}"
        folder.mkdir()
        built.inference.save(folder / "model.keras")
        built.spec.with_source(command=f"htr-train run{k}", epochs=k + 1, val_cer=0.5).save_json(folder / "model.json")
        paths.append(folder / "model.keras")
    out = tmp_path / "avg"
    assert main([str(p) for p in paths] + ["--out", str(out), "--val", str(tiny_set)]) == 0
    ins = [keras.saving.load_model(p, compile=False).get_weights() for p in paths]
    got = keras.saving.load_model(out / "model.keras", compile=False).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(*ins))  # two different starts, or the test proves nothing
    for a, b, mean in zip(ins[0], ins[1], got):
        np.testing.assert_allclose(mean, (a + b) / 2, rtol=1e-6, atol=1e-7)
    source = ModelSpec.from_json(out / "model.json").source
    assert source["commands"][:2] == ["htr-train run0", "htr-train run1"]
    assert source["command"].startswith("python -m htr.train.average ") and source["epochs"] == 2
    # the CER it records is the averaged model's own, on every validation image (untrained
    # models may insert more characters than a label has: no upper bound)
    cer, n = greedy_cer(keras.saving.load_model(out / "model.keras", compile=False), ModelSpec.from_json(out / "model.json"), tiny_set)
    assert n == source["val_samples"] == 120 and source["val_cer"] == pytest.approx(cer) and cer > 0.0
    # --each: every input's own CER as well, the numbers to choose between inputs and average
    capsys.readouterr()
    assert main([str(p) for p in paths] + ["--out", str(tmp_path / "avg2"), "--val", str(tiny_set), "--each"]) == 0
    printed = capsys.readouterr().out
    for p in paths:
        own, _ = greedy_cer(keras.saving.load_model(p, compile=False), ModelSpec.from_json(p.with_suffix(".json")), tiny_set)
        assert f"{p}: greedy CER {100 * own:.2f}% on 120 images" in printed
    assert f"average of 2: greedy CER {100 * cer:.2f}%" in printed
    with pytest.raises(ValueError, match="not the same architecture"):
        average_weights([[np.zeros(3)], [np.zeros(4)]])
    with pytest.raises(SystemExit):  # one model is no average
        main([str(paths[0]), "--out", str(out)])
    with pytest.raises(SystemExit):  # --each without a folder to measure on
        main([str(p) for p in paths] + ["--out", str(out), "--each"])


def test_htr_train_choices_are_the_architectures_models_builds():
    from htr.train.config import ARCHITECTURES

    assert tuple(models.ARCHITECTURES) == ARCHITECTURES


def test_the_keras_backend_is_chosen_by_option_environment_or_what_is_installed(monkeypatch):
    from htr.train import config

    assert config.resolve_backend("auto", {"KERAS_BACKEND": "jax"}) == "jax"
    installed = [name for name in config.BACKENDS if config.importlib.util.find_spec(config.BACKEND_MODULES[name])]
    assert config.resolve_backend("auto", {}) == installed[0]
    assert config.resolve_backend("tensorflow", {"KERAS_BACKEND": "jax"}) == "tensorflow"
    with pytest.raises(ValueError, match="'theano' is unknown"):
        config.resolve_backend("theano", {})
    with pytest.raises(ValueError, match="KERAS_BACKEND='numpy' is not a backend htr-train runs on"):
        config.resolve_backend("auto", {"KERAS_BACKEND": "numpy"})
    monkeypatch.setitem(config.BACKEND_MODULES, "torch", "no_such_module_here")
    with pytest.raises(ValueError, match="--backend torch: the no_such_module_here module is not installed"):
        config.resolve_backend("torch", {})


@pytest.mark.skipif(not __import__("importlib").util.find_spec("jax"), reason="jax is not installed")
def test_htr_train_runs_on_the_jax_backend_and_its_model_exports_with_tensorflow(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    data = write_set(tmp_path / "set", ["ab", "ba", "abba", "baa", "aab", "bab", "ab", "ba"])
    out = tmp_path / "run"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow"}  # the option wins over it
    train = subprocess.run(
        [str(bin_dir / "htr-train"), "--backend", "jax", "--arch", "tiny", "--data", str(data), "--val", str(data),
         "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--charset", "ab",
         "--verbose", "0", "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    assert "Keras backend jax" in train.stdout
    assert ModelSpec.from_json(out / "model.json").source["backend"] == "jax"
    export = subprocess.run(
        [str(bin_dir / "htr-export"), str(out / "model.keras"), "-o", str(tmp_path / "m.onnx")],
        capture_output=True, text=True, env={**env, "KERAS_BACKEND": "jax"}, timeout=600,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    assert "max |diff|" in export.stdout + export.stderr
