"""Character n-gram language model: train from text, save and load JSON, score.

Smoothing is interpolated Witten-Bell, the usual choice for character models: with a
vocabulary of ~80 symbols almost every context has seen several continuations, and
Kneser-Ney's count-of-counts discounts are unreliable on such small vocabularies.

For beam search the model is compiled against a decoder's alphabet into two dense
tables over (context state, class): the log probability of the class after the
context, and the state reached by appending it. A state is the longest context seen
in training that ends the text so far, which is exact for Witten-Bell: an unseen
context passes all its mass to its suffix.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .alphabet import Alphabet
from .constants import (
    DEFAULT_LM_CHAR_BONUS,
    DEFAULT_LM_ORDER,
    DEFAULT_LM_WEIGHT,
    LM_LINE_START,
    LM_UNKNOWN_CHAR_PROBABILITY,
)

_FORMAT = "htr-char-lm"
_VERSION = 1


class CharLM:
    """A character n-gram model with interpolated Witten-Bell smoothing.

    Build one with `CharLM.train(lines)` or `CharLM.load(path)`; `log_prob(text)`
    scores a text; `tables(alphabet)` gives the arrays beam search uses.
    """

    def __init__(self, order: int, counts: dict[str, dict[str, int]]):
        if order < 1:
            raise ValueError(f"LM order must be at least 1, got {order}")
        self.order = int(order)
        #: context (0 to order-1 characters) -> next character -> count
        self.counts = counts
        self._tables: dict[tuple, tuple[np.ndarray, np.ndarray, int]] = {}

    @classmethod
    def train(cls, lines: Iterable[str], order: int = DEFAULT_LM_ORDER) -> "CharLM":
        """Count n-grams of every order up to `order` over lines of text."""
        if order < 1:
            raise ValueError(f"LM order must be at least 1, got {order}")
        counts: dict[str, Counter] = defaultdict(Counter)
        for line in lines:
            line = line.rstrip("\r\n").replace(LM_LINE_START, "")
            if not line.strip():
                continue
            padded = LM_LINE_START + line
            for i in range(1, len(padded)):
                char = padded[i]
                for n in range(order):
                    if i - n < 0:
                        break
                    counts[padded[i - n : i]][char] += 1
        if not counts:
            raise ValueError("no text to train the language model on")
        return cls(order, {h: dict(c) for h, c in counts.items()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharLM":
        """Read a model written by `save` (ValueError naming the file if it is not one)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable language model file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path}: not an htr character language model (no format {_FORMAT!r})")
        if int(data.get("version", 0)) > _VERSION:
            raise ValueError(
                f"{path}: language model format version {data.get('version')} is newer than "
                f"this htr understands ({_VERSION})"
            )
        return cls(int(data["order"]), {h: {c: int(n) for c, n in d.items()} for h, d in data["ngrams"].items()})

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as JSON (n-gram counts; probabilities are derived on load)."""
        data = {"format": _FORMAT, "version": _VERSION, "order": self.order, "ngrams": self.counts}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")

    @property
    def vocabulary(self) -> list[str]:
        """Characters seen in training, sorted."""
        return sorted(self.counts.get("", {}))

    def log_prob(self, text: str) -> float:
        """Natural log probability of one line of text (from the line start)."""
        alphabet = Alphabet.from_charset(sorted(set(text) | set(self.vocabulary)) or ["?"], 0)
        logp, next_state, start = self.tables(alphabet)
        state, total = start, 0.0
        for char in text:
            cls_ = alphabet.class_of(char)
            total += float(logp[state, cls_])
            state = int(next_state[state, cls_])
        return total

    def tables(self, alphabet: Alphabet) -> tuple[np.ndarray, np.ndarray, int]:
        """Dense (states, classes) tables for `alphabet`: log P(class | state) as float32,
        the next state as int32, and the start-of-line state. The blank's column is
        unused. Cached per alphabet."""
        key = (alphabet.chars, alphabet.blank)
        if key not in self._tables:
            self._tables[key] = self._compile(alphabet)
        return self._tables[key]

    def _compile(self, alphabet: Alphabet) -> tuple[np.ndarray, np.ndarray, int]:
        contexts = sorted(self.counts, key=lambda h: (len(h), h))
        index = {h: i for i, h in enumerate(contexts)}
        strings = alphabet.class_strings
        column = {s: c for c, s in enumerate(strings) if s}
        states, classes = len(contexts), alphabet.num_classes
        vocab = self.vocabulary
        known = np.array([s in self.counts[""] for s in strings])
        known[alphabet.blank] = False
        parent = np.array([index.get(h[1:], 0) for h in contexts])
        length = np.array([len(h) for h in contexts])

        seen = np.zeros((states, classes))
        for h, following in self.counts.items():
            row = index[h]
            for char, n in following.items():
                if char in column:
                    seen[row, column[char]] = n
        totals = np.array([sum(self.counts[h].values()) for h in contexts], dtype=np.float64)
        types = np.array([len(self.counts[h]) for h in contexts], dtype=np.float64)

        prob = np.zeros((states, classes))
        uniform = np.where(known, 1.0 / max(len(vocab), 1), 0.0)
        for level in range(length.max() + 1):
            rows = np.nonzero(length == level)[0]
            lower = uniform[None, :] if level == 0 else prob[parent[rows]]
            prob[rows] = (seen[rows] + types[rows, None] * lower) / (totals[rows] + types[rows])[:, None]
        prob[:, ~known] = LM_UNKNOWN_CHAR_PROBABILITY
        with np.errstate(divide="ignore"):
            logp = np.log(prob).astype(np.float32)

        next_state = np.full((states, classes), -1, dtype=np.int32)
        for h in contexts:
            if h and h[-1] in column and h[:-1] in index:
                next_state[index[h[:-1]], column[h[-1]]] = index[h]
        next_state[0][next_state[0] < 0] = 0
        for level in range(1, length.max() + 1):
            rows = np.nonzero(length == level)[0]
            inherited = next_state[parent[rows]]
            own = next_state[rows]
            # A full-length context drops its first character when it grows.
            use_own = (own >= 0) & (level < self.order - 1)
            next_state[rows] = np.where(use_own, own, inherited)
        start = index.get(LM_LINE_START, 0)
        return logp, next_state, start


class CharLMScorer:
    """Beam search scorer adding `weight` x LM log probability per character (plus
    an optional per-character bonus that offsets the LM's length penalty)."""

    def __init__(
        self,
        lm: CharLM,
        alphabet: Alphabet,
        weight: float = DEFAULT_LM_WEIGHT,
        char_bonus: float = DEFAULT_LM_CHAR_BONUS,
    ):
        logp, self.next_state, self.start_state = lm.tables(alphabet)
        self.weighted = (np.float32(weight) * logp + np.float32(char_bonus)).astype(np.float32)

    def start(self, batch: int, width: int) -> tuple[np.ndarray, ...]:
        """Every beam starts at the start-of-line context."""
        return (np.full((batch, width), self.start_state, dtype=np.int32),)

    def score(self, state, chars):
        """Weighted LM score of each extension."""
        return self.weighted[state[0][:, :, None], chars[:, None, :]]

    def advance(self, state, chars):
        """The context state each extension reaches."""
        return (self.next_state[state[0], chars],)

    def finish(self, state):
        """No end-of-line term."""
        return np.zeros(state[0].shape, dtype=np.float32)
