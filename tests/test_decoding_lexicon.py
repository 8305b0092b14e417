"""Lexicon decoding (words) and word beam search (lines)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from htr.runtime.decoding import Lexicon, ctc_log_probability, greedy_decode, lexicon_decode
from htr.runtime.decoding.lexicon import _WORD_RE

CHARSET = "abcdehloprtw ,.!0123"
BLANK = len(CHARSET)


def aligned(text: str, noise: float = 0.05, rival: dict[int, str] | None = None) -> np.ndarray:
    """A softmax reading `text`, where "-" is a blank frame; `rival` gives a frame
    index a competing character that wins that frame."""
    probs = np.full((len(text), len(CHARSET) + 1), noise / len(CHARSET))
    for t, ch in enumerate(text):
        probs[t, BLANK if ch == "-" else CHARSET.index(ch)] += 1 - noise
        if rival and t in rival:
            probs[t, CHARSET.index(rival[t])] += 1.2 * (1 - noise)
    return probs / probs.sum(axis=1, keepdims=True)


def test_words_mode_finds_the_lexicon_word_the_network_misspelled():
    # The network reads "hallo" (an "a" beats the "e" in frame 3).
    probs = aligned("-h-e-l-l-o-", rival={3: "a"})
    assert greedy_decode(probs, CHARSET, BLANK).text == "hallo"
    result = lexicon_decode(probs, CHARSET, BLANK, ["hello", "world", "help"])
    assert result.text == "hello"
    assert result.log_prob == pytest.approx(ctc_log_probability(probs, "hello", CHARSET, BLANK), abs=1e-4)


def test_lines_mode_keeps_punctuation_digits_and_spaces_between_words():
    probs = aligned("-h-e-l-l-o-,- -w-o-r-l-t-!- -2-0-", rival={})
    # "worlt" is not a word: the lexicon fixes it, punctuation and digits stay.
    result = lexicon_decode(probs, CHARSET, BLANK, ["hello", "world"], mode="lines", beam_width=16)
    assert result.text == "hello, world! 20"


def test_lines_mode_bigram_breaks_a_tie():
    # "bad" vs "bat" after "the": equal network evidence, the bigram text decides.
    charset = "abdeht "
    blank = len(charset)
    rows = []
    for ch in "the ba":
        row = np.full(len(charset) + 1, 0.001)
        row[charset.index(ch)] = 1.0
        rows += [row, np.eye(len(charset) + 1)[blank] + 0.001]
    last = np.full(len(charset) + 1, 0.001)
    last[charset.index("d")] = last[charset.index("t")] = 0.5
    probs = np.array(rows + [last])
    probs /= probs.sum(axis=1, keepdims=True)
    lexicon = ["the", "bad", "bat"]
    with_bat = lexicon_decode(probs, charset, blank, lexicon, mode="lines", bigram_text=["the bat"] * 5)
    with_bad = lexicon_decode(probs, charset, blank, lexicon, mode="lines", bigram_text=["the bad"] * 5)
    assert (with_bat.text, with_bad.text) == ("the bat", "the bad")


def test_hopeless_input_still_returns_a_lexicon_word():
    probs = aligned("-0-1-2-")
    result = lexicon_decode(probs, CHARSET, BLANK, ["hello", "world"], beam_width=2)
    assert result.text in {"hello", "world"}


def test_lexicon_file_with_frequencies(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# a comment\nhello\t10\nworld 3\n#\n\nhelp\n", encoding="utf-8")
    lexicon = Lexicon.from_file(path)
    assert lexicon.frequencies == {"hello": 10.0, "world": 3.0, "#": 1.0, "help": 1.0}


def test_empty_or_unusable_lexicon_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        Lexicon.from_words([])
    with pytest.raises(ValueError, match="charset"):
        lexicon_decode(aligned("-a-"), CHARSET, BLANK, ["xyz"])
    with pytest.raises(ValueError, match="mode"):
        lexicon_decode(aligned("-a-"), CHARSET, BLANK, ["a"], mode="pages")


WORDS = ["hello", "world", "help", "hold", "old", "how", "row", "the", "to", "toe", "a", "bed"]


@settings(max_examples=80, deadline=None)
@given(
    steps=st.integers(1, 14),
    seed=st.integers(0, 2**32 - 1),
    lexicon=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
    width=st.integers(1, 8),
    peak=st.sampled_from([0.0, 4.0]),
)
def test_words_mode_never_leaves_the_lexicon(steps, seed, lexicon, width, peak):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, steps, len(CHARSET) + 1))
    logits[..., BLANK] += peak
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    lengths = rng.integers(0, steps + 1, 2)
    for result in lexicon_decode(probs, CHARSET, BLANK, lexicon, width, lengths, nbest=min(2, width)):
        assert result.text in lexicon
        for alternative in result.nbest:
            assert alternative.text in lexicon
        assert len(result.time_steps) == len(result.text) == len(result.char_confidences)


@settings(max_examples=80, deadline=None)
@given(
    steps=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
    lexicon=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
    width=st.integers(1, 10),
    use_bigram=st.booleans(),
)
def test_lines_mode_spells_only_lexicon_words(steps, seed, lexicon, width, use_bigram):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(steps, len(CHARSET) + 1)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    bigram = [" ".join(rng.choice(WORDS, 5))] if use_bigram else None
    result = lexicon_decode(probs, CHARSET, BLANK, lexicon, width, mode="lines", bigram_text=bigram)
    for word in _WORD_RE.findall(result.text):
        assert word in lexicon
    assert result.log_prob == pytest.approx(
        ctc_log_probability(probs, result.text, CHARSET, BLANK), rel=1e-4, abs=1e-4
    )


ORACLE_WORDS = ["hello", "world", "help", "hold", "old", "how", "row", "the", "to", "toe", "a", "bed", "ll", "hell"]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 10), peak=st.sampled_from([0.0, 4.0]))
def test_words_mode_with_an_unpruned_beam_is_the_best_word_by_brute_force(seed, steps, peak):
    """With a beam wider than the trie has nodes and no character pruning, words-mode
    search is exact: it returns the lexicon word of highest CTC probability (each word
    scored by the forward algorithm), or, when no word fits in the frames, still a word."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(steps, BLANK + 1)) * 2
    if peak:
        logits[:, BLANK] += peak
        logits[np.arange(steps), rng.integers(0, BLANK + 1, steps)] += peak + 2.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    result = lexicon_decode(probs, CHARSET, BLANK, ORACLE_WORDS, beam_width=128, mode="words",
                            top_k=BLANK, prune_threshold=0.0)
    scores = {w: float(ctc_log_probability(probs, w, CHARSET, BLANK)) for w in ORACLE_WORDS}
    best = max(scores.values())
    assert result.text in scores
    if np.isfinite(best):
        assert scores[result.text] == pytest.approx(best, abs=1e-4)
        assert result.log_prob == pytest.approx(best, abs=1e-4)
