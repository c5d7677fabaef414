"""Connected components of the near-duplicate graph without holding the graph in one process.

Alternating Large-Star and Small-Star (Kiveris, Lattanzi, Mirrokni, Rastogi, Vassilvitskii, "Connected
Components in MapReduce and Beyond", SoCC 2014): each step is a map-reduce over edges keyed by node, and
after O(log^2 n) rounds every component is a star whose centre is its smallest label. The labels are
`shuffle.labels` (the keep rule's rank, then the row), so a component's centre is the document it keeps.

Memory bound: a reduce task holds the edges of its node partition, at most ~2 x edges / partitions
(a node's edges stay together, so one enormous cluster's centre is the one exception: its star, up to
the cluster's size, lands in one task: 16 bytes per member). The edge set never meets in one process.
"""

from __future__ import annotations

import numpy as np

from textbook.filter.shuffle import Cols, concat, group_starts, hashed, out, ranged, refs, remote, row_of, split
from textbook.minhash import fmix64

EMPTY: Cols = {"u": np.zeros(0, np.uint64), "v": np.zeros(0, np.uint64)}


def both_ways(u: np.ndarray, v: np.ndarray, n: int) -> list[Cols]:
    """Edges as Large-Star reads them: each edge under both of its ends, partitioned by that end."""
    a, b = np.concatenate([u, v]), np.concatenate([v, u])
    return split({"u": a, "v": b}, hashed(a, n), n)


def _grouped(e: Cols) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique edges sorted by (u, v), the start of each u's run, and the smallest v of each run, per edge."""
    pairs = np.unique(np.stack([e["u"], e["v"]], axis=1), axis=0) if len(e["u"]) else np.zeros((0, 2), np.uint64)
    u, v = pairs[:, 0], pairs[:, 1]
    starts = group_starts(u)
    if not len(u):
        return u, v, starts, v
    low = np.repeat(np.minimum.reduceat(v, starts), np.diff(np.append(starts, len(u))))
    return u, v, starts, low


def large_star(e: Cols, n: int) -> list[Cols]:
    """Each node links its larger neighbours to the smallest of itself and its neighbours. The new edges
    (x, m) have m < x; they go out keyed by x, as Small-Star reads them."""
    u, v, _, low = _grouped(e)
    m = np.minimum(low, u)
    keep = v > u
    x, m = v[keep], m[keep]
    return split({"u": x, "v": m}, hashed(x, n), n)


def small_star(e: Cols, n: int) -> tuple[list[Cols], tuple[int, int]]:
    """Each node links itself and its smaller neighbours to the smallest of them. Returns the edges keyed
    both ways (for the next Large-Star) and a fingerprint of the edge set (count, sum of hashes) that
    says when a round changed nothing."""
    u, v, _, m = _grouped(e)  # every v < u here, so the smallest of {u} and its v's is the run's low
    x = np.concatenate([v, u])
    c = np.concatenate([m, m])
    keep = x != c
    pairs = np.unique(np.stack([x[keep], c[keep]], axis=1), axis=0) if keep.any() else np.zeros((0, 2), np.uint64)
    x, c = pairs[:, 0], pairs[:, 1]
    with np.errstate(over="ignore"):
        digest = int(np.sum(fmix64(fmix64(x) ^ c), dtype=np.uint64))
    return both_ways(x, c, n), (len(x), digest)


def finish(e: Cols, starts: np.ndarray) -> list[Cols]:
    """From converged stars (keyed both ways): per member its centre's row, per centre its size - 1 (the
    documents it absorbs), routed to the row range of the member."""
    u, v, runs, low = _grouped(e)
    centre = low > u  # a centre's neighbours are all larger; a leaf's one neighbour is its centre
    rows = row_of(u[runs])
    root = np.where(centre[runs], rows, row_of(low[runs]))
    size = np.where(centre[runs], np.diff(np.append(runs, len(u))), 0).astype(np.int32)
    cols = {"row": rows, "root": root, "absorbed": size}
    return split(cols, ranged(rows, starts), len(starts))


def components(ray, edges: list[list], n: int, starts: np.ndarray, max_rounds: int = 64) -> list[list]:
    """`edges[t][p]`: refs of Large-Star input (from `both_ways`), map task t, partition p. Returns
    `out[p][r]`: refs of `finish` pieces for row range r."""
    large = remote(ray, _large_task)
    small = remote(ray, _small_task)
    done = remote(ray, _finish_task)
    before = None
    for _ in range(max_rounds):
        mid = [refs(large.options(num_returns=n).remote(n, *[t[p] for t in edges]), n) for p in range(n)]
        outs = [refs(small.options(num_returns=n + 1).remote(n, *[t[p] for t in mid]), n + 1) for p in range(n)]
        edges = [o[:n] for o in outs]
        prints = ray.get([o[n] for o in outs])
        now = (sum(c for c, _ in prints), sum(d for _, d in prints) % (1 << 64))
        if now == before:
            break
        before = now
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    r = len(starts)
    return [refs(done.options(num_returns=r).remote(starts, *[t[p] for t in edges]), r) for p in range(n)]


def _large_task(n: int, *pieces: Cols):
    return out(large_star(concat(pieces, EMPTY), n))


def _small_task(n: int, *pieces: Cols):
    edges, digest = small_star(concat(pieces, EMPTY), n)
    return (*edges, digest)


def _finish_task(starts: np.ndarray, *pieces: Cols):
    return out(finish(concat(pieces, EMPTY), starts))
