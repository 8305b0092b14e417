"""Synthetic handwriting: determinism, charset safety, hand split, MNIST digits, files on disk."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("wordfreq")
pytest.importorskip("HersheyFonts")
pytest.importorskip("fontTools")
cv2 = pytest.importorskip("cv2")

from htr.train import synth  # noqa: E402
from htr.train.synth import (  # noqa: E402
    HELDOUT_HANDS,
    SEED_LINE_CHARSET,
    SEED_WORD_CHARSET,
    TRAIN_HANDS,
    SynthGenerator,
    fit_to_charset,
    write_dataset,
)


@pytest.fixture(scope="module")
def words() -> SynthGenerator:
    return SynthGenerator(kind="words", seed=0)


@pytest.fixture(scope="module")
def lines() -> SynthGenerator:
    return SynthGenerator(kind="lines", seed=0)


def _same(a, b) -> bool:
    return a.text == b.text and a.hand == b.hand and a.image.shape == b.image.shape and np.array_equal(a.image, b.image)


def test_seed_charsets_match_the_seed_notebook():
    assert len(SEED_WORD_CHARSET) == 78 and len(set(SEED_WORD_CHARSET)) == 78
    assert SEED_LINE_CHARSET == " " + SEED_WORD_CHARSET and len(SEED_LINE_CHARSET) == 79


def test_same_seed_and_index_give_identical_samples_in_any_order(words):
    first = [words.sample(i) for i in (7, 3, 11)]
    other = SynthGenerator(kind="words", seed=0)
    later = {i: other.sample(i) for i in (11, 3, 0, 7)}
    for i, s in zip((7, 3, 11), first):
        assert _same(s, later[i])
    assert _same(words.sample(3), first[1])  # again, after other calls


def test_different_seeds_differ(words):
    other = SynthGenerator(kind="words", seed=1)
    a = [words.sample(i) for i in range(8)]
    b = [other.sample(i) for i in range(8)]
    assert [s.text for s in a] != [s.text for s in b]
    assert not all(_same(x, y) for x, y in zip(a, b))


def test_generator_pickles_to_the_same_samples(words):
    clone = pickle.loads(pickle.dumps(words))
    assert _same(clone.sample(5), words.sample(5))


def test_iteration_yields_samples_in_index_order(words):
    it = iter(words)
    assert _same(next(it), words.sample(0)) and _same(next(it), words.sample(1))


@pytest.mark.parametrize("kind", ["words", "lines"])
def test_labels_never_leave_the_seed_charset(kind, words, lines):
    gen = words if kind == "words" else lines
    allowed = set(gen.config.charset)
    n = 300 if kind == "words" else 60
    for i in range(n):
        s = gen.sample(i)
        assert s.text and set(s.text) <= allowed, (i, s.text)
        assert s.text == s.text.strip() and "  " not in s.text
        if kind == "words":
            assert " " not in s.text
        if s.hand != synth.MNIST_HAND:  # the hand really has every glyph: no tofu boxes
            hand = next(h for h in synth.ALL_HANDS if h.name == s.hand)
            assert set(s.text) <= synth.hand_coverage(hand)


@pytest.mark.parametrize(
    "kind,charset",
    [
        ("words", "abcdefghijklmnopqrstuvwxyz"),
        ("words", "ABCDEFGHIJKLMNOPQRSTUVWXYZ.,"),
        ("words", "0123456789"),
        ("words", "!?#&"),
        ("lines", " etaoinshr"),
    ],
)
def test_reduced_charset_is_respected(kind, charset):
    gen = SynthGenerator(kind=kind, charset=charset, seed=2)
    for i in range(40 if kind == "words" else 15):
        s = gen.sample(i)
        assert s.text.strip() and set(s.text) <= set(charset), (charset, s.text)


def test_fit_to_charset_maps_case_lookalikes_and_drops_the_rest():
    assert fit_to_charset("Don\u2019t \u201cstop\u201d", SEED_LINE_CHARSET) == "Don't \"stop\""
    assert fit_to_charset("Caf\u00e9 50%", SEED_LINE_CHARSET) == "Cafe 50"
    assert fit_to_charset("Hello World", "helowrd") == "helloworld"
    assert fit_to_charset("a  b\tc", " abc") == "a b c"


def test_train_and_heldout_hands_are_disjoint():
    assert set(TRAIN_HANDS).isdisjoint(HELDOUT_HANDS)
    assert set(TRAIN_HANDS) | set(HELDOUT_HANDS) == {h.name for h in synth.ALL_HANDS}
    heldout = SynthGenerator(kind="words", split="heldout", seed=0)
    assert {h.name for h in heldout.hands} <= set(HELDOUT_HANDS)
    seen = {heldout.sample(i).hand for i in range(60)}
    assert seen <= set(HELDOUT_HANDS) | {synth.MNIST_HAND}
    train_idx = set(synth.mnist_indices("train").tolist())
    held_idx = set(synth.mnist_indices("heldout").tolist())
    assert train_idx.isdisjoint(held_idx) and len(train_idx) + len(held_idx) == 5000
    val_idx, test_idx = set(synth.mnist_indices("val").tolist()), set(synth.mnist_indices("test").tolist())
    assert val_idx.isdisjoint(test_idx) and val_idx | test_idx == held_idx


def test_validation_and_test_hands_are_separate_and_at_least_eight_each():
    assert set(synth.VAL_HANDS).isdisjoint(synth.TEST_HANDS)
    assert len(synth.VAL_HANDS) >= 7 and len(synth.TEST_HANDS) >= 8
    assert set(HELDOUT_HANDS) == set(synth.VAL_HANDS) | set(synth.TEST_HANDS)
    names = {h.name for h in synth.ALL_HANDS}
    assert set(HELDOUT_HANDS) <= names  # no typo silently shrinks a held-out set
    assert len(TRAIN_HANDS) >= 60
    for split, hands in (("val", synth.VAL_HANDS), ("test", synth.TEST_HANDS)):
        gen = SynthGenerator(kind="words", split=split, seed=3)
        assert {h.name for h in gen.hands} == set(hands)


def test_every_vendored_font_has_its_licence_and_a_manifest_row():
    from htr.train.synth import hands

    rows = [r.split("\t") for r in (hands.FONTS_DIR / "fonts.tsv").read_text(encoding="utf-8").splitlines()
            if r and not r.startswith("#")]
    folders = {p.name for p in hands.FONTS_DIR.iterdir() if p.is_dir()}
    assert {r[0] for r in rows} == folders
    for family, _name, _category, licence, *_ in rows:
        text = (hands.FONTS_DIR / family / "LICENSE").read_text(encoding="utf-8", errors="replace")
        assert licence in ("OFL-1.1", "Apache-2.0"), family
        assert ("Open Font License" in text) if licence == "OFL-1.1" else ("Apache License" in text), family


def test_the_stored_coverage_is_what_the_font_files_draw():
    from htr.train.synth import hands

    for hand in synth.ALL_HANDS[::37]:
        if hand.source != "font":
            continue
        measured = hands._glyph_coverage(str(hands.FONTS_DIR / hand.package))
        stored = synth.hand_coverage(hand)
        assert stored == {c for c in measured if " " <= c <= "~"}, hand.name


def test_augmentation_styles_differ_the_way_they_say():
    def contrast(style: str) -> float:
        gen = SynthGenerator(kind="words", split="train", seed=8, digit_fraction=0.0, ranges=synth.STYLES[style])
        values = []
        for i in range(30):
            img = gen.sample(i).image.astype(float)
            values.append(np.percentile(img, 95) - np.percentile(img, 2))
        return float(np.median(values))

    assert contrast("clean") > contrast("hard") + 20
    with pytest.raises(ValueError, match="unknown augmentation"):
        synth.AUGMENT.with_values(sparkle=(0, 1))
    assert synth.AUGMENT.with_values(ruled_p=1.0).ruled_p == 1.0


def test_all_hands_are_installed_and_cover_the_seed_charset():
    for hand in synth.ALL_HANDS:
        assert set(SEED_LINE_CHARSET) <= synth.hand_coverage(hand), hand.name


def test_mnist_digit_strings_render_with_digit_labels():
    gen = SynthGenerator(kind="words", charset="0123456789", seed=4, digit_fraction=1.0)
    for i in range(20):
        s = gen.sample(i)
        assert s.hand == synth.MNIST_HAND
        assert s.text.isdigit() and 2 <= len(s.text) <= 8
        assert s.image.shape[1] > s.image.shape[0]
    full = SynthGenerator(kind="lines", seed=4, digit_fraction=1.0)
    for i in range(5):
        s = full.sample(i)
        assert s.hand == synth.MNIST_HAND and any(c.isdigit() for c in s.text)
        assert set(s.text) <= set(SEED_LINE_CHARSET)


@pytest.mark.parametrize("augment", [True, False])
def test_images_are_uint8_greyscale_with_dark_ink_on_light_paper(augment):
    gen = SynthGenerator(kind="words", seed=5, augment=augment)
    for i in range(40):
        img = gen.sample(i).image
        assert img.dtype == np.uint8 and img.ndim == 2
        assert 8 <= img.shape[0] <= 400 and img.shape[1] >= 4
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert np.percentile(border, 50) > 150  # paper at the margin
        assert int(img.min()) < np.median(border) - 60  # and ink darker than it


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kind"):
        SynthGenerator(kind="pages")
    with pytest.raises(ValueError, match="split"):
        SynthGenerator(split="nope")
    with pytest.raises(ValueError, match="space"):
        SynthGenerator(kind="lines", charset=SEED_WORD_CHARSET)
    with pytest.raises(ValueError, match="index"):
        SynthGenerator().sample(-1)


@pytest.mark.parametrize("workers", [1, 2])
def test_write_dataset_writes_pngs_and_labels(tmp_path, workers):
    count = 130
    out = write_dataset(tmp_path / "set", kind="words", count=count, seed=9, split="heldout",
                        charset=SEED_WORD_CHARSET, workers=workers)
    rows = (out / "labels.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == count
    gen = SynthGenerator(kind="words", seed=9, split="heldout")
    for i, row in enumerate(rows):
        rel, text = row.split("\t")
        assert text and set(text) <= set(SEED_WORD_CHARSET)
        if i % 25 == 0:
            img = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
            expected = gen.sample(i)
            assert img is not None and img.ndim == 2 and img.dtype == np.uint8
            assert text == expected.text and np.array_equal(img, expected.image)


def test_cli_writes_a_labelled_folder(tmp_path):
    from typer.testing import CliRunner

    from htr.train.synth_cli import app

    result = CliRunner().invoke(app, [str(tmp_path / "o"), "--kind", "lines", "--count", "6",
                                      "--seed", "1", "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "o" / "labels.tsv").read_text().splitlines()
    assert len(rows) == 6 and all(" " in r.split("\t")[1] or r.split("\t")[1].isdigit() for r in rows)
    bad = CliRunner().invoke(app, [str(tmp_path / "p"), "--kind", "pages"])
    assert bad.exit_code == 2


@pytest.mark.parametrize("kind", ["words", "lines"])
def test_text_is_the_sample_text_without_drawing(kind):
    generator = SynthGenerator(kind, None, "heldout", 11, 0.3, True)
    assert [generator.text(i) for i in range(25)] == [generator.sample(i).text for i in range(25)]


def test_cli_text_only_writes_the_labels_text(tmp_path):
    from typer.testing import CliRunner

    from htr.train.synth_cli import app

    out = tmp_path / "text" / "lines.txt"
    result = CliRunner().invoke(app, [str(out), "--kind", "lines", "--count", "40", "--seed", "2", "--text-only"])
    assert result.exit_code == 0, result.output
    generator = SynthGenerator("lines", None, "train", 2, 0.1, True)
    assert out.read_text(encoding="utf-8").splitlines() == [generator.text(i) for i in range(40)]
    assert not (tmp_path / "text" / "images").exists()
