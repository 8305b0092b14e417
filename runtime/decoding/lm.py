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

import gzip
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
_GZIP_MAGIC = b"\x1f\x8b"


class CharLM:
    """A character n-gram model with interpolated Witten-Bell smoothing.

    Build one with `CharLM.train(lines)` or `CharLM.load(path)`; `log_prob(text)`
    scores a text; `tables(alphabet)` gives the arrays beam search uses.
    """

    def __init__(self, order: int, counts: dict[str, dict[str, int]], weight: float | None = None,
                 source: str | None = None):
        if order < 1:
            raise ValueError(f"LM order must be at least 1, got {order}")
        if weight is not None and not weight >= 0:
            raise ValueError(f"LM weight must be a number >= 0, got {weight}")
        self.order = int(order)
        #: context (0 to order-1 characters) -> next character -> count
        self.counts = counts
        #: the weight decoders use when none is given (chosen on held-out data), or None
        self.weight = None if weight is None else float(weight)
        #: how the model was made (free text, e.g. the commands), or None
        self.source = source
        self._tables: dict[tuple[tuple[str, ...], int], tuple[np.ndarray, np.ndarray, int]] = {}

    @classmethod
    def train(cls, lines: Iterable[str], order: int = DEFAULT_LM_ORDER, min_count: int = 1) -> CharLM:
        """Count n-grams of every order up to `order` over lines of text.

        min_count: drop contexts (one character or longer) seen fewer times than this.
        A context is seen at least as often as any longer one that ends with it, so the
        kept contexts stay closed under suffixes, as the back-off needs; the model and
        its decoding tables shrink, and rare contexts back off to shorter ones.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        if order < 1:
            raise ValueError(f"LM order must be at least 1, got {order}")
        counts: dict[str, Counter[str]] = defaultdict(Counter)
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
        return cls(order, {h: dict(c) for h, c in counts.items() if not h or sum(c.values()) >= min_count})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharLM:
        """Read a model written by `save`, gzipped or not (ValueError naming the file if
        it is not one)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            if raw[:2] == _GZIP_MAGIC:
                raw = gzip.decompress(raw)
            data = json.loads(raw.decode("utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable language model file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path}: not an htr character language model (no format {_FORMAT!r})")
        if int(data.get("version", 0)) > _VERSION:
            raise ValueError(
                f"{path}: language model format version {data.get('version')} is newer than "
                f"this htr understands ({_VERSION})"
            )
        weight = data.get("weight")
        try:
            return cls(int(data["order"]), {h: {c: int(n) for c, n in d.items()} for h, d in data["ngrams"].items()},
                       weight=None if weight is None else float(weight), source=data.get("source"))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: broken language model file ({type(err).__name__}: {err})") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as JSON (n-gram counts; probabilities are derived on load);
        gzipped when the name ends in .gz."""
        data: dict[str, object] = {"format": _FORMAT, "version": _VERSION, "order": self.order}
        if self.weight is not None:
            data["weight"] = self.weight
        if self.source:
            data["source"] = self.source
        data["ngrams"] = self.counts
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if str(path).endswith(".gz"):
            raw = gzip.compress(raw, compresslevel=9, mtime=0)  # mtime 0: the same text gives the same bytes
        Path(path).write_bytes(raw)

    def weight_or(self, weight: float | None) -> float:
        """The weight to use: `weight` if given, else the file's own, else the default."""
        if weight is not None:
            return float(weight)
        return self.weight if self.weight is not None else DEFAULT_LM_WEIGHT

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
        contexts = sorted(self.counts, key=len)
        index = {h: i for i, h in enumerate(contexts)}
        strings = alphabet.class_strings
        column = {s: c for c, s in enumerate(strings) if s}
        states, classes = len(contexts), alphabet.num_classes
        vocab = self.vocabulary
        known = np.array([s in self.counts[""] for s in strings])
        known[alphabet.blank] = False
        parent = np.array([index.get(h[1:], 0) for h in contexts])
        length = np.array([len(h) for h in contexts])

        # Every (context, next character, count) as flat arrays, then one scatter.
        tables = [self.counts[h] for h in contexts]
        types = np.array([len(t) for t in tables], dtype=np.float64)
        rows_ = np.repeat(np.arange(states), types.astype(np.int64))
        cols_ = np.array([column.get(c, -1) for t in tables for c in t], dtype=np.int64)
        counts_ = np.array([n for t in tables for n in t.values()], dtype=np.float64)
        totals = np.bincount(rows_, weights=counts_, minlength=states)
        seen = np.zeros((states, classes))
        keep = cols_ >= 0
        seen[rows_[keep], cols_[keep]] = counts_[keep]

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
        grows = [(index[h[:-1]], column[h[-1]], i) for i, h in enumerate(contexts)
                 if h and h[-1] in column and h[:-1] in index]
        if grows:
            src, col, dst = np.array(grows, dtype=np.int64).T
            next_state[src, col] = dst
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


def load_lm(lm: CharLM | str | os.PathLike[str]) -> CharLM:
    """A `CharLM` itself, or one read from a file or named by a bundled LM's name
    ("words", "lines"; see `htr.runtime.models.resolve_lm`)."""
    if isinstance(lm, CharLM):
        return lm
    from ..models import resolve_lm

    return CharLM.load(resolve_lm(lm))


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

    def score(self, state: tuple[np.ndarray, ...], chars: np.ndarray) -> np.ndarray:
        """Weighted LM score of each extension."""
        scores: np.ndarray = self.weighted[state[0][:, :, None], chars[:, None, :]]
        return scores

    def advance(self, state: tuple[np.ndarray, ...], chars: np.ndarray) -> tuple[np.ndarray, ...]:
        """The context state each extension reaches."""
        return (self.next_state[state[0], chars],)

    def finish(self, state: tuple[np.ndarray, ...]) -> np.ndarray:
        """No end-of-line term."""
        return np.zeros(state[0].shape, dtype=np.float32)
