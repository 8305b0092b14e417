"""htr.runtime: metadata, images, preprocessing, Engine and the batching pipeline, for real."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from runtime_fixtures import draw_word, make_tiny_model, tiny_spec

from htr.runtime import Engine, Recognizer, make_decoder
from htr.runtime.constants import SEED_WORD_CHARSET
from htr.runtime.errors import ImageError, MetadataError, ModelError, ProviderError
from htr.runtime.images import list_images, load_image
from htr.runtime.metadata import InputSpec, ModelSpec, seed_word_spec
from htr.runtime.preprocess import Preprocessor


# ---- metadata ---------------------------------------------------------------------
def test_metadata_round_trip_and_json_sidecar(tmp_path):
    spec = seed_word_spec(file="model.h5", epochs=3)
    again = ModelSpec.from_props(spec.to_props())
    assert again == spec and again.source == {"file": "model.h5", "epochs": 3}
    assert again.num_classes == 79 and again.blank == 78 and again.time_steps.for_width(128) == 31
    spec.save_json(tmp_path / "model.json")
    assert ModelSpec.from_json(tmp_path / "model.json") == spec


def test_metadata_refuses_newer_format_and_missing_keys():
    props = seed_word_spec().to_props()
    with pytest.raises(MetadataError, match="format 2 is newer"):
        ModelSpec.from_props({**props, "htr.format": "2"}, "m.onnx")
    with pytest.raises(MetadataError, match="m.onnx: no htr metadata"):
        ModelSpec.from_props({}, "m.onnx")
    with pytest.raises(MetadataError, match="lacks htr.blank"):
        ModelSpec.from_props({k: v for k, v in props.items() if k != "htr.blank"}, "m.onnx")
    with pytest.raises(MetadataError, match="not valid JSON"):
        ModelSpec.from_props({**props, "htr.charset": "[oops"}, "m.onnx")


def test_metadata_checks_charset_blank_and_class_count():
    with pytest.raises(MetadataError, match="duplicate"):
        ModelSpec(charset=("a", "a"), blank=2, input=InputSpec(32, 128))
    with pytest.raises(MetadataError, match="htr.blank is 5 but must be in 0..2"):
        ModelSpec(charset=("a", "b"), blank=5, input=InputSpec(32, 128))
    with pytest.raises(MetadataError, match="outputs 80 classes .* 78 characters \\+ 1 blank = 79"):
        seed_word_spec().check_num_classes(80, "m.onnx")


# ---- images -----------------------------------------------------------------------
def _write(tmp_path, name, image, params=()):
    path = tmp_path / name
    assert cv2.imwrite(str(path), image, list(params))
    return path


def test_load_image_formats_depths_and_alpha(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (20, 1))
    assert np.array_equal(load_image(_write(tmp_path, "g.png", grey)), grey)
    assert np.array_equal(load_image(_write(tmp_path, "g.bmp", grey)), grey)
    assert np.array_equal(load_image(_write(tmp_path, "g.tif", grey)), grey)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    assert np.abs(load_image(_write(tmp_path, "c.jpg", rgb, (cv2.IMWRITE_JPEG_QUALITY, 100))).astype(int) - grey).max() <= 2
    sixteen = grey.astype(np.uint16) * 257
    assert np.array_equal(load_image(_write(tmp_path, "d.png", sixteen)), grey)
    rgba = np.zeros((20, 64, 4), np.uint8)  # black ink, fully transparent: reads as white paper
    rgba[:, :32, 3] = 255
    out = load_image(_write(tmp_path, "a.png", rgba))
    assert out[:, :32].max() == 0 and out[:, 32:].min() == 255


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.png", b"", "is empty"),
        ("notes.png", b"hello, this is text", "is not a png, jpg, tif or bmp"),
        ("trunc.png", None, "corrupt or truncated png"),
        ("dot.png", "tiny", "is 1x1 pixels"),
    ],
)
def test_bad_images_get_one_line_errors_naming_the_file(tmp_path, name, data, message):
    path = tmp_path / name
    if data is None:
        ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
        path.write_bytes(buf.tobytes()[:200])
    elif data == "tiny":
        cv2.imwrite(str(path), np.zeros((1, 1), np.uint8))
    else:
        path.write_bytes(data)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_list_images_sorted_recursive_and_problems(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "empty").mkdir()
    for rel in ("b.png", "a.jpg", "notes.txt", "sub/c.png"):
        (tmp_path / rel).write_bytes(b"x")
    found, problems = list_images([tmp_path])
    assert [p.name for p in found] == ["a.jpg", "b.png"]
    found, _ = list_images([tmp_path], recursive=True)
    assert [p.name for p in found] == ["a.jpg", "b.png", "c.png"]
    _, problems = list_images([tmp_path / "empty", tmp_path / "missing"])
    assert [m for _, m in problems] == [
        "folder has no png, jpg, tif or bmp images (use --recursive for sub-folders)",
        "no such file or folder",
    ]


# ---- preprocessing ----------------------------------------------------------------
def seed_process_image(img):
    """The seed notebook's process_image, verbatim apart from names (the reference)."""
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


@pytest.mark.parametrize("shape", [(32, 128), (40, 100), (10, 30), (64, 300), (27, 500), (100, 90), (33, 129)])
def test_seed_policy_is_bit_for_bit_the_notebook(shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ours = Preprocessor.from_spec(seed_word_spec())(image)
    theirs = seed_process_image(image)[:, :, 0].astype(np.float32)
    assert ours.dtype == np.float32 and ours.shape == (32, 128)
    assert np.array_equal(ours, theirs)


def test_dynamic_policy_keeps_aspect_and_batches_with_blank_padding():
    pre = Preprocessor.from_spec(tiny_spec(width=None))
    wide, narrow = pre(np.zeros((64, 202), np.uint8)), pre(np.zeros((32, 8), np.uint8))
    assert wide.shape == (32, 104)  # 101 rounded up to a multiple of 4
    assert narrow.shape == (32, 16)  # clamped to min_width
    batch = pre.batch([narrow, wide])
    assert batch.pixels.shape == (2, 32, 104, 1) and list(batch.widths) == [16, 104]
    assert batch.pixels[0, :, 16:, 0].max() == 0.0  # padding is blank paper after inversion
    assert list(batch.steps(tiny_spec(width=None).time_steps, 26)) == [4, 26]




def test_flatten_background_evens_out_light_and_paper_and_travels_in_the_metadata():
    import dataclasses

    # A word on paper lit from the left: the paper runs from grey 90 to 250, the ink is 60% of it.
    rows, cols = 32, 200
    paper = np.tile(np.linspace(90, 250, cols, dtype=np.float32), (rows, 1))
    ink = np.zeros((rows, cols), bool)
    for x0 in range(10, cols - 20, 30):
        ink[8:24, x0 : x0 + 3] = True
    image = np.where(ink, paper * 0.6, paper).astype(np.uint8)
    flat_spec = dataclasses.replace(tiny_spec(width=None), preprocess=dataclasses.replace(tiny_spec(width=None).preprocess, background="flatten"))
    plain, flat = Preprocessor.from_spec(tiny_spec(width=None)).fit(image), Preprocessor.from_spec(flat_spec).fit(image)
    assert plain.shape == flat.shape == (32, 200) and flat.dtype == np.uint8
    assert np.ptp(plain[~ink]) > 150  # as given: grey on the left, white on the right
    assert flat[~ink].min() >= 220 and np.median(flat[~ink]) >= 240  # flattened: near-white paper all across
    assert flat[ink].max() <= 170 and abs(int(flat[ink][:16].mean()) - int(flat[ink][-16:].mean())) < 20  # the same ink everywhere

    # The policy is metadata: written only when set, read back, and an unknown one is refused.
    assert "background" not in tiny_spec().preprocess.to_json()
    props = flat_spec.to_props()
    assert ModelSpec.from_props(props).preprocess.background == "flatten"
    bad = {**props, "htr.preprocess": props["htr.preprocess"].replace('"flatten"', '"sepia"')}
    with pytest.raises(MetadataError, match="background 'sepia' is unknown"):
        ModelSpec.from_props(bad, "m.onnx")


@pytest.mark.parametrize("width", [128, None])
def test_stack_of_fitted_images_is_bit_for_bit_the_per_image_path(width):
    # htr-run keeps raw uint8 pixels per image and normalises whole batches (`fit` +
    # `stack`); training and export normalise per image (`__call__` + `batch`).
    spec = seed_word_spec() if width else tiny_spec(width=None)
    pre = Preprocessor.from_spec(spec)
    rng = np.random.default_rng(3)
    shapes = [(32, 128), (40, 100), (10, 30), (64, 300), (27, 500), (100, 90), (33, 129), (32, 8), (50, 203)]
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    fitted = [pre.fit(im) for im in images]
    squashed = [f for f in fitted if f.dtype == np.float32]
    assert bool(squashed) == (width is not None)  # the seed policy squashes the wide ones in float32
    assert all(f.dtype == np.uint8 for f in fitted if f.dtype != np.float32)
    ours, theirs = pre.stack(fitted), pre.batch([pre(im) for im in images])
    assert ours.pixels.dtype == np.float32 and np.array_equal(ours.pixels, theirs.pixels)
    assert list(ours.widths) == list(theirs.widths)
# ---- engine -----------------------------------------------------------------------
def test_engine_reads_metadata_and_runs(tiny_models):
    engine = Engine(tiny_models["fixed"])
    assert engine.spec.charset == ("a", "b") and engine.providers[0] == "CPUExecutionProvider"
    probs = engine.run(np.zeros((2, 32, 128, 1), np.float32))
    assert probs.shape == (2, 32, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)


def test_engine_bad_models(tmp_path, tiny_models):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="junk.onnx: is not a loadable ONNX model"):
        Engine(junk)
    with pytest.raises(ModelError, match="no such model file"):
        Engine(tmp_path / "missing.onnx")
    bare = make_tiny_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(MetadataError, match="bare.onnx: no htr metadata"):
        Engine(bare)
    wrong = make_tiny_model(tmp_path / "wrong.onnx", classes=5)
    with pytest.raises(MetadataError, match="outputs 5 classes .* 2 characters \\+ 1 blank = 3"):
        Engine(wrong)


def test_cuda_asked_for_but_absent_fails_loudly(tiny_models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ProviderError, match="--provider cuda needs onnxruntime's CUDAExecutionProvider"):
        Engine(tiny_models["fixed"], provider="cuda")


# ---- pipeline ---------------------------------------------------------------------
WORDS = ["ab", "ba", "a", "b", "", "aab", "bab", "bb"]


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_recognizer_reads_drawn_words_in_order(tiny_models, kind, batch_size):
    engine = Engine(tiny_models[kind])
    recognizer = Recognizer(engine, make_decoder("greedy", engine.spec.charset, engine.spec.blank), batch_size)
    # different sizes, so dynamic batches mix widths and get regrouped
    images = [cv2.resize(draw_word(w), None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST) for w, s in zip(WORDS, [1, 2, 1, 3, 1, 2, 1, 1])]
    assert [d.text for d in recognizer.recognise_arrays(images)] == WORDS


def test_recognise_paths_keeps_going_past_bad_files(tmp_path, tiny_models):
    engine = Engine(tiny_models["dynamic"])
    recognizer = Recognizer(engine, make_decoder("beam", engine.spec.charset, engine.spec.blank), batch_size=2)
    paths = []
    for i, word in enumerate(WORDS):
        path = tmp_path / f"{i:02d}.png"
        cv2.imwrite(str(path), draw_word(word))
        paths.append(path)
    (tmp_path / "03.png").write_bytes(b"broken")
    results = list(recognizer.recognise_paths(paths))
    assert [r.path for r in results] == paths
    assert [r.text for r in results] == [w if i != 3 else "" for i, w in enumerate(WORDS)]
    assert results[3].error == f"{paths[3]}: is not a png, jpg, tif or bmp image"
    assert all(0 <= r.confidence <= 1 for r in results)


class FailingEngine:
    """An Engine whose `fail_on`-th run (0-based) raises, as a broken batch would."""

    def __init__(self, engine: Engine, fail_on: int):
        self.engine, self.spec, self.path, self.fail_on, self.calls = engine, engine.spec, engine.path, fail_on, 0

    def run(self, pixels):
        self.calls += 1
        if self.calls - 1 == self.fail_on:
            raise ModelError(self.path, "output went wrong for this batch")
        return self.engine.run(pixels)


def test_many_windows_come_back_in_order_and_a_failed_batch_loses_only_its_images(tmp_path, tiny_models):
    words = [WORDS[i % len(WORDS)] for i in range(70)]  # windows of 4, 8, 16, 32, then the rest
    paths = []
    for i, word in enumerate(words):
        path = tmp_path / f"{i:02d}.png"
        cv2.imwrite(str(path), draw_word(word))
        paths.append(path)
    engine = FailingEngine(Engine(tiny_models["fixed"]), fail_on=4)
    recognizer = Recognizer(engine, make_decoder("greedy", engine.spec.charset, engine.spec.blank), batch_size=4)
    results = list(recognizer.recognise_paths(paths))
    assert [r.path for r in results] == paths and engine.calls == 18
    failed = [i for i, r in enumerate(results) if not r.ok]
    assert failed == [16, 17, 18, 19]  # the fifth batch (fixed width: batches in input order)
    assert results[16].error == f"{paths[16]}: {engine.path}: output went wrong for this batch"
    assert [r.text for i, r in enumerate(results) if i not in failed] == [w for i, w in enumerate(words) if i not in failed]


class OverlapEngine:
    """An Engine with `streams` that records how many of its runs were in progress at once."""

    def __init__(self, engine: Engine, streams: int):
        self.engine, self.spec, self.path, self.streams = engine, engine.spec, engine.path, streams
        self.lock, self.running, self.most = threading.Lock(), 0, 0

    def run(self, pixels):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)  # long enough for a second batch to start if the pipeline sends one
            return self.engine.run(pixels)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("streams", [1, 2])
def test_streams_keep_that_many_batches_running_and_change_no_result(tmp_path, tiny_models, streams):
    words = [WORDS[i % len(WORDS)] for i in range(40)]
    paths = []
    for i, word in enumerate(words):
        path = tmp_path / f"{i:02d}.png"
        cv2.imwrite(str(path), draw_word(word))
        paths.append(path)
    engine = OverlapEngine(Engine(tiny_models["fixed"], streams=streams), streams)
    assert engine.engine.streams == streams
    recognizer = Recognizer(engine, make_decoder("greedy", engine.spec.charset, engine.spec.blank), batch_size=4)
    results = list(recognizer.recognise_paths(paths))
    assert [r.path for r in results] == paths and [r.text for r in results] == words
    assert engine.most == streams


def test_engine_shares_threads_between_streams(tiny_models):
    engine = Engine(tiny_models["fixed"], threads=4, streams=2)
    assert engine.streams == 2
    assert engine.session.get_session_options().intra_op_num_threads == 2
    assert Engine(tiny_models["fixed"], threads=1, streams=None).streams == 1  # auto: one thread, one stream
    assert Engine(tiny_models["fixed"], threads=2, streams=None).streams == 2
    with pytest.raises(ValueError, match="streams"):
        Engine(tiny_models["fixed"], streams=0)


def test_blank_first_models_decode_the_same(tmp_path):
    spec = tiny_spec(width=128, blank=0)
    engine = Engine(make_tiny_model(tmp_path / "b0.onnx", spec=spec))
    recognizer = Recognizer(engine, make_decoder("greedy", spec.charset, spec.blank))
    assert [d.text for d in recognizer.recognise_arrays([draw_word("ab"), draw_word("ba")])] == ["ab", "ba"]


def test_runtime_never_imports_tensorflow_keras_or_tf2onnx():
    code = (
        "import sys, htr.runtime, htr.runtime.cli, htr.runtime.pipeline, htr.runtime.decoding;"
        "from htr.runtime import Engine, Recognizer, greedy_decode, beam_search_decode;"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'tf_keras') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_seed_charset_constant():
    assert len(SEED_WORD_CHARSET) == 78 and json.loads(seed_word_spec().to_props()["htr.blank"]) == 78


def test_an_onnxruntime_failure_in_run_is_a_model_error_naming_the_model(tiny_models):
    from htr.runtime.errors import ModelError

    engine = Engine(tiny_models["fixed"])
    with pytest.raises(ModelError, match=r"fixed\.onnx.*inference failed on a batch of shape \(2, 32, 128, 1\)"):
        engine.run(np.zeros((2, 32, 128, 1), np.float64))  # onnxruntime refuses the type
