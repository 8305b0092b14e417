"""The prefix trie's vectorised child lookups against a binary search over its sorted
edges, and the popcount it uses on NumPy < 2.

(The beam searches are checked against brute force instead: tests/test_decoding_beam.py
for CTC prefix beam search, tests/test_decoding_lexicon.py for lexicon decoding.)
"""

from __future__ import annotations

import numpy as np
import pytest

from htr.runtime.decoding.trie import Trie, _popcount, _popcount_bytes


def reference_child(trie: Trie, node, chars):
    """Child by binary search over the trie's sorted edge keys, -1 where none."""
    key = node.astype(np.int64) * trie.classes + chars
    at = np.minimum(np.searchsorted(trie.keys, key), len(trie.keys) - 1)
    return np.where((trie.keys[at] == key) & (node >= 0), trie.values[at], -1)


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
