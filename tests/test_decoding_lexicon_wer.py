"""Smoke test of benchmarks/bench_lexicon_wer.py on the tiny ONNX model."""

from __future__ import annotations

import json

import bench_lexicon_wer  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import cv2
import pytest
from runtime_fixtures import draw_word, make_tiny_model


@pytest.fixture
def english_cache(tmp_path, monkeypatch):
    """A tiny 'default English lexicon' in the cache, so that wordfreq is not needed."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "wordlist-en-50000.tsv").write_text("a\t0.02\nb\t0.001\nab\t0.005\n", encoding="utf-8")
    monkeypatch.setenv("HTR_CACHE_DIR", str(cache))


def test_benchmark_writes_cer_and_wer_of_every_decoder(tmp_path, english_cache):
    model = make_tiny_model(tmp_path / "tiny.onnx", width=128)
    data = tmp_path / "heldout"
    (data / "images").mkdir(parents=True)
    # The last image shows "abb" but is labelled "ab": greedy reads a word error.
    drawn = [("ab", "ab"), ("ba", "ba"), ("abb", "ab")]
    for i, (word, _) in enumerate(drawn):
        assert cv2.imwrite(str(data / "images" / f"{i}.png"), draw_word(word))
    (data / "labels.tsv").write_text(
        "".join(f"images/{i}.png\t{label}\n" for i, (_, label) in enumerate(drawn)), encoding="utf-8"
    )
    out = tmp_path / "reports"

    result = bench_lexicon_wer.main(
        ["--model", str(model), str(data), "--out", str(out), "--beam-width", "4", "--batch-size", "2"]
    )

    saved = json.loads((out / "lexicon-wer.json").read_text(encoding="utf-8"))
    report = (out / "lexicon-wer.md").read_text(encoding="utf-8")
    assert saved["images"] == 3 and saved["lexicon_mode"] == "words"  # no space in the charset
    assert saved["lexicon"]["source"] == "default+labels"
    assert saved["lexicon"]["added_label_words"] == 1  # "ba"; "ab" is in the English list
    for name in ("greedy", "beam", "lexicon"):
        rates = saved["decoders"][name]
        assert 0.0 <= rates["cer"] and 0.0 <= rates["wer"] <= 1.0
        assert f"| {name} | {100 * rates['cer']:.2f}% | {100 * rates['wer']:.2f}%" in report
    assert saved["decoders"]["greedy"]["wer"] > 0
    reduction = saved["lexicon_wer_reduction_vs_greedy"]
    assert reduction == pytest.approx(1 - saved["decoders"]["lexicon"]["wer"] / saved["decoders"]["greedy"]["wer"])
    assert f"{100 * reduction:.1f}% relative WER reduction" in report
    assert "lowest frequency" in report
    assert result["decoders"] == saved["decoders"]
    assert [s["greedy"] for s in saved["samples"]] == ["ab", "ba", "abb"]


def test_lexicon_sources():
    texts = ["the cat", "a dog, the end"]
    lexicon, info = bench_lexicon_wer.build_lexicon(texts, "labels")
    assert set(lexicon.frequencies) == {"the", "cat", "a", "dog,", "end"}
    assert len(set(lexicon.frequencies.values())) == 1 and info.label_words == 5
    with pytest.raises(ValueError, match="lexicon source"):
        bench_lexicon_wer.build_lexicon(texts, "everything")


def test_default_plus_labels_adds_missing_words_at_the_lowest_frequency(english_cache):
    lexicon, info = bench_lexicon_wer.build_lexicon(["ab ba", "bb"], "default+labels")
    assert lexicon.frequencies["ba"] == lexicon.frequencies["bb"] == 0.001
    assert lexicon.frequencies["ab"] == 0.005  # already listed: its own frequency
    assert (info.added_label_words, info.label_words, info.words) == (2, 3, 5)
