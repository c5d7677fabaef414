"""Smart sampling: which setting to draw, how many copies of a query to allow, which split a seed is in.

- Popularity weights with a floor, so rare settings are still learned, and a boost for confusable
  settings (names sharing a distinctive word: the brightness controls, the volume controls) so the model
  sees the near misses side by side.
- A near-duplicate cap in constant memory: a fixed table of saturating byte counters indexed by the hash of
  the normalised query (a one-row count-min sketch; a collision can only cap early, never let more through).
- Splits by seed hash: every variant of a seed lands in the seed's split, so no paraphrase or noised copy
  of a test seed is trained on.
"""

from __future__ import annotations

from textbook.contract import TEST, TRAIN, VALIDATION
from textbook.settings.catalogue import Catalogue
from textbook.settings.config import MAX_CAP
from textbook.settings.language import STOPWORDS

SKETCH_BITS = 22  # 4 MiB of counters: < 1% of buckets shared at a million distinct queries


def _name_tokens(catalogue: Catalogue) -> list[set[str]]:
    out = []
    for s in catalogue.settings:
        words = set()
        for text in (s.name, *s.synonyms):
            for w in text.lower().replace("-", " ").split():
                w = w.strip(",.&()'")
                if len(w) >= 3 and w not in STOPWORDS:
                    words.add(w)
        out.append(words)
    return out


def confusable_groups(catalogue: Catalogue, max_share: int = 6) -> list[set[int]]:
    """For each setting, the settings it is easily confused with: they share a name word that few settings use."""
    tokens = _name_tokens(catalogue)
    holders: dict[str, list[int]] = {}
    for i, words in enumerate(tokens):
        for w in words:
            holders.setdefault(w, []).append(i)
    groups: list[set[int]] = [set() for _ in tokens]
    for members in holders.values():
        if 2 <= len(members) <= max_share:
            for i in members:
                groups[i].update(j for j in members if j != i)
    return groups


def setting_weights(catalogue: Catalogue, *, floor: float, boost: float, reachable: list[bool] | None = None,
                    groups: list[set[int]] | None = None) -> list[float]:
    """Draw probabilities: popularity share, at least floor x uniform, x (1 + boost) when confusable."""
    settings = catalogue.settings
    reachable = reachable or [True] * len(settings)
    groups = groups if groups is not None else confusable_groups(catalogue)
    live = [i for i in range(len(settings)) if reachable[i]]
    total = sum(settings[i].popularity for i in live)
    weights = [0.0] * len(settings)
    for i in live:
        w = max(settings[i].popularity / total, floor / len(live))
        weights[i] = w * (1.0 + boost if groups[i] else 1.0)
    norm = sum(weights)
    return [w / norm for w in weights]




class DupCap:
    """At most `cap` copies of one normalised query (by hash), in a fixed 4 MiB table."""

    def __init__(self, cap: int, data: bytes | None = None, bits: int = SKETCH_BITS):
        if not 1 <= cap <= MAX_CAP:
            raise ValueError(f"the duplicate cap must be between 1 and {MAX_CAP}")
        self.cap = cap
        self.mask = (1 << bits) - 1
        self.table = bytearray(data) if data is not None else bytearray(1 << bits)
        if len(self.table) != 1 << bits:
            raise ValueError("duplicate-cap table has the wrong size")

    def admit(self, key: int) -> bool:
        b = key & self.mask
        if self.table[b] >= self.cap:
            return False
        self.table[b] += 1
        return True

    def to_bytes(self) -> bytes:
        return bytes(self.table)


def split_of(hash64: int, validation: float, test: float) -> str:
    """train / validation / test from a seed's 64-bit hash (the same seed always lands in the same split)."""
    r = (hash64 >> 11) / float(1 << 53)
    if r < test:
        return TEST
    if r < test + validation:
        return VALIDATION
    return TRAIN
