"""Every default of the decoders in one place."""

from __future__ import annotations

#: Beams kept per sequence by `beam_search_decode` and the lexicon decoders.
DEFAULT_BEAM_WIDTH = 10

#: Characters tried per frame and beam: only the `top_k` most probable non-blank
#: classes of a frame can extend a prefix (the rest are pruned before scoring).
DEFAULT_TOP_K = 12

#: A character whose probability in a frame is below this cannot extend a prefix in
#: that frame (the most probable character is always allowed).
DEFAULT_PRUNE_THRESHOLD = 1e-5

#: Probabilities are clipped to this before taking logs, so log(0) never appears.
MIN_PROBABILITY = 1e-30

#: Number of hypotheses returned in `Decoded.nbest` when n-best is asked for.
DEFAULT_NBEST = 1

#: Character language model: n-gram order (context is order - 1 characters) and the
#: weight of its log probability in the beam score.
DEFAULT_LM_ORDER = 5
DEFAULT_LM_WEIGHT = 0.5
#: Added to the beam score per character when a language model is used, so that the
#: LM's penalty on every extra character does not make the search favour short texts.
DEFAULT_LM_CHAR_BONUS = 0.0
#: Characters an LM was not trained on get this share of the probability mass.
LM_UNKNOWN_CHAR_PROBABILITY = 1e-6
#: Marks the start of a line in a character LM's context (never in a charset).
LM_LINE_START = "\x02"

#: Lexicon decoding: weight of the word model's log probability, scored as each word
#: is completed (unigram from a frequency list, or bigram learned from a text file),
#: and the interpolation between bigram and unigram (Jelinek-Mercer). 0.5 halved the
#: word error rate of greedy decoding on the benchmark's synthetic lines.
DEFAULT_WORD_LM_WEIGHT = 0.5
WORD_BIGRAM_LAMBDA = 0.7

#: Decoding modes of the lexicon decoder: "words" (the image is one lexicon word)
#: and "lines" (lexicon words separated by free punctuation, digits and spaces).
LEXICON_MODES = ("words", "lines")
DEFAULT_LEXICON_MODE = "words"

#: Spelling correction: largest edit distance tried, and the length below which only
#: distance 1 is tried (short words have too many neighbours at distance 2).
SPELL_MAX_DISTANCE = 2
SPELL_MIN_LENGTH_FOR_DISTANCE_2 = 5

#: Default English lexicon (from the `wordfreq` package when it is installed).
DEFAULT_WORDLIST_LANGUAGE = "en"
DEFAULT_WORDLIST_SIZE = 50_000
#: Sub-folder of the user cache directory where built word lists are kept.
CACHE_SUBDIR = "htr"

#: The widest beam a decoder accepts (htr-serve caps requests at 100): wider ones would try to
#: allocate tens of GiB.
MAX_BEAM_WIDTH = 1_000
