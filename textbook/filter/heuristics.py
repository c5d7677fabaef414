"""Heuristic document filters: Gopher repetition and quality, C4 document rules, FineWeb line rules.

Thresholds and reason names follow datatrove (the code FineWeb ran), applied in FineWeb's order;
the first rule a document breaks is its reason (`gopher_short_doc`, `c4_lorem_ipsum`, ...).
Documents are kept or dropped whole, never edited.

Counting words: datatrove tokenises with nltk/spaCy. Here word counts, lengths, stop words and
n-grams use a document's `\\w+` words (the normalised words MinHash uses, computed once per batch
with numpy); the ratios (letters, `#`, ellipses, newlines per word) use whitespace-separated
tokens, as the Gopher paper words them. Stop words are matched case-insensitively.
"""

from __future__ import annotations

import re
import time
from typing import Sequence

import numpy as np

from textbook.filter.config import C4, FineWeb, GopherQuality, GopherRepetition, Preset
from textbook.filter.repetition import ngram_repetition
from textbook.minhash import WordTable

END_PUNCT = (".", "'", '"', "!", "?", "։", "؟", "۔", "܀", "܁", "܂", "‼", "‽", "⁇", "⁈", "⁉", "⸮", "﹖", "﹗",
             "！", "．", "？", "｡", "。", "＂", "＇", "”", "’")
C4_END = (".", "?", "!", '"', "'", "”", "’")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")


class _CharClasses:
    """isalpha / isspace for the Basic Multilingual Plane, built once per process."""

    alpha: np.ndarray | None = None
    space: np.ndarray | None = None

    @classmethod
    def get(cls) -> tuple[np.ndarray, np.ndarray]:
        if cls.alpha is None:
            chars = [chr(i) for i in range(0x10000)]
            cls.alpha = np.fromiter((c.isalpha() for c in chars), dtype=bool, count=0x10000)
            cls.space = np.fromiter((c.isspace() for c in chars), dtype=bool, count=0x10000)
        return cls.alpha, cls.space


def _duplicates(items: list[str]) -> tuple[int, int]:
    """datatrove's find_duplicates: (number of repeated elements, their characters)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class BatchStats:
    """Per-document counts for a batch, from one WordTable (numpy over the whole batch)."""

    def __init__(self, words: WordTable, stop_hashes: np.ndarray):
        alpha, space = _CharClasses.get()
        cp = np.minimum(words.cp, 0xFFFF)
        n_docs = len(words.counts)
        doc_of_word = words.doc_of_word()
        self.words = words.counts
        self.word_chars = np.bincount(doc_of_word, weights=words.lengths, minlength=n_docs)
        self.stop_words = np.bincount(doc_of_word, weights=np.isin(words.hashes, stop_hashes), minlength=n_docs)
        # Tokens for the ratios are whitespace-separated, as in the Gopher paper ("80% of words
        # contain an alphabetic character"). datatrove counts every punctuation mark as a word,
        # which drops about half of all programming tutorials on the alpha rule alone.
        nonspace = ~space[cp]
        edge = np.diff(nonspace.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        t_start, t_end = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
        # a token "has a letter" if its character span holds an alphabetic code point
        alpha_prefix = np.concatenate(([0], np.cumsum(alpha[cp], dtype=np.int32)))
        has_alpha = alpha_prefix[t_end] > alpha_prefix[t_start]
        # per-document sums of token-start marks; one padding slot so an empty last document has a range
        marks = np.zeros(len(cp) + 1, dtype=np.int8)  # 1 = a token starts here, 2 = one with a letter
        marks[t_start] = 1 + has_alpha
        bounds = np.minimum(words.doc_chars, len(cp))
        empty = np.diff(np.concatenate((bounds, [len(cp) + 1]))) == 0
        self.tokens = np.maximum(np.where(empty, 0, np.add.reduceat(marks > 0, bounds, dtype=np.int64)), 1)
        self.alpha_tokens = np.where(empty, 0, np.add.reduceat(marks == 2, bounds, dtype=np.int64))


class Docs:
    """The documents a batch's heuristic steps look at: their texts, the WordTable of exactly these texts,
    and per-document numbers several steps share, computed once on first use."""

    def __init__(self, texts: Sequence[str], words: WordTable, stop_hashes: np.ndarray):
        self.texts, self.words, self._stop_hashes = texts, words, stop_hashes
        self._stats: BatchStats | None = None
        self._ngrams: dict[tuple, dict[int, np.ndarray]] = {}

    @property
    def stats(self) -> BatchStats:
        if self._stats is None:
            self._stats = BatchStats(self.words, self._stop_hashes)
        return self._stats

    def ngram_chars(self, top_ns: tuple[int, ...], dup_ns: tuple[int, ...]) -> dict[int, np.ndarray]:
        if (top_ns, dup_ns) not in self._ngrams:
            self._ngrams[(top_ns, dup_ns)] = ngram_repetition(self.words, top_ns, dup_ns)
        return self._ngrams[(top_ns, dup_ns)]


class Heuristics:
    """The heuristic steps of a preset, in order: `reasons(texts, words)` -> one reason (or None = keep)
    per text, the first step a document fails naming it. A step is any object with a `name` and
    `__call__(docs, rows) -> reasons` for the documents `rows` still in (filter/steps.py builds the list)."""

    def __init__(self, preset: Preset):
        from textbook.filter.steps import build_steps

        self.steps = build_steps(preset)
        stop_words = preset.gopher_quality.stop_words
        self.stop_hashes = np.unique(WordTable([" ".join(stop_words)]).hashes)

    @property
    def enabled(self) -> bool:
        return bool(self.steps)

    def reasons(self, texts: Sequence[str], words: WordTable, timers: dict[str, float] | None = None) -> list[str | None]:
        """`words` is the WordTable of exactly these texts; `timers` gets each step's seconds."""
        out: list[str | None] = [None] * len(texts)
        docs = Docs(texts, words, self.stop_hashes)
        rows = list(range(len(texts)))
        for step in self.steps:
            if not rows:
                break
            t = time.perf_counter()
            for i, reason in zip(rows, step(docs, rows)):
                out[i] = reason
            if timers is not None:  # seconds and documents per step, for the report
                timers[f"step.{step.name}"] = timers.get(f"step.{step.name}", 0.0) + time.perf_counter() - t
                timers[f"docs.{step.name}"] = timers.get(f"docs.{step.name}", 0.0) + len(rows)
            rows = [i for i in rows if out[i] is None]
        return out


class GopherRepetitionStep:
    name = "gopher_repetition"

    def __init__(self, config: GopherRepetition):
        self.config = config

    def __call__(self, docs: Docs, rows: list[int]) -> list[str | None]:
        c = self.config
        ngrams = docs.ngram_chars(tuple(n for n, _ in c.top_n_grams), tuple(n for n, _ in c.dup_n_grams))
        return [self._reason(docs.texts[i], ngrams, i) for i in rows]

    def _reason(self, text: str, ngram_chars: dict[int, np.ndarray], i: int) -> str | None:
        c = self.config
        n_chars = max(len(text), 1)
        # str.split instead of datatrove's regexes (\n{2,} and \n+): same pieces, ~5x faster
        paragraphs = [p for p in (q.strip("\n") for q in text.strip().split("\n\n")) if p] or [""]
        dup, chars = _duplicates(paragraphs)
        if dup / len(paragraphs) > c.dup_para_frac:
            return "gopher_dup_para_frac"
        if chars / n_chars > c.dup_para_char_frac:
            return "gopher_dup_para_char_frac"
        lines = [line for line in text.split("\n") if line] or [""]
        dup, chars = _duplicates(lines)
        if dup / len(lines) > c.dup_line_frac:
            return "gopher_dup_line_frac"
        if chars / n_chars > c.dup_line_char_frac:
            return "gopher_dup_line_char_frac"
        for n, frac in c.top_n_grams:
            if ngram_chars[n][i] / n_chars > frac:
                return f"gopher_top_{n}_gram"
        for n, frac in c.dup_n_grams:
            if ngram_chars[n][i] / n_chars > frac:
                return f"gopher_duplicated_{n}_n_grams"
        return None


class GopherQualityStep:
    name = "gopher_quality"

    def __init__(self, config: GopherQuality):
        self.config = config

    def __call__(self, docs: Docs, rows: list[int]) -> list[str | None]:
        return [self._reason(docs.texts[i], i, docs.stats) for i in rows]

    def _reason(self, text: str, i: int, s: BatchStats) -> str | None:
        c = self.config
        n_words = int(s.words[i])
        if n_words < c.min_doc_words:
            return "gopher_short_doc"
        if n_words > c.max_doc_words:
            return "gopher_long_doc"
        avg = s.word_chars[i] / n_words
        if avg < c.min_avg_word_length:
            return "gopher_below_avg_threshold"
        if avg > c.max_avg_word_length:
            return "gopher_above_avg_threshold"
        tokens = int(s.tokens[i])
        if text.count("#") / tokens > c.max_symbol_word_ratio:
            return "gopher_too_many_hashes"
        if (text.count("...") + text.count("…")) / tokens > c.max_symbol_word_ratio:
            return "gopher_too_many_ellipsis"
        lines = text.splitlines() or [""]
        stripped = [line.strip() for line in lines]
        if sum(line.startswith(("•", "-")) for line in stripped) / len(lines) > c.max_bullet_lines_ratio:
            return "gopher_too_many_bullets"
        if sum(line.endswith(("...", "…")) for line in stripped) / len(lines) > c.max_ellipsis_lines_ratio:
            return "gopher_too_many_end_ellipsis"
        if s.alpha_tokens[i] / tokens < c.min_alpha_words_ratio:
            return "gopher_below_alpha_threshold"
        if s.stop_words[i] < c.min_stop_words:
            return "gopher_few_stop_words"
        return None


class C4Step:
    name = "c4"

    def __init__(self, config: C4):
        self.config = config

    def __call__(self, docs: Docs, rows: list[int]) -> list[str | None]:
        return [self._reason(docs.texts[i]) for i in rows]

    def _reason(self, text: str) -> str | None:
        c = self.config
        if c.lorem_ipsum and ("psum" in text or "PSUM" in text) and "lorem ipsum" in text.lower():
            return "c4_lorem_ipsum"
        if c.curly_bracket and "{" in text:
            return "c4_curly_bracket"
        # count sentences on the lines C4 would keep; stop as soon as there are enough
        sentences = 0
        for line in text.split("\n"):
            line = line.strip()
            if line.count(" ") + 1 < c.min_words_per_line or len(line.split()) < c.min_words_per_line:
                continue
            if len(line) > c.max_word_length and max(map(len, line.split())) > c.max_word_length:
                continue
            if c.terminal_punct and not line.endswith(C4_END):
                continue
            if c.javascript or c.policy:
                low = line.lower()
                if c.javascript and "javascript" in low:
                    continue
                if c.policy and any(p in low for p in POLICY):
                    continue
            ends = len(_SENTENCE_END.findall(line))
            sentences += ends + (0 if line.endswith(C4_END + ("…",)) else 1)
            if sentences >= c.min_sentences:
                return None
        return "c4_too_few_sentences"


class FineWebStep:
    name = "fineweb"

    def __init__(self, config: FineWeb):
        self.config = config

    def __call__(self, docs: Docs, rows: list[int]) -> list[str | None]:
        tokens = docs.stats.tokens
        return [self._reason(docs.texts[i], int(tokens[i])) for i in rows]

    def _reason(self, text: str, tokens: int) -> str | None:
        c = self.config
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return "fineweb_empty"
        if sum(line.rstrip().endswith(END_PUNCT) for line in lines) / len(lines) < c.line_punct_thr:
            return "fineweb_line_punct_ratio"
        if sum(len(line) <= c.short_line_length for line in lines) / len(lines) > c.short_line_thr:
            return "fineweb_short_line_ratio"
        if _duplicates(lines)[1] / max(len(text) - text.count("\n"), 1) > c.char_dup_ratio:
            return "fineweb_char_dup_ratio"
        if text.count("\n") / max(tokens, 1) > c.new_line_ratio:
            return "fineweb_list_ratio"
        return None
