"""Lexicon decoding: prefix-trie constrained beam search.

Two modes:

- ``words``: the image shows one word, and the result is the lexicon word that best
  explains the CTC output (beam search over the trie, not an edit-distance lookup
  after the fact). It never returns a word outside the lexicon.
- ``lines``: word beam search (Scheidl, Fiel and Sablatnig, ICFHR 2018, "Words"
  mode): letters must spell lexicon words, while every other character of the
  charset (space, digits, punctuation) is free between words. An optional word
  bigram model, learned from a text file, scores each word as it is completed.

Letters (``str.isalpha``) are word characters; lexicon entries are split at other
characters in lines mode ("don't" -> "don", "t"), and kept whole in words mode.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .alphabet import Alphabet, as_batch, log_probs
from .beam import BeamScorer, State, finish_hypotheses, prefix_beam_search
from .constants import (
    DEFAULT_BEAM_WIDTH,
    DEFAULT_LEXICON_MODE,
    DEFAULT_PRUNE_THRESHOLD,
    DEFAULT_TOP_K,
    DEFAULT_WORD_LM_WEIGHT,
    LEXICON_MODES,
    WORD_BIGRAM_LAMBDA,
)
from .ctc import forward_log_probs
from .options import check_search_options
from .result import Decoded, build_results

_WORD_RE = re.compile(r"[^\W\d_]+")
#: Tries over more distinct classes than 64 x this find children by binary search.
_MAX_MASK_WORDS = 4
#: Set bits per byte value, for NumPy < 2 (which has no bitwise_count).
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_bytes(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, a byte at a time."""
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8).reshape(np.shape(values) + (8,))
    return _BYTE_BITS[as_bytes].sum(axis=-1, dtype=np.int64)


#: Set bits of each uint64 (NumPy >= 2 has it built in).
_popcount = getattr(np, "bitwise_count", _popcount_bytes)


class Lexicon:
    """Words with frequencies (1 each when the source has none)."""

    def __init__(self, frequencies: Mapping[str, float]):
        words = {w: float(f) for w, f in frequencies.items() if w and not w.isspace()}
        if not words:
            raise ValueError("the lexicon is empty")
        self.frequencies: dict[str, float] = words

    @classmethod
    def from_words(cls, words: Iterable[str]) -> Lexicon:
        """A lexicon from words; a word listed n times gets frequency n."""
        return cls(Counter(w.strip() for w in words if w.strip()))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Lexicon:
        """Read one word per line, optionally followed by a tab or space and its
        frequency (``the 23135851162``). Blank lines and ``# `` comments (hash and
        space) are skipped, so ``#`` alone can still be a word."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read the lexicon ({err})") from None
        freqs: dict[str, float] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("# "):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) == 2:
                try:
                    freqs[parts[0]] = freqs.get(parts[0], 0.0) + float(parts[1])
                    continue
                except ValueError:
                    pass
            freqs[line] = freqs.get(line, 0.0) + 1.0
        if not freqs:
            raise ValueError(f"{path}: the lexicon has no words")
        return cls(freqs)

    @classmethod
    def coerce(cls, source: Lexicon | str | os.PathLike | Iterable[str] | Mapping[str, float]) -> Lexicon:
        """A `Lexicon` from a lexicon, a file path, a word->frequency map or words."""
        if isinstance(source, Lexicon):
            return source
        if isinstance(source, (str, os.PathLike)):
            return cls.from_file(source)
        if isinstance(source, Mapping):
            return cls(source)
        return cls.from_words(source)

    def __contains__(self, word: str) -> bool:
        return word in self.frequencies

    def __len__(self) -> int:
        return len(self.frequencies)

    def trie(self, alphabet: Alphabet, mode: str) -> Trie:
        """The lexicon's prefix trie over `alphabet`'s classes (built on each call)."""
        return Trie.build(self, alphabet, split_words=(mode == "lines"))


class Trie:
    """A prefix trie stored as arrays: node 0 is the root; `keys` (node * classes +
    class, sorted) and `values` list every (node, class) -> child edge.

    `child` finds edges with a bitmask per node: bit i of a node's mask says whether
    it has a child by the i-th class used in the trie, and since a node's edges are
    consecutive in `keys` (sorted by class), the child is found by counting the set
    bits below i. That is a few gathers per lookup instead of a binary search, which
    matters because word beam search does hundreds of thousands of lookups per line.
    Alphabets with more than `_MAX_MASK_WORDS` * 64 letters use the binary search.
    """

    def __init__(self, words: list[str], freqs: np.ndarray, alphabet: Alphabet):
        self.words = words
        classes = alphabet.num_classes
        lookup = {s: c for c, s in enumerate(alphabet.class_strings) if s}
        children: dict[tuple[int, int], int] = {}
        word_of = [-1]
        parent = [0]
        depth = [0]
        for w, word in enumerate(words):
            node = 0
            for char in word:
                key = (node, lookup[char])
                child = children.get(key)
                if child is None:
                    child = len(word_of)
                    children[key] = child
                    word_of.append(-1)
                    parent.append(node)
                    depth.append(depth[node] + 1)
                node = child
            word_of[node] = w
        keys = np.array([n * classes + c for n, c in children], dtype=np.int64)
        values = np.array(list(children.values()), dtype=np.int32)
        order = np.argsort(keys)
        self.keys = keys[order]
        self.values = values[order]
        self.classes = classes
        self.word_of = np.array(word_of, dtype=np.int32)  # word ending at node, or -1
        self.complete = self.word_of >= 0
        self.depth = np.array(depth, dtype=np.int32)
        # Most frequent word below each node: completes a beam cut off mid-word.
        best = np.where(self.complete, self.word_of, -1)
        best_freq = np.where(self.complete, freqs[np.maximum(self.word_of, 0)], -1.0)
        for node in range(len(parent) - 1, 0, -1):  # children come after parents
            up = parent[node]
            if best_freq[node] > best_freq[up]:
                best_freq[up], best[up] = best_freq[node], best[node]
        self.best_word = best
        self.encoded = [np.array([lookup[c] for c in word], dtype=np.int64) for word in words]
        self._build_masks(len(word_of))

    def _build_masks(self, nodes: int) -> None:
        parents, classes = np.divmod(self.keys, self.classes)
        used = np.unique(classes)
        words = -(-len(used) // 64)
        self._mask_words = words
        if words > _MAX_MASK_WORDS:
            return
        letter = np.full(self.classes, -1, dtype=np.int64)
        letter[used] = np.arange(len(used))
        self._class_word = np.maximum(letter, 0) // 64
        shift = (np.maximum(letter, 0) % 64).astype(np.uint64)
        self._class_bit = np.where(letter >= 0, np.uint64(1) << shift, np.uint64(0)).astype(np.uint64)
        self._class_below = np.where(letter >= 0, self._class_bit - np.uint64(1), np.uint64(0)).astype(np.uint64)
        masks = np.zeros((nodes, words), dtype=np.uint64)
        np.bitwise_or.at(masks, (parents, self._class_word[classes]), self._class_bit[classes])
        first = np.searchsorted(parents, np.arange(nodes))  # a node's first edge in `keys`
        base = np.empty((nodes, words), dtype=np.int64)
        base[:, 0] = first
        for w in range(1, words):
            base[:, w] = base[:, w - 1] + _popcount(masks[:, w - 1])
        self._masks = masks[:, 0].copy() if words == 1 else masks
        self._base = (base[:, 0].copy() if words == 1 else base).astype(np.int32)
        self._children = np.append(self.values, np.int32(-1))  # one past the end: no child

    @classmethod
    def build(cls, lexicon: Lexicon, alphabet: Alphabet, split_words: bool) -> Trie:
        """Keep the lexicon words spellable with `alphabet` (split at non-letters when
        `split_words`), most frequent first."""
        allowed = set(alphabet.chars)
        freqs: Counter = Counter()
        for word, freq in lexicon.frequencies.items():
            pieces = _WORD_RE.findall(word) if split_words else [word]
            for piece in pieces:
                if piece and set(piece) <= allowed:
                    freqs[piece] += freq
        if not freqs:
            raise ValueError("no lexicon word can be written with the model's charset")
        words = sorted(freqs, key=lambda w: (-freqs[w], w))
        return cls(words, np.array([freqs[w] for w in words], dtype=np.float64), alphabet)

    def has_child(self, node: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """Whether each node (>= 0) has a child by each class (broadcast).

        Word beam search asks this for every beam and candidate character of every
        frame; with (B, K, 1) nodes and (B, 1, J) classes the masks are gathered
        once per beam and once per class, and only the bit test is (B, K, J)."""
        if self._mask_words > _MAX_MASK_WORDS:
            return self.child(node, chars) >= 0
        if self._mask_words == 1:
            return (self._masks[node] & self._class_bit[chars]) != 0
        bits = np.where(self._class_word[chars] == 0, self._class_bit[chars], np.uint64(0))
        found = (self._masks[node, 0] & bits) != 0
        for w in range(1, self._mask_words):
            bits = np.where(self._class_word[chars] == w, self._class_bit[chars], np.uint64(0))
            found |= (self._masks[node, w] & bits) != 0
        return found

    def child(self, node: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """Child of each node by each class (broadcast), -1 where there is none."""
        if self._mask_words > _MAX_MASK_WORDS:
            key = node.astype(np.int64) * self.classes + chars
            at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
            return np.where((self.keys[at] == key) & (node >= 0), self.values[at], -1)
        if self._mask_words == 1:
            mask, base = self._masks[node], self._base[node]
        else:
            word = self._class_word[chars]
            mask, base = self._masks[node, word], self._base[node, word]
        has = ((mask & self._class_bit[chars]) != 0) & (node >= 0)
        at = np.where(has, base + _popcount(mask & self._class_below[chars]), -1)
        return self._children[at]


class WordBigram:
    """Word bigram probabilities interpolated with unigram frequencies
    (Jelinek-Mercer): P(w | v) = lambda * c(v, w) / c(v) + (1 - lambda) * P(w)."""

    def __init__(self, trie: Trie, freqs: np.ndarray, pairs: Counter, lam: float = WORD_BIGRAM_LAMBDA):
        count = len(trie.words)
        self.count = count
        self.log_unigram = np.log((freqs + 1.0) / (freqs.sum() + count))
        firsts = np.zeros(count)
        keys, values = [], []
        for (v, w), n in pairs.items():
            firsts[v] += n
            keys.append(v * count + w)
            values.append(n)
        order = np.argsort(np.array(keys, dtype=np.int64))
        self.keys = np.array(keys, dtype=np.int64)[order]
        self.pair_counts = np.array(values, dtype=np.float64)[order]
        self.firsts = firsts
        self.lam = lam if len(self.keys) else 0.0

    @classmethod
    def from_text(cls, trie: Trie, lines: Iterable[str], freqs: np.ndarray | None = None) -> WordBigram:
        """Count word pairs (consecutive lexicon words) in lines of text."""
        index = {w: i for i, w in enumerate(trie.words)}
        unigrams = np.zeros(len(trie.words))
        pairs: Counter = Counter()
        for line in lines:
            ids = [index.get(w, -1) for w in _WORD_RE.findall(line)]
            for i in ids:
                if i >= 0:
                    unigrams[i] += 1
            for v, w in zip(ids, ids[1:]):
                if v >= 0 and w >= 0:
                    pairs[(v, w)] += 1
        if freqs is not None:
            unigrams = unigrams + freqs / max(freqs.sum(), 1.0) * max(unigrams.sum(), 1.0)
        return cls(trie, unigrams, pairs)

    def log_prob(self, previous: np.ndarray, word: np.ndarray) -> np.ndarray:
        """log P(word | previous), broadcast; previous -1 means line start."""
        if self.lam == 0.0:
            return self.log_unigram[np.maximum(word, 0)]
        uni = np.exp(self.log_unigram[np.maximum(word, 0)])
        key = np.maximum(previous, 0).astype(np.int64) * self.count + np.maximum(word, 0)
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        pair = np.where(self.keys[at] == key, self.pair_counts[at], 0.0)
        first = self.firsts[np.maximum(previous, 0)]
        has = (previous >= 0) & (first > 0)
        bigram = np.where(has, pair / np.where(has, first, 1.0), 0.0)
        lam = np.where(has, self.lam, 0.0)
        return np.log(lam * bigram + (1.0 - lam) * uni)


class LexiconScorer:
    """Beam search scorer that keeps beams on the trie (see module docstring).

    State per beam: the trie node of the word being spelled (-1 between words, lines
    mode only) and the last completed word (for the bigram model).
    """

    def __init__(self, trie: Trie, alphabet: Alphabet, mode: str, word_lm: WordBigram | None, weight: float):
        self.trie = trie
        self.mode = mode
        strings = alphabet.class_strings
        self.word_char = np.array(
            [bool(s) and (s.isalpha() if mode == "lines" else True) for s in strings]
        )
        self.word_lm = word_lm
        self.weight = np.float32(weight)
        # Without bigrams a word's score depends on its trie node only: tabulate it.
        self._node_closing = None
        if word_lm is not None and self.weight != 0 and word_lm.lam == 0.0:
            every = np.arange(len(trie.word_of))
            self._node_closing = self._closing_score(every, np.full(len(every), -1))

    def start(self, batch: int, width: int):
        """Words mode starts inside a word at the root; lines mode between words."""
        node = np.full((batch, width), 0 if self.mode == "words" else -1, dtype=np.int32)
        return node, np.full((batch, width), -1, dtype=np.int32)

    def _closing_score(self, node: np.ndarray, previous: np.ndarray) -> np.ndarray:
        if self.word_lm is None or self.weight == 0:
            return np.zeros(node.shape, dtype=np.float32)
        if self._node_closing is not None:
            return self._node_closing[np.maximum(node, 0)]
        word = self.trie.word_of[np.maximum(node, 0)]
        closes = (node >= 0) & (word >= 0)
        score = self.weight * self.word_lm.log_prob(previous, word)
        return np.where(closes, score, 0.0).astype(np.float32)

    def score(self, state, chars):
        """0 for allowed extensions, -inf for the rest, plus the word LM's score
        where an extension completes a word."""
        node, previous = state
        at = np.maximum(node, 0)  # between words (lines mode), a letter starts at the root
        spells = self.trie.has_child(at[:, :, None], chars[:, None, :])
        if self.mode == "words":
            return np.where(spells, np.float32(0.0), np.float32(-np.inf))
        # Any other character is allowed between words and after a complete word,
        # where it closes the word.
        inside = node >= 0
        closable = ~inside | self.trie.complete[at]
        allowed = np.where(self.word_char[chars][:, None, :], spells, closable[:, :, None])
        if self.word_lm is not None and self.weight != 0:
            closing = np.where(inside, self._closing_score(node, previous), np.float32(0.0))
            gain = np.where(self.word_char[chars][:, None, :], np.float32(0.0), closing[:, :, None])
            return np.where(allowed, gain, np.float32(-np.inf))
        return np.where(allowed, np.float32(0.0), np.float32(-np.inf))

    def advance(self, state, chars):
        """Trie node after each appended character (-1 between words) and the last
        completed word."""
        node, previous = state
        at = np.maximum(node, 0)
        is_word_char = self.word_char[chars]
        new_node = np.where(is_word_char, self.trie.child(at, chars), -1).astype(np.int32)
        if self.word_lm is not None and self.weight != 0:
            closes = ~is_word_char & (node >= 0)
            previous = np.where(closes, self.trie.word_of[at], previous).astype(np.int32)
        return new_node, previous

    def finish(self, state):
        """A beam may end only after a complete word (or between words, lines mode)."""
        node, previous = state
        complete = (node >= 0) & self.trie.complete[np.maximum(node, 0)]
        ok = complete if self.mode == "words" else (node < 0) | complete
        return np.where(ok, self._closing_score(node, previous), np.float32(-np.inf)).astype(np.float32)


def lexicon_decode(
    probs: np.ndarray,
    charset: str | Sequence[str],
    blank: int,
    lexicon: Lexicon | str | os.PathLike | Iterable[str] | Mapping[str, float],
    beam_width: int = DEFAULT_BEAM_WIDTH,
    lengths: np.ndarray | Sequence[int] | None = None,
    *,
    mode: str = DEFAULT_LEXICON_MODE,
    nbest: int = 1,
    bigram_text: str | os.PathLike | Iterable[str] | None = None,
    word_weight: float = DEFAULT_WORD_LM_WEIGHT,
    lm: object | None = None,
    lm_weight: float | None = None,
    prune_threshold: float = DEFAULT_PRUNE_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
) -> Decoded | list[Decoded]:
    """Decode with the lexicon as a constraint (see the module docstring for modes).

    Args:
        probs, charset, blank, beam_width, lengths, nbest, prune_threshold, top_k:
            as for `beam_search_decode`.
        lexicon: a `Lexicon`, a word-list file (one word per line, optionally with
            a frequency), a word -> frequency mapping, or an iterable of words.
        mode: "words" (one lexicon word per image) or "lines" (word beam search).
        bigram_text: a text file (or lines) to learn word bigrams from; lines mode.
        word_weight: weight of the word bigram log probability.
        lm, lm_weight: an optional character LM, as for `beam_search_decode`.

    Returns:
        One `Decoded` for (T, C) input, a list for (B, T, C); `log_prob` is the CTC
        log probability of the returned text.
    """
    decoder = LexiconDecoder(
        charset, blank, lexicon, beam_width=beam_width, mode=mode, nbest=nbest,
        bigram_text=bigram_text, word_weight=word_weight, lm=lm, lm_weight=lm_weight,
        prune_threshold=prune_threshold, top_k=top_k,
    )
    alphabet = decoder.alphabet
    checked, lengths, batched = as_batch(probs, alphabet, lengths)
    results = decoder.decode_batch(checked, lengths)
    return results if batched else results[0]


class LexiconDecoder:
    """A lexicon decoder with its trie, word and character models built once."""

    def __init__(
        self,
        charset: str | Sequence[str],
        blank: int,
        lexicon,
        *,
        beam_width: int = DEFAULT_BEAM_WIDTH,
        mode: str = DEFAULT_LEXICON_MODE,
        nbest: int = 1,
        bigram_text=None,
        word_weight: float = DEFAULT_WORD_LM_WEIGHT,
        lm=None,
        lm_weight: float | None = None,
        prune_threshold: float = DEFAULT_PRUNE_THRESHOLD,
        top_k: int = DEFAULT_TOP_K,
    ):
        if mode not in LEXICON_MODES:
            raise ValueError(f"lexicon mode must be one of {', '.join(LEXICON_MODES)}, got {mode!r}")
        check_search_options(beam_width, nbest, prune_threshold, top_k)
        self.alphabet = Alphabet.from_charset(charset, blank)
        self.lexicon = Lexicon.coerce(lexicon)
        self.trie = self.lexicon.trie(self.alphabet, mode)
        self.mode = mode
        self.beam_width, self.nbest = int(beam_width), int(nbest)
        self.prune_threshold, self.top_k = prune_threshold, int(top_k)
        word_lm = None
        if bigram_text is not None:
            if isinstance(bigram_text, (str, os.PathLike)):
                path = Path(bigram_text)
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as err:
                    raise ValueError(f"{path}: cannot read the bigram text ({err})") from None
            else:
                lines = list(bigram_text)
            freqs = np.array([self.lexicon.frequencies.get(w, 1.0) for w in self.trie.words])
            word_lm = WordBigram.from_text(self.trie, lines, freqs)
        elif len(set(self.lexicon.frequencies.values())) > 1:
            # A frequency list: score each completed word by its unigram probability.
            freqs = np.array([self.lexicon.frequencies.get(w, 0.0) for w in self.trie.words])
            word_lm = WordBigram(self.trie, freqs / freqs[freqs > 0].min(), Counter())
        scorers = [LexiconScorer(self.trie, self.alphabet, mode, word_lm, word_weight)]
        if lm is not None:
            from .lm import CharLMScorer, load_lm

            model = load_lm(lm)
            scorers.append(CharLMScorer(model, self.alphabet, weight=model.weight_or(lm_weight)))
        self.scorer = scorers[0] if len(scorers) == 1 else CombinedScorer(scorers)

    def __call__(self, probs: np.ndarray, lengths: np.ndarray | None = None) -> list[Decoded]:
        """Decode a (B, T, C) batch."""
        checked, lengths, _ = as_batch(probs, self.alphabet, lengths)
        return self.decode_batch(checked, lengths)

    def decode_batch(self, probs: np.ndarray, lengths: np.ndarray) -> list[Decoded]:
        """Decode checked input (see `alphabet.as_batch`)."""
        logp = log_probs(probs, lengths, self.alphabet.blank)
        search = prefix_beam_search(
            logp, self.alphabet.blank, self.beam_width, self.top_k, self.prune_threshold, self.scorer
        )
        results = finish_hypotheses(
            probs, lengths, self.alphabet, logp, search.labels, search.score, self.nbest
        )
        for b in np.nonzero(~np.isfinite(search.score[:, 0]))[0]:
            results[b] = self._complete(probs, lengths, logp, search, int(b))
        return results

    def _complete(self, probs, lengths, logp, search, b: int) -> Decoded:
        # No beam ended on a whole word (the output is far from every lexicon word,
        # or the beam is too narrow): finish the likeliest beam with the most
        # frequent word below its trie node, so the result is still a lexicon word.
        best = int(np.argmax(search.ctc[b]))
        row = search.labels[b, best]
        steps = np.nonzero(row >= 0)[0]
        node = max(int(search.state[0][b, best]), 0)
        spelled = self.trie.encoded[self.trie.best_word[node]]
        suffix = spelled[self.trie.depth[node] :]
        last = int(max(lengths[b], 1)) - 1
        after = (steps[-1] + 1) if len(steps) else 0
        extra_steps = np.minimum(after + np.arange(len(suffix)), last)
        classes = np.concatenate([row[steps], suffix]).astype(np.int64)
        steps = np.concatenate([steps, extra_steps]).astype(np.int64)
        index = np.array([b])
        log_prob = forward_log_probs(logp, index, [classes], self.alphabet.blank)
        owner = np.zeros(len(classes), dtype=np.int64)
        return build_results(probs, lengths, self.alphabet, index, owner, classes, steps, log_prob)[0]


class CombinedScorer:
    """Several beam scorers at once: scores add, states concatenate."""

    def __init__(self, scorers: Sequence[BeamScorer]):
        self.scorers = tuple(scorers)
        # How many arrays each scorer's state has (fixed per scorer), found once here so
        # that decoding never writes to the decoder (it may run in several threads).
        self.sizes = tuple(len(s.start(1, 1)) for s in self.scorers)

    def start(self, batch: int, width: int) -> State:
        """Concatenated start states."""
        return tuple(a for s in self.scorers for a in s.start(batch, width))

    def _split(self, state: State) -> list[State]:
        out, at = [], 0
        for size in self.sizes:
            out.append(tuple(state[at : at + size]))
            at += size
        return out

    def score(self, state, chars):
        """Sum of the scorers' scores."""
        total = 0.0
        for scorer, part in zip(self.scorers, self._split(state)):
            total = total + scorer.score(part, chars)
        return total

    def advance(self, state, chars):
        """Concatenated advanced states."""
        return tuple(a for s, p in zip(self.scorers, self._split(state)) for a in s.advance(p, chars))

    def finish(self, state):
        """Sum of the scorers' finishing scores."""
        return sum(s.finish(p) for s, p in zip(self.scorers, self._split(state)))
