"""Columns of numpy arrays cut into pieces by hash or by row range: the shuffles under `--engine ray`.

A shuffle is Ray's own pattern ("shuffle" in the Ray Core docs): every map task returns one piece per
reducer (`num_returns=n`) and every reduce task is handed the i-th piece of each map task, so no process
holds more than its own pieces and Ray moves them between nodes (spilling to disk when they do not fit).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from textbook.minhash import fmix64

Cols = dict[str, np.ndarray]
ROW_BITS = 32
ROW_MASK = np.uint64((1 << ROW_BITS) - 1)


def split(cols: Cols, where: np.ndarray, n: int) -> list[Cols]:
    """`n` pieces: piece i holds the rows whose `where` is i, in their order."""
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(n + 1))
    return [{k: v[order[bounds[i]:bounds[i + 1]]] for k, v in cols.items()} for i in range(n)]


def concat(pieces: Iterable[Cols], like: Cols) -> Cols:
    """The pieces as one set of columns (`like` gives names and dtypes when there are none)."""
    pieces = [p for p in pieces if p and len(next(iter(p.values())))]
    return {k: np.concatenate([p[k] for p in pieces]) if pieces else v[:0] for k, v in like.items()}


def hashed(keys: np.ndarray, n: int) -> np.ndarray:
    """Hash partition of 64-bit keys: which of `n` pieces each goes to."""
    return (fmix64(keys.astype(np.uint64, copy=False)) % np.uint64(n)).astype(np.int64)


def ranged(rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Range partition of global row numbers: the row range (`starts` = first row of each) each falls in."""
    return np.searchsorted(starts, rows, side="right") - 1


def labels(rows: np.ndarray, chars: np.ndarray, score: np.ndarray, keep: str) -> np.ndarray:
    """One uint64 per document that sorts as the preset's `keep` rule ranks a group's members: the rank in
    the high 32 bits, the row in the low 32, so "the smallest label" is the document a group keeps (first:
    lowest row; longest: most characters, then lowest row; highest_score: best score, unscored last)."""
    if np.any(rows >= (1 << ROW_BITS)):
        raise ValueError("more than 2^32 rows in one filter run")
    if keep == "longest":
        rank = np.uint64(0xFFFFFFFF) - np.minimum(chars, 0xFFFFFFFF).astype(np.uint64)
    elif keep == "highest_score":
        rank = _sortable(-np.nan_to_num(score.astype(np.float32), nan=-1.0) + np.float32(0.0))
    else:
        rank = np.zeros(len(rows), dtype=np.uint64)
    return (rank << np.uint64(ROW_BITS)) | rows.astype(np.uint64)


def _sortable(x: np.ndarray) -> np.ndarray:
    """float32 -> uint32 (as uint64) that orders as the floats do (sign bit flipped, negatives inverted)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    negative = (bits >> np.uint64(31)) == 1
    return np.where(negative, np.uint64(0xFFFFFFFF) - bits, bits | np.uint64(0x80000000))


def row_of(label: np.ndarray) -> np.ndarray:
    return (label & ROW_MASK).astype(np.int64)


def group_starts(*sorted_keys: Sequence) -> np.ndarray:
    """Index of the first element of each run of equal keys (the keys already sorted together)."""
    n = len(sorted_keys[0])
    if not n:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in sorted_keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def out(pieces: list):
    """A task's pieces as Ray wants them returned: the piece itself when there is one."""
    return pieces[0] if len(pieces) == 1 else tuple(pieces)


def refs(result, n: int) -> list:
    """The refs of a call made with `num_returns=n`, as a list whatever n is."""
    return [result] if n == 1 else list(result)


_REMOTES: dict = {}


def remote(ray, fn):
    """One Ray remote function per task body (registering it again per call costs a round trip)."""
    if fn not in _REMOTES:
        _REMOTES[fn] = ray.remote(fn)
    return _REMOTES[fn]
