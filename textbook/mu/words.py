"""The words a request shares with the training requests: TF-IDF over word 1-2-grams, kept as an inverted index.

Why: retrieval (neighbours.py) compares requests by the encoder's pooled state, which after a short fine-tune
knows meaning but blurs the exact words; "aero shake", "mono audio" or a rare app's name are matched better by the
words themselves. Adding the two similarities is hybrid retrieval, dense plus sparse, as search engines combine
BM25 with embeddings. On the development set (session 17, tests/data/settings/dev.jsonl) the right setting and kind
of action went from 73.6% (the encoder alone) to 77.5% with a fifth of the weight on these words; word n-grams did
as well as all-MiniLM-L6-v2's embeddings in the same place, at no model's cost.

Terms are the lowercased words of two characters or more (scikit-learn's default token pattern) and each pair of
neighbouring words; a term in fewer than `min_df` indexed requests is dropped. Weights are scikit-learn's
TfidfVectorizer(sublinear_tf=True) ones: (1 + log tf) · (1 + log((1 + N) / (1 + df))), rows unit-normalised, so a
similarity is a cosine. The index is stored as postings (term -> requests, weights): a query's similarities to
every request cost one pass over the postings of its few terms. numpy only: the exported runner uses it.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

TOKEN = re.compile(r"\w\w+")
MIN_DF = 2  # a term one request has is noise for the others


def terms(text: str) -> list[str]:
    words = TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class Words:
    def __init__(self, vocabulary: list[str], idf: np.ndarray, starts: np.ndarray, docs: np.ndarray,
                 weights: np.ndarray, size: int):
        self.vocabulary = vocabulary  # sorted terms
        self.idf = idf  # (V,) float32
        self.starts = starts  # (V + 1,) int64: term t's postings are [starts[t], starts[t + 1])
        self.docs = docs  # (nnz,) int32: the indexed requests that have the term
        self.weights = weights  # (nnz,) float32: each one's unit-normalised weight of it
        self.size = size  # indexed requests
        self.ids = {term: i for i, term in enumerate(vocabulary)}

    @classmethod
    def fit(cls, texts: list[str], min_df: int = MIN_DF) -> "Words":
        counts = [Counter(terms(t)) for t in texts]
        df = Counter(term for c in counts for term in c)
        vocabulary = sorted(term for term, n in df.items() if n >= min_df)
        ids = {term: i for i, term in enumerate(vocabulary)}
        n = len(texts)
        idf = np.array([1.0 + math.log((1 + n) / (1 + df[t])) for t in vocabulary], dtype=np.float32)
        term_of, doc_of, weight_of = [], [], []
        for doc, c in enumerate(counts):
            kept = [(ids[t], 1.0 + math.log(k)) for t, k in c.items() if t in ids]
            if not kept:
                continue
            tids = np.array([t for t, _ in kept], dtype=np.int64)
            w = np.array([tf for _, tf in kept], dtype=np.float32) * idf[tids]
            term_of.append(tids)
            doc_of.append(np.full(len(tids), doc, dtype=np.int32))
            weight_of.append(w / np.linalg.norm(w))
        term = np.concatenate(term_of) if term_of else np.zeros(0, dtype=np.int64)
        order = np.argsort(term, kind="stable")
        starts = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        starts[1:] = np.cumsum(np.bincount(term, minlength=len(vocabulary)))
        docs = np.concatenate(doc_of)[order] if doc_of else np.zeros(0, dtype=np.int32)
        weights = np.concatenate(weight_of)[order] if weight_of else np.zeros(0, dtype=np.float32)
        return cls(vocabulary, idf, starts, docs, weights, n)

    def query(self, text: str) -> tuple[list[int], np.ndarray]:
        """The known terms of `text` and their unit-normalised weights."""
        c = Counter(t for t in terms(text) if t in self.ids)
        if not c:
            return [], np.zeros(0, dtype=np.float32)
        tids = [self.ids[t] for t in c]
        w = np.array([1.0 + math.log(k) for k in c.values()], dtype=np.float32) * self.idf[tids]
        return tids, w / np.linalg.norm(w)

    def similarities(self, texts: list[str]) -> np.ndarray:
        """(B, N) float32: the cosine of each text's weights with each indexed request's (0 when none is shared)."""
        out = np.zeros((len(texts), self.size), dtype=np.float32)
        for row, text in enumerate(texts):
            for t, w in zip(*self.query(text)):
                lo, hi = self.starts[t], self.starts[t + 1]
                out[row, self.docs[lo:hi]] += w * self.weights[lo:hi]
        return out

    # -- storage: arrays numpy reads without pickle (neighbours.py saves them in its .npz) -----------------
    def arrays(self) -> dict[str, np.ndarray]:
        text = "\n".join(self.vocabulary).encode("utf-8")  # terms hold no newline: \w and one space
        return {"words_vocabulary": np.frombuffer(text, dtype=np.uint8), "words_idf": self.idf.astype(np.float32),
                "words_starts": self.starts.astype(np.int64), "words_docs": self.docs.astype(np.int32),
                "words_weights": self.weights.astype(np.float16), "words_size": np.array(self.size, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, data) -> "Words":
        """From `arrays()`; ValueError when they disagree with each other (a damaged file)."""
        raw = bytes(data["words_vocabulary"].astype(np.uint8))
        vocabulary = raw.decode("utf-8").split("\n") if raw else []
        idf, starts = data["words_idf"].astype(np.float32), data["words_starts"].astype(np.int64)
        docs, weights, size = data["words_docs"].astype(np.int32), data["words_weights"].astype(np.float32), int(data["words_size"])
        if (len(idf) != len(vocabulary) or len(starts) != len(vocabulary) + 1 or starts[0] != 0 or starts[-1] != len(docs)
                or np.any(np.diff(starts) < 0) or len(weights) != len(docs)
                or (len(docs) and not 0 <= docs.min() <= docs.max() < size)):
            raise ValueError("its word index disagrees with itself")
        return cls(vocabulary, idf, starts, docs, weights, size)
