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


class Heuristics:
    """All heuristic filters of a preset: `reasons(texts)` -> one reason (or None = keep) per text."""

    def __init__(self, preset: Preset):
        self.gq: GopherQuality = preset.gopher_quality
        self.gr: GopherRepetition = preset.gopher_repetition
        self.c4: C4 = preset.c4
        self.fw: FineWeb = preset.fineweb
        self.stop_hashes = np.unique(WordTable([" ".join(self.gq.stop_words)]).hashes)

    @property
    def enabled(self) -> bool:
        return self.gq.enabled or self.gr.enabled or self.c4.enabled or self.fw.enabled

    def reasons(self, texts: Sequence[str], words: WordTable) -> list[str | None]:
        """`words` is the WordTable of exactly these texts."""
        if not self.enabled:
            return [None] * len(texts)
        stats = BatchStats(words, self.stop_hashes)
        rep = {}
        if self.gr.enabled:
            rep = ngram_repetition(words, tuple(n for n, _ in self.gr.top_n_grams), tuple(n for n, _ in self.gr.dup_n_grams))
        out: list[str | None] = []
        for i, text in enumerate(texts):
            reason = None
            if self.gr.enabled:
                reason = self._repetition(text, rep, i)
            if reason is None and self.gq.enabled:
                reason = self._quality(text, i, stats)
            if reason is None and self.c4.enabled:
                reason = self._c4(text)
            if reason is None and self.fw.enabled:
                reason = self._fineweb(text, int(stats.tokens[i]))
            out.append(reason)
        return out

    # -- Gopher repetition ---------------------------------------------------------------------------
    def _repetition(self, text: str, ngram_chars: dict[int, np.ndarray], i: int) -> str | None:
        c = self.gr
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

    # -- Gopher quality ------------------------------------------------------------------------------
    def _quality(self, text: str, i: int, s: BatchStats) -> str | None:
        c = self.gq
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

    # -- C4 ------------------------------------------------------------------------------------------
    def _c4(self, text: str) -> str | None:
        c = self.c4
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

    # -- FineWeb -------------------------------------------------------------------------------------
    def _fineweb(self, text: str, tokens: int) -> str | None:
        c = self.fw
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
