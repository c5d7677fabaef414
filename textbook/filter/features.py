"""Classifier features: hashed word and character n-grams plus a few style statistics, for a whole
batch at once with numpy; optionally sentence-transformers embeddings from a local model directory.

Hashed n-grams (the default) need no vocabulary: each n-gram lands in one of `2**bits` buckets.
A document's value for a bucket is the n-gram's count divided by the square root of the document's
number of n-grams of that family (word 1-grams, word 2-grams, char 3/4/5-grams): the L2 norm when
the n-grams are distinct. So a linear model's score is a sum of weights over occurrences, with no
sort or dedup per document; duplicates in the CSR matrix add.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from textbook.errors import TextbookError
from textbook.filter.config import FEATURE_KINDS
from textbook.minhash import MIX, U64, WordTable, is_word_char

if TYPE_CHECKING:
    from textbook.filter.vectors import WordVectors

# Bumped whenever the hashing or the features change: a model trained on other features is refused.
FEATURES_VERSION = 4
STYLE = ("log_words", "mean_word_len", "stop_ratio", "alpha_ratio", "digit_ratio", "upper_ratio", "symbol_ratio",
         "code_ratio", "newline_ratio", "line_punct_ratio", "short_line_ratio", "mean_sentence_words")
_STOP = ("the", "be", "to", "of", "and", "that", "have", "with", "a", "in", "is", "it", "for", "as", "this", "on")


KINDS = FEATURE_KINDS


@dataclass(frozen=True)
class FeatureConfig:
    """What the model sees; stored beside its weights so a model rebuilds its own features."""

    kind: str = "hashed"  # hashed | static | hashed+static | embeddings
    bits: int = 18  # 2**18 float32 weights = 1 MB, cache-resident; 2**20 scored the same in cross-validation
    word_ngrams: tuple[int, ...] = (1, 2)
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    max_chars: int = 2000  # character n-grams from the first max_chars characters (speed; FineWeb-Edu read 1,000)
    style: bool = False  # the statistics below: they helped on web-vs-textbook labels, hurt on human ones
    norm: str = "l1"  # n-gram values: count / n ("l1"; better on human labels in CV) or count / sqrt(n) ("sqrt", ~L2)
    style_scale: float = 1.0  # multiplies the standardised style features (balances them against n-grams)
    embeddings_model: str | None = None  # a local sentence-transformers directory (embeddings; static: distilled from)
    vector_dims: int = 128  # static kinds: PCA dimensions of the distilled word vectors


class _Classes:
    """lower-case code point for word characters, else the character itself, whitespace -> space."""

    table: np.ndarray | None = None
    upper: np.ndarray | None = None
    digit: np.ndarray | None = None

    @classmethod
    def get(cls):
        if cls.table is None:
            chars = [chr(i) for i in range(0x10000)]
            cls.table = np.array([32 if c.isspace() else ord(c.lower()[0]) for c in chars], dtype=np.uint32)
            cls.upper = np.fromiter((c.isupper() for c in chars), dtype=bool, count=0x10000)
            cls.digit = np.fromiter((c.isdigit() for c in chars), dtype=bool, count=0x10000)
        return cls.table, cls.upper, cls.digit


def _bucket(h: np.ndarray, family: int, bits: int) -> np.ndarray:
    """Multiply-shift hashing (Dietzfelbinger) of 32-bit n-gram hashes, salted per family: uint32."""
    salt = np.uint32((0x9E3779B9 * (family + 1)) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        return ((h ^ salt) * np.uint32(0x85EBCA6B)) >> np.uint32(32 - bits)


class HashedFeatures:
    """Hashed n-gram occurrences per family, as a CSR matrix (training) or summed against weights
    (scoring: a gather and a bincount per family, no matrix, no sort). An occurrence that is not an
    n-gram (the last n-1 characters of a document) gets bucket 2**bits, whose weight is zero."""

    def __init__(self, config: FeatureConfig, vectors: "WordVectors | None" = None):
        self.config = config
        self.width = 1 << config.bits
        self.vectors = vectors  # static kinds: distilled word vectors, pooled into dense features
        self.ngrams = config.kind != "static"

    def families(self, texts: Sequence[str], words: WordTable):
        """(bucket, doc, value per doc) for each n-gram family; value = 1/sqrt(n) or 1/n."""
        n_docs = len(texts)
        family = 0
        if not self.ngrams:
            return
        for n in self.config.word_ngrams:
            h, doc = (words.hashes, words.doc_of_word()) if n == 1 else words.ngram_hashes(n)
            per_doc = np.bincount(doc, minlength=n_docs)
            yield _bucket((h >> U64(32)).astype(np.uint32), family, self.config.bits), doc, self._value(per_doc)
            family += 1
        if self.config.char_ngrams:
            chars, doc_of, doc_start, doc_end = self._chars(words)
            lengths = doc_end - doc_start
            room = doc_end[doc_of] - np.arange(len(chars))  # characters from here to the document's end
            h = np.zeros(len(chars), dtype=np.uint32)
            mix = MIX.astype(np.uint32) | np.uint32(1)
            # the hash of an n-gram extends the (n-1)-gram's: one multiply-add per character per size
            with np.errstate(over="ignore"):
                for k in range(max(self.config.char_ngrams)):
                    h[: len(chars) - k] += chars[k:] * mix[k]
                    n = k + 1
                    if n in self.config.char_ngrams:
                        bucket = _bucket(h, family, self.config.bits)
                        bucket[room < n] = self.width
                        yield bucket, doc_of, self._value(np.maximum(lengths - (n - 1), 0))
                        family += 1

    def _value(self, per_doc: np.ndarray) -> np.ndarray:
        per_doc = np.maximum(per_doc, 1)
        # 1/sqrt(n): exactly L2-normalised when a document's n-grams are distinct
        return 1.0 / (np.sqrt(per_doc) if self.config.norm == "sqrt" else per_doc)

    def transform(self, texts: Sequence[str], words: WordTable | None = None):
        """scipy CSR (n_docs x 2**bits; duplicate entries add up; None for `static`) and the dense features
        (style statistics, pooled word vectors)."""
        from scipy.sparse import csr_matrix

        words = words if words is not None else WordTable(texts)
        if not self.ngrams:
            return None, self.dense(texts, words)
        n_docs = len(texts)
        rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float64)]
        for bucket, doc, value in self.families(texts, words):
            real = bucket < self.width
            rows.append(doc[real])
            cols.append(bucket[real].astype(np.int64))
            vals.append(value[doc[real]])
        row = np.concatenate(rows)
        order = np.argsort(row, kind="stable")
        indptr = np.concatenate(([0], np.cumsum(np.bincount(row, minlength=n_docs))))
        sparse = csr_matrix((np.concatenate(vals)[order], np.concatenate(cols)[order], indptr), shape=(n_docs, self.width))
        return sparse, self.dense(texts, words)

    def dense(self, texts: Sequence[str], words: WordTable) -> np.ndarray:
        parts = [style_features(texts, words)] if self.config.style else []
        if self.vectors is not None:
            parts.append(self.vectors.features(words, self.config.max_chars))
        return np.hstack(parts).astype(np.float32) if parts else np.zeros((len(texts), 0), np.float32)

    def dot(self, weights: np.ndarray, texts: Sequence[str], words: WordTable) -> np.ndarray:
        """The sparse features times `weights` (2**bits + 1 values, the last 0), per document,
        without building the matrix."""
        z = np.zeros(len(texts), dtype=np.float64)
        for bucket, doc, value in self.families(texts, words):
            z += np.bincount(doc, weights=weights[bucket], minlength=len(texts)) * value
        return z

    def _chars(self, words: WordTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lowercased code points (uint32) of the batch, each document's first max_chars of them:
        (chars, document of each char, start and end of each document in chars)."""
        table, _, _ = _Classes.get()
        cp = words.cp
        starts = words.doc_chars
        ends = np.concatenate((starts[1:] - 1, [len(cp)]))  # the "\n" separators are not part of a document
        lengths = np.minimum(ends, starts + self.config.max_chars) - starts
        if (lengths == ends - starts).all():  # nothing to cut: use the batch as it is
            span = np.diff(np.concatenate((starts, [len(cp)])))
            return table[np.minimum(cp, 0xFFFF)], np.repeat(np.arange(len(starts)), span), starts, ends
        new_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        idx = np.repeat(starts - new_starts, lengths) + np.arange(lengths.sum())
        return (table[np.minimum(cp[idx], 0xFFFF)], np.repeat(np.arange(len(starts)), lengths), new_starts,
                new_starts + lengths)


def style_features(texts: Sequence[str], words: WordTable) -> np.ndarray:
    """A few document statistics (the kind of signal the heuristics use), one row per text."""
    _, upper, digit = _Classes.get()
    n_docs = len(texts)
    cp = np.minimum(words.cp, 0xFFFF)
    doc_chars = words.doc_chars
    char_doc = np.repeat(np.arange(n_docs), np.diff(np.concatenate((doc_chars, [len(cp) + 1]))))[: len(cp)]
    n_chars = np.maximum(np.bincount(char_doc, minlength=n_docs), 1).astype(np.float64)
    word = is_word_char(words.cp)
    space = cp == 32
    counts = lambda mask: np.bincount(char_doc, weights=mask, minlength=n_docs)  # noqa: E731
    n_words = np.maximum(words.counts, 1).astype(np.float64)
    doc_of_word = words.doc_of_word()
    stop = WordTable([" ".join(_STOP)]).hashes
    out = np.zeros((n_docs, len(STYLE)), dtype=np.float64)
    out[:, 0] = np.log1p(words.counts)
    out[:, 1] = np.bincount(doc_of_word, weights=words.lengths, minlength=n_docs) / n_words
    out[:, 2] = np.bincount(doc_of_word, weights=np.isin(words.hashes, stop), minlength=n_docs) / n_words
    out[:, 3] = counts(word) / n_chars
    out[:, 4] = counts(digit[cp]) / n_chars
    out[:, 5] = counts(upper[cp]) / n_chars
    out[:, 6] = counts(~word & ~space & (cp != 10)) / n_chars
    out[:, 7] = counts(np.isin(cp, np.array([ord(c) for c in "{}();=<>[]"], dtype=cp.dtype))) / n_chars
    for i, text in enumerate(texts):
        lines = [line for line in text.split("\n") if line.strip()]
        n_lines = max(len(lines), 1)
        out[i, 8] = text.count("\n") / n_words[i]
        out[i, 9] = sum(line.rstrip().endswith((".", "!", "?", '"', "'")) for line in lines) / n_lines
        out[i, 10] = sum(len(line) <= 30 for line in lines) / n_lines
        out[i, 11] = words.counts[i] / max(text.count(". ") + text.count(".\n") + 1, 1)
    return np.log1p(np.maximum(out, 0)).astype(np.float32)


class EmbeddingFeatures:
    """Sentence embeddings from a local sentence-transformers directory (never downloaded)."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        path = Path(config.embeddings_model or "")
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise TextbookError(
                f"{path} is not a local sentence-transformers model directory: pass the folder that holds modules.json"
            )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise TextbookError("embeddings need sentence-transformers: pip install 'textbook[embeddings]'") from None
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)

    def transform(self, texts: Sequence[str], words: WordTable | None = None):
        # FineWeb-Edu embedded the start of each page; truncating also keeps this stage's cost bounded
        emb = self.model.encode([t[: self.config.max_chars] for t in texts], batch_size=32,
                                normalize_embeddings=True, show_progress_bar=False)
        return None, np.asarray(emb, dtype=np.float32)


def featurizer(config: FeatureConfig, vectors: "WordVectors | None" = None):
    if config.kind in ("hashed", "static", "hashed+static"):
        if config.kind != "hashed" and vectors is None:
            raise TextbookError(f"features {config.kind!r} need the distilled word vectors stored with the model")
        return HashedFeatures(config, vectors if config.kind != "hashed" else None)
    if config.kind == "embeddings":
        return EmbeddingFeatures(config)
    raise TextbookError(f"unknown feature kind {config.kind!r}: use {' or '.join(KINDS)}")
