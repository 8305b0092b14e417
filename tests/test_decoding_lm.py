"""Character n-gram LM: probabilities against a direct Witten-Bell reference,
save/load, the htr-lm CLI, and LM-weighted beam search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from htr.runtime.decoding import CharLM, beam_search_decode, make_decoder
from htr.runtime.decoding.alphabet import Alphabet
from htr.runtime.decoding.constants import DEFAULT_LM_WEIGHT, LM_LINE_START
from htr.runtime.decoding.lm import load_lm
from htr.runtime.decoding.lm_cli import app

CORPUS = ["the cat sat on the mat", "the hat is on the cat", "a bat and a rat"]


def reference_prob(lm: CharLM, history: str, char: str) -> float:
    """Interpolated Witten-Bell straight from the definition, recursively."""
    vocab = lm.vocabulary
    context = (LM_LINE_START + history)[-(lm.order - 1) :] if lm.order > 1 else ""

    def p(h: str) -> float:
        if h not in lm.counts:
            return p(h[1:])
        following = lm.counts[h]
        total, types = sum(following.values()), len(following)
        lower = 1.0 / len(vocab) if h == "" else p(h[1:])
        return (following.get(char, 0) + types * lower) / (total + types)

    return p(context)


@settings(max_examples=60, deadline=None)
@given(order=st.integers(1, 5), text=st.text(alphabet="thecasonm ", min_size=1, max_size=12))
def test_log_prob_equals_the_witten_bell_definition(order, text):
    lm = CharLM.train(CORPUS, order=order)
    expected = sum(math.log(reference_prob(lm, text[:i], c)) for i, c in enumerate(text))
    assert lm.log_prob(text) == pytest.approx(expected, rel=1e-5)


def test_probabilities_sum_to_one_in_every_context():
    lm = CharLM.train(CORPUS, order=4)
    alphabet = Alphabet.from_charset(lm.vocabulary, len(lm.vocabulary))
    logp, next_state, start = lm.tables(alphabet)
    sums = np.exp(logp[:, : alphabet.blank].astype(np.float64)).sum(axis=1)
    assert sums == pytest.approx(np.ones(len(sums)), abs=1e-5)
    assert 0 <= start < len(logp) and next_state.min() >= 0


def test_seen_text_scores_higher_than_scrambled():
    lm = CharLM.train(CORPUS, order=3)
    assert lm.log_prob("the cat") > lm.log_prob("hte tac")
    assert lm.log_prob("xyz") < lm.log_prob("the") - 20  # unknown characters


def test_save_and_load_round_trip(tmp_path):
    lm = CharLM.train(CORPUS, order=3)
    path = tmp_path / "lm.json"
    lm.save(path)
    again = CharLM.load(path)
    assert again.order == 3 and again.log_prob("the mat") == pytest.approx(lm.log_prob("the mat"))


def test_gzipped_save_keeps_weight_and_source_and_is_reproducible(tmp_path):
    lm = CharLM.train(CORPUS, order=3)
    lm.weight, lm.source = 0.25, "htr-lm corpus.txt"
    a, b = tmp_path / "a.lm.json.gz", tmp_path / "b.lm.json.gz"
    lm.save(a)
    lm.save(b)
    assert a.read_bytes()[:2] == b"\x1f\x8b" and a.read_bytes() == b.read_bytes()
    again = CharLM.load(a)
    assert (again.weight, again.source) == (0.25, "htr-lm corpus.txt")
    assert again.log_prob("the mat") == pytest.approx(lm.log_prob("the mat"))
    assert again.weight_or(None) == 0.25 and again.weight_or(0.0) == 0.0
    assert CharLM.train(CORPUS).weight_or(None) == DEFAULT_LM_WEIGHT


def test_min_count_prunes_rare_contexts_and_keeps_the_back_off_whole():
    full, pruned = CharLM.train(CORPUS, order=4), CharLM.train(CORPUS, order=4, min_count=3)
    assert set(pruned.counts) < set(full.counts)
    assert all(h == "" or sum(c.values()) >= 3 for h, c in pruned.counts.items())
    assert all(h[1:] in pruned.counts for h in pruned.counts if h)  # closed under suffixes
    alphabet = Alphabet.from_charset(pruned.vocabulary, len(pruned.vocabulary))
    logp, next_state, _ = pruned.tables(alphabet)
    sums = np.exp(logp[:, : alphabet.blank].astype(np.float64)).sum(axis=1)
    assert sums == pytest.approx(np.ones(len(sums)), abs=1e-5) and next_state.min() >= 0
    # the kept contexts give the Witten-Bell probabilities of the pruned counts
    text = "the cat on a mat"
    expected = sum(math.log(reference_prob(pruned, text[:i], c)) for i, c in enumerate(text))
    assert pruned.log_prob(text) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="min_count"):
        CharLM.train(CORPUS, min_count=0)


def test_beam_search_uses_the_weight_stored_in_the_lm_file(tmp_path):
    charset = "act o"
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(len(charset) + 1, 0.3), size=(6, 12)).astype(np.float32)
    lm = CharLM.train(["cat act tact", "o oo"] * 3, order=3)
    plain = [d.text for d in make_decoder("beam", charset, len(charset))(probs)]
    lm.weight = 0.0
    lm.save(tmp_path / "w0.json")
    lm.weight = 3.0
    lm.save(tmp_path / "w3.json")
    with_w0 = make_decoder("beam", charset, len(charset), lm=str(tmp_path / "w0.json"))
    with_w3 = make_decoder("beam", charset, len(charset), lm=str(tmp_path / "w3.json"))
    w3_overridden = make_decoder("beam", charset, len(charset), lm=str(tmp_path / "w3.json"), lm_weight=0.0)
    assert [d.text for d in with_w0(probs)] == plain == [d.text for d in w3_overridden(probs)]
    assert [d.text for d in with_w3(probs)] != plain
    # The public function is built by the same builder: the file's weight applies there too.
    assert [d.text for d in beam_search_decode(probs, charset, len(charset), lm=str(tmp_path / "w3.json"))] == \
        [d.text for d in with_w3(probs)]
    assert [d.text for d in beam_search_decode(probs, charset, len(charset), lm=str(tmp_path / "w0.json"))] == plain


def test_bundled_lm_names_work_in_the_public_function_as_in_make_decoder():
    """beam_search_decode(..., lm="lines") once failed ("not a readable language model
    file") while htr-run --lm lines worked; both go through build_decoder now."""
    from htr.runtime.constants import SEED_LINE_CHARSET

    blank = len(SEED_LINE_CHARSET)
    probs = np.random.default_rng(5).dirichlet(np.full(blank + 1, 0.2), size=(3, 20)).astype(np.float32)
    public = beam_search_decode(probs, SEED_LINE_CHARSET, blank, lm="lines")
    built = make_decoder("beam", SEED_LINE_CHARSET, blank, lm="lines")(probs)
    assert [(d.text, d.log_prob) for d in public] == [(d.text, d.log_prob) for d in built]
    stored = load_lm("lines").weight
    by_weight = beam_search_decode(probs, SEED_LINE_CHARSET, blank, lm="lines", lm_weight=stored)
    assert [d.text for d in by_weight] == [d.text for d in public]


def test_bundled_lms_are_found_by_name_and_unknown_names_are_refused(tmp_path):
    from htr.runtime.models import bundled_lms, resolve_lm

    bundled = bundled_lms()
    assert {"words", "lines"} <= set(bundled)
    for name in ("words", "lines"):
        lm = load_lm(name)
        assert lm.weight is not None and lm.source.startswith("htr-lm ")
        assert bundled[name].stat().st_size < 4 * 2**20
    with pytest.raises(ValueError, match="no such language model file or bundled LM name"):
        resolve_lm(tmp_path / "nope")


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="bad.json"):
        CharLM.load(bad)
    with pytest.raises(ValueError, match="missing.json"):
        CharLM.load(tmp_path / "missing.json")


def test_training_needs_text():
    with pytest.raises(ValueError, match="no text"):
        CharLM.train(["", "  "])


def test_lm_resolves_what_the_network_cannot():
    # Frame 2 is a coin toss between "a" and "o"; the LM knows "cat", not "cot".
    charset = "act o"
    blank = len(charset)
    def frame(**p):
        row = np.full(len(charset) + 1, 0.001)
        for k, v in p.items():
            row[charset.index(k) if k != "blank" else blank] = v
        return row / row.sum()
    probs = np.array([frame(c=0.99), frame(a=0.5, o=0.5), frame(t=0.99)])
    probs[1, charset.index("o")] += 0.01  # the network leans to "cot"
    lm = CharLM.train(["cat act tact"] * 3, order=3)
    assert beam_search_decode(probs, charset, blank).text == "cot"
    assert beam_search_decode(probs, charset, blank, lm=lm, lm_weight=0.5).text == "cat"


def test_cli_trains_and_writes_a_model(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(CORPUS), encoding="utf-8")
    out = tmp_path / "lm.json"
    result = CliRunner().invoke(app, [str(text), "-o", str(out), "--order", "3"])
    assert result.exit_code == 0, result.output
    assert CharLM.load(out).order == 3


def test_cli_stores_weight_and_min_count(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(CORPUS), encoding="utf-8")
    out = tmp_path / "lm.json.gz"
    result = CliRunner().invoke(app, [str(text), "-o", str(out), "--order", "4", "--min-count", "3", "--weight", "0.3"])
    assert result.exit_code == 0, result.output
    lm = CharLM.load(out)
    assert lm.weight == 0.3 and "--min-count 3" in lm.source
    assert lm.counts == CharLM.train(CORPUS, order=4, min_count=3).counts


def test_cli_reports_an_unreadable_file(tmp_path):
    result = CliRunner().invoke(app, [str(tmp_path / "nope.txt"), "-o", str(tmp_path / "lm.json")])
    assert result.exit_code == 2
    assert "nope.txt" in result.output
