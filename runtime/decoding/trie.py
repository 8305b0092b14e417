"""`Trie`: a lexicon's prefix trie over a model's classes, stored as NumPy arrays, with a
vectorised child lookup (what word beam search spends its time in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .lexicon import _WORD_RE

if TYPE_CHECKING:
    from .alphabet import Alphabet
    from .lexicon import Lexicon

#: Tries over more distinct classes than 64 x this find children by binary search.
_MAX_MASK_WORDS = 4
#: Set bits per byte value, for NumPy < 2 (which has no bitwise_count).
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_bytes(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, a byte at a time."""
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8).reshape(np.shape(values) + (8,))
    return np.asarray(_BYTE_BITS[as_bytes].sum(axis=-1, dtype=np.int64))


#: Set bits of each uint64 (NumPy >= 2 has it built in).
_popcount = getattr(np, "bitwise_count", _popcount_bytes)


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
        freqs: dict[str, float] = {}
        for word, freq in lexicon.frequencies.items():
            pieces = _WORD_RE.findall(word) if split_words else [word]
            for piece in pieces:
                if piece and set(piece) <= allowed:
                    freqs[piece] = freqs.get(piece, 0.0) + freq
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
            return np.asarray((self._masks[node] & self._class_bit[chars]) != 0)
        bits = np.where(self._class_word[chars] == 0, self._class_bit[chars], np.uint64(0))
        found = (self._masks[node, 0] & bits) != 0
        for w in range(1, self._mask_words):
            bits = np.where(self._class_word[chars] == w, self._class_bit[chars], np.uint64(0))
            found |= (self._masks[node, w] & bits) != 0
        return np.asarray(found)

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
