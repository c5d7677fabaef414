"""Streaming near-duplicate filter for generated rows, on the shared vectorised MinHash (textbook.minhash).

A teacher asked thousands of similar prompts repeats itself; near-copies add tokens, not knowledge.
Each kept row's signature is cut into bands (FineWeb's 14 x 8 by default, Jaccard ~0.72); a new row
that shares any band key with a kept row is a near-duplicate of it. Only band keys are held
(14 integers per kept row), never texts. Rows come in batches: one numpy pass per batch is what
makes MinHash cheap (a single text costs about as much as a hundred).
"""

from __future__ import annotations

from typing import Sequence

from textbook.minhash import MinHasher, band_keys


class NearDuplicates:
    def __init__(self, bands: int = 14, rows: int = 8):
        self.bands, self.rows = bands, rows
        self.hasher = MinHasher(num_perm=bands * rows)
        self._buckets: list[dict[int, int]] = [{} for _ in range(bands)]

    def add(self, keys: Sequence[int], texts: Sequence[str]) -> list[int | None]:
        """Per text, in order: None (new: kept under its key) or the key of the kept row it nearly duplicates.

        Texts are checked against every kept row, earlier texts of the same batch included.
        """
        if not texts:
            return []
        out: list[int | None] = []
        signatures = self.hasher.signatures(texts, batch=max(1, len(texts)))
        for key, row in zip(keys, band_keys(signatures, self.bands, self.rows).tolist()):
            original = next((bucket[band] for bucket, band in zip(self._buckets, row) if band in bucket), None)
            if original is None:
                for bucket, band in zip(self._buckets, row):
                    bucket[band] = key
            out.append(original)
        return out
