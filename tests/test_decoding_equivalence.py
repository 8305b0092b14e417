"""The optimised CTC beam search and word beam search against the straightforward
implementation they replaced, kept here as the reference: on fuzzed inputs every
array of the search result must be identical, dead beams included.

The reference builds every candidate's scorer state on the full (batch, beam,
top_k) grid, finds trie children by binary search, and gathers beams with 2-D fancy
indexing; the optimised search scores the grid with per-node bitmasks, builds the
state of only the extensions it keeps, and gathers by flat index.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from htr.runtime.decoding import CharLM, LexiconDecoder
from htr.runtime.decoding.alphabet import log_probs
from htr.runtime.decoding.beam import BeamSearchResult, CombinedScorer, prefix_beam_search, top_indices
from htr.runtime.decoding.lexicon_decoder import LexiconScorer
from htr.runtime.decoding.lm import CharLMScorer
from htr.runtime.decoding.trie import Trie, _popcount, _popcount_bytes

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_DEAD_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)

CHARSET = "abcdehloprtw ,.!0123"
BLANK = len(CHARSET)
WORDS = ["hello", "world", "help", "hold", "old", "how", "row", "the", "to", "toe", "a", "bed", "ll", "hell"]
TEXT = ["hello world", "the old row", "how to help", "hold the bed", "a world to hold"]


def reference_search(logp, blank, beam_width, top_k, prune_threshold, scorer=None):
    """The search before its per-frame work was cut (scorers: `extend` protocol)."""
    batch, steps, classes = logp.shape
    width = int(beam_width)
    neg_inf = np.float32(-np.inf)
    dtype = logp.dtype
    # The frame's candidate characters: its top_k non-blank classes above threshold.
    k = max(1, min(int(top_k), classes - 1))
    chars_only = logp.copy()
    chars_only[:, :, blank] = -np.inf
    if k < classes - 1:
        cands = top_indices(chars_only.reshape(batch * steps, classes), k).reshape(batch, steps, k)
    else:
        cands = np.broadcast_to(
            np.delete(np.arange(classes), blank), (batch, steps, classes - 1)
        ).copy()
    cand_logp = np.take_along_axis(chars_only, cands, axis=2)
    if prune_threshold > 0:
        cand_logp[cand_logp < np.log(prune_threshold)] = -np.inf
    del chars_only

    rows = np.arange(batch)[:, None]
    slots = np.arange(width, dtype=np.uint64)[None, :]
    pb = np.full((batch, width), neg_inf, dtype=dtype)
    pb[:, 0] = 0.0
    pnb = np.full((batch, width), neg_inf, dtype=dtype)
    last = np.full((batch, width), -1, dtype=np.int64)
    length = np.zeros((batch, width), dtype=np.int64)
    hashes = np.zeros((batch, width), dtype=np.uint64)
    parent_hash = np.zeros((batch, width), dtype=np.uint64)
    extra = np.zeros((batch, width), dtype=dtype)  # scorer's accumulated score
    state = scorer.start(batch, width) if scorer is not None else ()
    src_history = np.empty((steps, batch, width), dtype=np.int32)
    emit_history = np.empty((steps, batch, width), dtype=np.int32)

    with np.errstate(invalid="ignore", over="ignore"):
        for t in range(steps):
            frame = logp[:, t, :]
            total = np.logaddexp(pb, pnb)
            alive = total > neg_inf
            last_logp = np.where(last >= 0, frame[rows, np.maximum(last, 0)], neg_inf)
            stay_pb = total + frame[:, blank, None]
            stay_pnb = pnb + last_logp

            # A beam whose parent prefix is also a beam gets the parent's paths that
            # grow by its last character this frame (they would otherwise be a
            # duplicate candidate).
            # (Dead beams carry unique sentinel hashes, so they never match.)
            match = hashes[:, None, :] == parent_hash[:, :, None]
            has_parent = match.any(axis=2) & alive & (length > 0)
            parent = match.argmax(axis=2)
            parent_base = np.where(
                last[rows, parent] == last,
                pb[rows, parent],
                total[rows, parent],
            )
            from_parent = np.where(has_parent, parent_base + last_logp, neg_inf)
            # When most of a beam's mass now comes from its parent, its last character
            # is better placed at this frame: record that path for time steps.
            moved = from_parent > np.logaddexp(stay_pb, stay_pnb)
            stay_pnb = np.logaddexp(stay_pnb, from_parent)

            chars = cands[:, t, :]
            grow_pnb = np.where(last[:, :, None] == chars[:, None, :], pb[:, :, None], total[:, :, None])
            grow_pnb = grow_pnb + cand_logp[:, t, None, :]
            if has_parent.any():
                child_b, child_k = np.nonzero(has_parent)
                same = chars[child_b] == last[child_b, child_k][:, None]
                found = same.any(axis=1)
                grow_pnb[
                    child_b[found], parent[child_b, child_k][found], same.argmax(axis=1)[found]
                ] = neg_inf

            stay_score = np.logaddexp(stay_pb, stay_pnb)
            if scorer is not None:
                delta, grow_state = scorer.extend(state, chars)
                grow_extra = extra[:, :, None] + delta
                stay_score = stay_score + extra
                grow_score = grow_pnb + grow_extra
            else:
                grow_score = grow_pnb
            scores = np.concatenate([stay_score, grow_score.reshape(batch, -1)], axis=1)
            top = top_indices(scores, width)

            grown = top >= width
            flat = np.where(grown, top - width, 0)
            src = np.where(grown, flat // k, top)
            which = flat % k
            char = chars[rows, which]
            pb = np.where(grown, neg_inf, stay_pb[rows, src])
            pnb = np.where(
                grown,
                grow_pnb.reshape(batch, -1)[rows, flat],
                stay_pnb[rows, src],
            )
            old_hash = hashes[rows, src]
            hashes = np.where(grown, old_hash * _HASH_MULTIPLIER + (char + 1).astype(np.uint64), old_hash)
            parent_hash = np.where(grown, old_hash, parent_hash[rows, src])
            last = np.where(grown, char, last[rows, src])
            length = length[rows, src] + grown
            # A dead beam (picked only when fewer than `width` candidates are
            # possible) may repeat a live beam's prefix: give it a hash no prefix has.
            dead = scores[rows, top] == neg_inf
            if dead.any():
                hashes = np.where(dead, _DEAD_HASH - slots, hashes)
            if scorer is not None:
                extra = np.where(
                    grown, grow_extra.reshape(batch, -1)[rows, flat], extra[rows, src]
                )
                state = tuple(
                    np.where(grown, g.reshape(batch, -1)[rows, flat], s[rows, src])
                    for s, g in zip(state, grow_state)
                )
            moved_here = ~grown & moved[rows, src]
            src_history[t] = np.where(moved_here, parent[rows, src], src)
            emit_history[t] = np.where(grown, char, np.where(moved_here, last, -1))

    ctc = np.logaddexp(pb, pnb)
    score = ctc + extra
    if scorer is not None:
        score = score + scorer.finish(state)
    order = np.argsort(-score, axis=1, kind="stable")
    labels = np.empty((batch, width, steps), dtype=np.int32)
    slot = order
    for t in range(steps - 1, -1, -1):
        labels[:, :, t] = emit_history[t][rows, slot]
        slot = src_history[t][rows, slot]
    return BeamSearchResult(
        labels=labels,
        ctc=np.take_along_axis(ctc, order, 1),
        score=np.take_along_axis(score, order, 1),
        state=tuple(np.take_along_axis(s, order, 1) for s in state),
    )


def reference_child(trie: Trie, node, chars):
    """Child by binary search over the trie's sorted edge keys, -1 where none."""
    key = node.astype(np.int64) * trie.classes + chars
    at = np.minimum(np.searchsorted(trie.keys, key), len(trie.keys) - 1)
    return np.where((trie.keys[at] == key) & (node >= 0), trie.values[at], -1)


class ReferenceLexiconScorer:
    """The lexicon scorer as it was: (B, K, J) states for every candidate."""

    def __init__(self, scorer: LexiconScorer):
        self.trie, self.mode, self.word_char = scorer.trie, scorer.mode, scorer.word_char
        self.word_lm, self.weight = scorer.word_lm, scorer.weight

    def start(self, batch, width):
        node = np.full((batch, width), 0 if self.mode == "words" else -1, dtype=np.int32)
        return node, np.full((batch, width), -1, dtype=np.int32)

    def _closing_score(self, node, previous):
        if self.word_lm is None or self.weight == 0:
            return np.zeros(node.shape, dtype=np.float32)
        word = self.trie.word_of[np.maximum(node, 0)]
        closes = (node >= 0) & (word >= 0)
        score = self.weight * self.word_lm.log_prob(previous, word)
        return np.where(closes, score, 0.0).astype(np.float32)

    def extend(self, state, chars):
        node, previous = state
        node3 = node[:, :, None]
        chars3 = chars[:, None, :]
        is_word_char = self.word_char[chars3]
        child = reference_child(self.trie, np.where(node3 >= 0, node3, 0), chars3)
        complete = (node3 >= 0) & self.trie.complete[np.maximum(node3, 0)]
        if self.mode == "words":
            allowed = child >= 0
        else:
            allowed = np.where(is_word_char, child >= 0, (node3 < 0) | complete)
        closes = (~is_word_char) & (node3 >= 0)
        delta = np.where(allowed, np.float32(0.0), np.float32(-np.inf))
        new_previous = np.broadcast_to(previous[:, :, None], child.shape)
        if self.word_lm is not None and self.weight != 0:
            closing = self._closing_score(node, previous)[:, :, None]
            delta = delta + np.where(closes, closing, np.float32(0.0))
            word = self.trie.word_of[np.maximum(node3, 0)]
            new_previous = np.where(closes, word, new_previous)
        new_node = np.where(is_word_char, child, -1).astype(np.int32)
        return delta.astype(np.float32), (new_node, new_previous.astype(np.int32))

    def finish(self, state):
        node, previous = state
        complete = (node >= 0) & self.trie.complete[np.maximum(node, 0)]
        ok = complete if self.mode == "words" else (node < 0) | complete
        return np.where(ok, self._closing_score(node, previous), np.float32(-np.inf)).astype(np.float32)


class ReferenceCharLMScorer:
    """The character LM scorer as it was."""

    def __init__(self, scorer: CharLMScorer):
        self.weighted, self.next_state, self.start_state = scorer.weighted, scorer.next_state, scorer.start_state

    def start(self, batch, width):
        return (np.full((batch, width), self.start_state, dtype=np.int32),)

    def extend(self, state, chars):
        rows, cols = state[0][:, :, None], chars[:, None, :]
        return self.weighted[rows, cols], (self.next_state[rows, cols],)

    def finish(self, state):
        return np.zeros(state[0].shape, dtype=np.float32)


class ReferenceCombinedScorer:
    """Several reference scorers: scores add, states concatenate."""

    def __init__(self, scorers):
        self.scorers = scorers
        self.sizes = []

    def start(self, batch, width):
        states = [s.start(batch, width) for s in self.scorers]
        self.sizes = [len(s) for s in states]
        return tuple(a for s in states for a in s)

    def _split(self, state):
        out, at = [], 0
        for size in self.sizes:
            out.append(tuple(state[at : at + size]))
            at += size
        return out

    def extend(self, state, chars):
        total, grown = 0.0, []
        for scorer, part in zip(self.scorers, self._split(state)):
            delta, new = scorer.extend(part, chars)
            total = total + delta
            grown.extend(new)
        return total, tuple(grown)

    def finish(self, state):
        return sum(s.finish(p) for s, p in zip(self.scorers, self._split(state)))


def reference_scorer(scorer):
    """The reference twin of one of the decoders' scorers."""
    if scorer is None:
        return None
    if isinstance(scorer, CombinedScorer):
        return ReferenceCombinedScorer([reference_scorer(s) for s in scorer.scorers])
    if isinstance(scorer, LexiconScorer):
        return ReferenceLexiconScorer(scorer)
    return ReferenceCharLMScorer(scorer)


def assert_same_search(fast: BeamSearchResult, slow: BeamSearchResult) -> None:
    np.testing.assert_array_equal(fast.labels, slow.labels)
    np.testing.assert_array_equal(fast.ctc, slow.ctc)
    np.testing.assert_array_equal(fast.score, slow.score)
    assert len(fast.state) == len(slow.state)
    for a, b in zip(fast.state, slow.state):
        np.testing.assert_array_equal(a, b)


def random_softmax(rng, batch, steps, classes, peak):
    logits = rng.normal(size=(batch, steps, classes)) * 2
    if peak:
        logits[..., BLANK] += peak
        winners = rng.integers(0, classes, (batch, steps))
        np.put_along_axis(logits, winners[..., None], peak + 2.0, axis=2)
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (e / e.sum(axis=2, keepdims=True)).astype(np.float32)


def run_both(probs, lengths, decoder: LexiconDecoder | None, width, top_k, threshold, scorer=None):
    logp = log_probs(probs, lengths, BLANK)
    scorer = decoder.scorer if decoder is not None else scorer
    fast = prefix_beam_search(logp, BLANK, width, top_k, threshold, scorer)
    slow = reference_search(logp, BLANK, width, top_k, threshold, reference_scorer(scorer))
    return fast, slow


LM = CharLM.train(TEXT * 3, order=3)


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 3),
    steps=st.integers(1, 30),
    width=st.integers(1, 12),
    top_k=st.sampled_from([1, 3, 8, 100]),
    threshold=st.sampled_from([0.0, 1e-5, 0.05]),
    mode=st.sampled_from(["lines", "words"]),
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=8),
    word_model=st.sampled_from(["none", "frequencies", "bigram"]),
    char_lm=st.booleans(),
    peak=st.sampled_from([0.0, 3.0, 8.0]),
)
def test_word_beam_search_is_the_reference_search(
    seed, batch, steps, width, top_k, threshold, mode, words, word_model, char_lm, peak
):
    rng = np.random.default_rng(seed)
    probs = random_softmax(rng, batch, steps, BLANK + 1, peak)
    lengths = rng.integers(0, steps + 1, batch)
    lexicon = {w: float(rng.integers(1, 50)) for w in words} if word_model == "frequencies" else words
    decoder = LexiconDecoder(
        CHARSET, BLANK, lexicon, beam_width=width, mode=mode, top_k=top_k, prune_threshold=threshold,
        bigram_text=TEXT if word_model == "bigram" else None, lm=LM if char_lm else None,
    )
    assert_same_search(*run_both(probs, lengths, decoder, width, top_k, threshold))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 4),
    steps=st.integers(1, 40),
    width=st.integers(1, 16),
    top_k=st.sampled_from([1, 4, 12, 100]),
    threshold=st.sampled_from([0.0, 1e-5, 0.05]),
    char_lm=st.booleans(),
    peak=st.sampled_from([0.0, 4.0, 10.0]),
)
def test_beam_search_is_the_reference_search(seed, batch, steps, width, top_k, threshold, char_lm, peak):
    rng = np.random.default_rng(seed)
    probs = random_softmax(rng, batch, steps, BLANK + 1, peak)
    lengths = rng.integers(0, steps + 1, batch)
    from htr.runtime.decoding.alphabet import Alphabet

    scorer = CharLMScorer(LM, Alphabet.from_charset(CHARSET, BLANK)) if char_lm else None
    assert_same_search(*run_both(probs, lengths, None, width, top_k, threshold, scorer))


def test_word_beam_search_on_long_lines_is_the_reference_search():
    # Bench-like: 52 letters (one mask word), a few thousand words with
    # frequencies (unigram word model), width 25, 96-frame lines.
    rng = np.random.default_rng(7)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    charset = letters + " ,.-'0123456789"
    words = {"".join(rng.choice(list(letters), rng.integers(1, 9))): float(rng.zipf(1.5)) for _ in range(3000)}
    decoder = LexiconDecoder(charset, len(charset), words, beam_width=25, mode="lines")
    logits = rng.normal(0, 1.5, (6, 96, len(charset) + 1))
    path = rng.integers(0, len(charset) + 1, (6, 96))
    np.put_along_axis(logits, path[..., None], 9.0, axis=2)
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    logp = log_probs(probs.astype(np.float32), np.full(6, 96), len(charset))
    fast = prefix_beam_search(logp, len(charset), 25, 12, 1e-5, decoder.scorer)
    slow = reference_search(logp, len(charset), 25, 12, 1e-5, reference_scorer(decoder.scorer))
    assert_same_search(fast, slow)


@pytest.mark.parametrize("letters", [20, 100, 300])  # one mask word, two, binary search
def test_trie_child_lookups_match_binary_search(letters):
    rng = np.random.default_rng(letters)
    charset = [chr(0x100 + i) for i in range(letters)]
    from htr.runtime.decoding import Lexicon
    from htr.runtime.decoding.alphabet import Alphabet

    alphabet = Alphabet.from_charset(charset, 3)  # blank inside the classes
    words = ["".join(rng.choice(charset, rng.integers(1, 6))) for _ in range(500)]
    trie = Lexicon.from_words(words).trie(alphabet, "words")
    assert trie._mask_words == {20: 1, 100: 2, 300: 5}[letters]
    nodes = rng.integers(-1, len(trie.word_of), 5000)
    chars = rng.integers(0, alphabet.num_classes, 5000)
    # Real edges too, so that most lookups are not misses.
    edge = rng.integers(0, len(trie.keys), 2000)
    nodes[:2000], chars[:2000] = trie.keys[edge] // trie.classes, trie.keys[edge] % trie.classes
    expected = reference_child(trie, nodes, chars)
    np.testing.assert_array_equal(trie.child(nodes, chars), expected)
    inside = nodes >= 0
    np.testing.assert_array_equal(trie.has_child(nodes[inside], chars[inside]), expected[inside] >= 0)
    grid = trie.has_child(np.maximum(nodes[:40], 0)[:, None], chars[None, :30])
    np.testing.assert_array_equal(grid, reference_child(trie, np.maximum(nodes[:40], 0)[:, None], chars[None, :30]) >= 0)


def test_popcount_without_numpy_2():
    values = np.random.default_rng(0).integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(3)
    expected = np.array([bin(int(v)).count("1") for v in values])
    np.testing.assert_array_equal(_popcount_bytes(values), expected)
    np.testing.assert_array_equal(_popcount(values), expected)
