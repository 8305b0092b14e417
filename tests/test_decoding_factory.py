"""make_decoder, the default lexicon, and the package's import hygiene."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from htr.runtime.decoding import CharLM, Decoded, Lexicon, make_decoder, wordlist

CHARSET = "abcdehlorw "
BLANK = 0  # Keras-3 style: blank first


def reading(text: str) -> np.ndarray:
    probs = np.full((len(text), len(CHARSET) + 1), 0.002)
    for t, ch in enumerate(text):
        probs[t, BLANK if ch == "-" else CHARSET.index(ch) + 1] = 1.0
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    "name, options",
    [
        ("greedy", {}),
        ("beam", {"beam_width": 4, "nbest": 2}),
        ("beam", {"lm": CharLM.train(["hello world"], order=3), "lm_weight": 0.3}),
        ("lexicon", {"lexicon": ["hello", "world"], "mode": "lines", "beam_width": 8}),
        ("lexicon", {"lexicon": Lexicon.from_words(["hello"]), "mode": "words"}),
        ("greedy", {"spell": ["hello", "world"]}),
    ],
)
def test_every_decoder_reads_a_padded_batch(name, options):
    decode = make_decoder(name, CHARSET, BLANK, **options)
    a, b = reading("-h-e-l-l-o-"), reading("-h-e-l-o-")
    batch = np.stack([a, np.concatenate([b, np.zeros((2, b.shape[1]))])])
    results = decode(batch, np.array([11, 9]))
    assert all(isinstance(r, Decoded) for r in results)
    assert results[0].text == "hello"
    if name != "lexicon" or options.get("mode") == "lines":
        assert results[1].text in {"helo", "hello"}


def test_lm_path_option(tmp_path):
    path = tmp_path / "lm.json"
    CharLM.train(["hello world"], order=2).save(path)
    decode = make_decoder("beam", CHARSET, BLANK, lm=str(path))
    assert decode(reading("-h-e-l-l-o-")[None])[0].text == "hello"


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown decoder 'viterbi'"):
        make_decoder("viterbi", CHARSET, BLANK)
    with pytest.raises(ValueError, match="beam_width"):
        make_decoder("greedy", CHARSET, BLANK, beam_width=3)
    with pytest.raises(ValueError, match="beam_width"):
        make_decoder("beam", CHARSET, BLANK, beam_width=0)


def test_options_set_to_none_take_defaults():
    decode = make_decoder("beam", CHARSET, BLANK, beam_width=None, lm=None, nbest=None)
    assert decode(reading("-h-e-")[None])[0].text == "he"


def test_default_lexicon_without_wordfreq_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HTR_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "wordfreq", None)  # import fails
    with pytest.raises(wordfreq_error(), match="pip install wordfreq"):
        wordlist.default_lexicon(size=100)


def wordfreq_error():
    return wordlist.WordlistUnavailable


def test_default_lexicon_is_cached(monkeypatch, tmp_path):
    pytest.importorskip("wordfreq")
    monkeypatch.setenv("HTR_CACHE_DIR", str(tmp_path))
    first = wordlist.default_lexicon(size=200)
    assert "the" in first and "The" in first and "." in first
    assert (tmp_path / "wordlist-en-200.tsv").is_file()
    monkeypatch.setitem(sys.modules, "wordfreq", None)  # the cache needs no wordfreq
    assert wordlist.default_lexicon(size=200).frequencies.keys() == first.frequencies.keys()


def test_importing_decoding_pulls_in_no_heavy_module():
    code = (
        "import sys, htr.runtime.decoding, htr.runtime.decoding.lm_cli;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf2onnx', 'onnxruntime', 'wordfreq', 'cv2')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _o_or_l() -> np.ndarray:
    """'-h-e-l-?-': the fourth letter is 'o' (0.6) more than 'l' (0.3)."""
    probs = reading("-h-e-l-o-")
    probs[7] = 0.1 / (len(CHARSET) - 1)
    probs[7, CHARSET.index("o") + 1] = 0.6
    probs[7, CHARSET.index("l") + 1] = 0.3
    return probs


@pytest.mark.parametrize(
    "name, options",
    [
        ("greedy", {}),
        ("beam", {"beam_width": 4}),
        ("beam", {"lm": CharLM.train(["helo world"], order=3), "lm_weight": 0.3}),
        ("lexicon", {"lexicon": ["hello", "helo", "hell"], "mode": "words"}),
    ],
)
def test_chars_restricts_what_every_decoder_reads(name, options):
    probs = _o_or_l()
    assert make_decoder(name, CHARSET, BLANK, **options)(probs[None])[0].text == "helo"
    restricted = make_decoder(name, CHARSET, BLANK, chars="hel", **options)
    result = restricted(probs[None])[0]
    assert result.text == "hell"
    assert 0.0 < result.confidence <= 1.0


def test_chars_names_a_set_and_rejects_characters_the_model_lacks():
    charset = "0123456789/a"  # class 0 is the blank, so '0' is class 1 and 'a' class 12
    probs = np.full((3, len(charset) + 1), 0.01)
    probs[0, 12], probs[0, 11] = 0.6, 0.3  # 'a', then '/'
    probs[1, 0] = 0.9
    probs[2, 10] = 0.9  # '9'
    assert make_decoder("greedy", charset, 0)(probs[None])[0].text == "a9"
    decode = make_decoder("greedy", charset, 0, chars="digits")  # the model has no space, '.', ...
    assert decode(probs[None])[0].text == "/9"
    with pytest.raises(ValueError, match=r"'xy' not in the model's charset of 12 characters"):
        make_decoder("greedy", charset, 0, chars="1xy")
    ranged = make_decoder("greedy", charset, 0, chars="0-9/")  # a range, as in tr
    assert ranged(probs[None])[0].text == "/9"
    assert make_decoder("greedy", charset, 0, chars="0-8")(probs[None])[0].text == ""
    with pytest.raises(ValueError, match="runs backwards"):
        make_decoder("greedy", charset, 0, chars="9-0")
    with pytest.raises(ValueError, match="none of"):
        make_decoder("greedy", "abc", 0, chars="digits")
    with pytest.raises(ValueError, match="non-empty"):
        make_decoder("beam", "abc", 0, chars="")
