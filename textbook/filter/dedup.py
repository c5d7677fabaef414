"""Dedup and final decisions, from pass-1 parts alone (ids, reasons, hashes, band keys, scores).

Order (FineWeb's): documents that passed the heuristics are deduplicated exactly (same normalised
text), the survivors by MinHash (connected components of shared band keys, textbook.minhash), one
document kept per group (`keep`: first, longest or highest_score), then the classifier threshold.
Memory: 14 band keys + a few numbers per document (plus the 112 signature values when
`dedup.verify` checks candidate pairs); the index is sorted arrays, not a hash table of Python
objects: ~200 MB for 1M documents (~650 MB with verify).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textbook.errors import TextbookError
from textbook.filter.config import Preset
from textbook.minhash import cluster_band_keys, estimate_jaccard

KEPT, INPUT, HEURISTICS, EXACT, NEAR, CLASSIFIER = range(6)
STAGES = ("kept", "input", "heuristics", "exact_dedup", "near_dedup", "classifier")


@dataclass(slots=True)
class Decisions:
    """Per input row: stage code (KEPT..CLASSIFIER), the kept row it duplicates, its cluster, score."""

    stage: np.ndarray  # uint8
    dup_of: np.ndarray  # int64, -1 = not a duplicate
    cluster: np.ndarray  # int64: row of the document kept for its duplicate group, -1 = never deduplicated
    duplicates: np.ndarray  # int32: documents removed as duplicates of this one
    score: np.ndarray  # float32, NaN = not scored
    reason: pa.Array  # pass-1 reason (input / heuristics), string
    ids: pa.Array  # string: the output id of each row (repeated ids renamed, see `unique_ids`)
    renamed: np.ndarray  # int64: rows whose input id repeated an earlier row's and was renamed

    def reasons(self, rows: np.ndarray) -> list[str | None]:
        """The reason string of each row (None for kept rows)."""
        stage = self.stage[rows]
        base = self.reason.take(pa.array(rows)).to_pylist()
        keeper_ids = self.ids.take(pa.array(np.maximum(self.dup_of[rows], 0))).to_pylist()
        out: list[str | None] = []
        for s, b, k in zip(stage, base, keeper_ids):
            if s == KEPT:
                out.append(None)
            elif s in (INPUT, HEURISTICS):
                out.append(b)
            elif s == EXACT:
                out.append(f"exact_duplicate_of:{k}")
            elif s == NEAR:
                out.append(f"near_duplicate_of:{k}")
            else:
                out.append("edu_below_threshold")
        return out


def _keepers(rows: np.ndarray, group: np.ndarray, keep: str, chars: np.ndarray, score: np.ndarray) -> np.ndarray:
    """For each row (a subset of the input, with a group label), the row kept for its group."""
    if keep == "longest":
        order = np.lexsort((rows, -chars[rows], group))
    elif keep == "highest_score":
        order = np.lexsort((rows, -np.nan_to_num(score[rows], nan=-1.0), group))
    else:
        order = np.lexsort((rows, group))
    g = group[order]
    first = np.concatenate(([True], g[1:] != g[:-1]))
    head = np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
    keeper = np.empty(len(rows), dtype=np.int64)
    keeper[order] = rows[order][head]
    return keeper


def decide(parts: pa.Table, preset: Preset, threshold: float,
           origins: Callable[[np.ndarray], list[str]] | None = None) -> Decisions:
    n = parts.num_rows
    reason = parts.column("reason").combine_chunks() if n else pa.array([], pa.string())
    stage_col = parts.column("stage").combine_chunks() if n else pa.array([], pa.string())
    ids = parts.column("id").combine_chunks() if n else pa.array([], pa.string())
    stage = np.full(n, KEPT, dtype=np.uint8)
    stage[pc.equal(stage_col, "input").to_numpy(zero_copy_only=False).astype(bool) if n else []] = INPUT
    stage[pc.equal(stage_col, "heuristics").to_numpy(zero_copy_only=False).astype(bool) if n else []] = HEURISTICS
    score = parts.column("score").to_numpy().astype(np.float32) if n else np.zeros(0, np.float32)
    chars = parts.column("chars").to_numpy() if n else np.zeros(0, np.int64)
    dup_of = np.full(n, -1, dtype=np.int64)
    cluster = np.full(n, -1, dtype=np.int64)

    ids, renamed = unique_ids(ids, origins)
    rows = np.flatnonzero(stage == KEPT)
    d = preset.dedup
    if len(rows):
        cluster[rows] = rows
    if d.exact and len(rows):
        exact = parts.column("exact").to_numpy()[rows]
        keeper = _keepers(rows, exact, d.keep, chars, score)
        dup = keeper != rows
        stage[rows[dup]] = EXACT
        dup_of[rows[dup]] = keeper[dup]
        cluster[rows] = keeper
        rows = rows[~dup]
    if d.near and len(rows):
        keys = parts.column("keys").combine_chunks().flatten().to_numpy().reshape(n, d.bands)[rows]
        veto = None
        if d.verify > 0:
            sigs = parts.column("sig").combine_chunks().flatten().to_numpy().reshape(n, -1)[rows]
            veto = lambda i, j: estimate_jaccard(sigs[i], sigs[j]) >= d.verify  # noqa: E731
        rep = cluster_band_keys(keys, veto)  # index into `rows` of each component's first member
        keeper = _keepers(rows, rep, d.keep, chars, score)
        dup = keeper != rows
        stage[rows[dup]] = NEAR
        dup_of[rows[dup]] = keeper[dup]
        # exact duplicates follow their keeper into its near-duplicate cluster
        remap = np.arange(n, dtype=np.int64)
        remap[rows] = keeper
        reached = cluster >= 0
        cluster[reached] = remap[cluster[reached]]
        rows = rows[~dup]
    if preset.classifier.enabled and len(rows):
        below = ~(score[rows] >= threshold)  # NaN (unscored) counts as below
        stage[rows[below]] = CLASSIFIER
    # every duplicate counts towards the document finally kept for its group
    final = np.where(dup_of >= 0, cluster, -1)
    duplicates = np.bincount(final[final >= 0], minlength=n).astype(np.int32)
    return Decisions(stage, dup_of, cluster, duplicates, score, reason, ids, renamed)


def unique_ids(ids: pa.Array, origins: Callable[[np.ndarray], list[str]] | None) -> tuple[pa.Array, np.ndarray]:
    """Every row its own id. Two files numbered from 0 repeat ids with different texts: both documents
    count (dropping the later one lost real data), so a repeat becomes `<id>@<origin>`, `origin(rows)`
    naming where it came from (`file#row`), and the rows renamed are returned for the report. Repeats
    of the same text are still removed, by exact dedup, as duplicates of the first occurrence."""
    n = len(ids)
    if not n:
        return ids, np.zeros(0, np.int64)
    id_hash = _hash_ids(ids)
    order = np.lexsort((np.arange(n), id_hash))
    same = np.concatenate(([False], id_hash[order][1:] == id_hash[order][:-1]))
    repeated = np.sort(order[same])
    if not len(repeated):
        return ids, repeated
    values = ids.to_pylist()
    where = origins(repeated) if origins is not None else [f"row{r}" for r in repeated.tolist()]
    for r, origin in zip(repeated.tolist(), where):
        values[r] = f"{values[r]}@{origin}"
    renamed = pa.array(values, pa.string())
    if len(np.unique(_hash_ids(renamed))) != n:
        raise TextbookError("ids still repeat after renaming repeats to ID@FILE#ROW: pass --id-column with a unique "
                            "column, or leave --id-column out of files without one so rows are numbered")
    return renamed, repeated


def _hash_ids(ids: pa.Array) -> np.ndarray:
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(s.encode("utf-8", "surrogatepass")) for s in ids.to_pylist()),
                       dtype=np.uint64, count=len(ids))
