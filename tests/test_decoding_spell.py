"""Spelling correction post-pass."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from htr.runtime.decoding import Lexicon, spell_correct

LEXICON = Lexicon({"the": 100, "quick": 10, "brown": 8, "fox": 5, "for": 50, "receive": 3, "jumped": 4, "jump": 2})


def test_corrects_words_and_keeps_everything_between_them():
    assert spell_correct("Teh quikc brwn fox, 42 TIMES!", LEXICON) == "The quick brown fox, 42 TIMES!"


def test_transposition_is_one_edit_and_frequency_breaks_ties():
    assert spell_correct("recieve", LEXICON) == "receive"
    assert spell_correct("fxo", LEXICON) == "fox"  # swap: distance 1
    assert spell_correct("fo", LEXICON) == "for"  # "fox" and "for" at 1; "for" is commoner


def test_capitalisation_follows_the_input():
    assert spell_correct("QUIKC Quikc quikc", LEXICON) == "QUICK Quick quick"


def test_far_words_and_short_words_are_left_alone():
    assert spell_correct("zzzzzz", LEXICON) == "zzzzzz"
    assert spell_correct("x", LEXICON) == "x"
    # Short words only get distance-1 corrections.
    assert spell_correct("tx", ["the"]) == "tx"


def test_accepts_a_word_list_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("hello 5\nworld 3\n", encoding="utf-8")
    assert spell_correct("helo wrld", path) == "hello world"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzTQ ,.'0123", max_size=30))
def test_any_text_keeps_its_non_word_characters(text):
    corrected = spell_correct(text, LEXICON)
    strip = lambda s: "".join(c for c in s if not c.isalpha())  # noqa: E731
    assert strip(corrected) == strip(text)
    assert spell_correct(corrected, LEXICON) == corrected or corrected != text
