"""Vectorised MinHash near-duplicate detection, shared by `textbook filter` and `textbook gen`.

Recipe (FineWeb via datatrove): normalised text (lowercase, punctuation dropped, whitespace folded),
word 5-gram shingles, 112 permutations read as 14 bands x 8 rows (Jaccard threshold ~0.72).

Why not `datasketch.MinHash.update` per shingle: that Python loop runs ~450 docs/s. Here a whole
batch of documents is hashed with numpy at once:
  1. words: one polynomial hash per word over its lowercased code points, read off prefix sums over
     the code points of the whole batch (no Python code per word), mixed with MurmurHash3's finaliser;
  2. shingles: 5 consecutive word hashes combined and mixed, cut to 32 bits;
  3. permutations: datasketch's own "affine32" scheme (fmix32, then a*h+b mod 2^32 with its
     seeded parameters), min-reduced per document. Given the same 32-bit shingle hashes the
     signature is bit-identical to `datasketch.MinHash(num_perm, seed)`; `MinHasher.lean()` turns a
     row into a `LeanMinHash` that `datasketch.MinHashLSH` accepts (tests check both).
Bands become one 64-bit key each, so an index holds 14 x 8 bytes per document, never texts.

Use: `near_duplicate_clusters(texts)` for a list in memory (result[i] = index of the first text of
i's cluster); `MinHasher().signatures(texts, workers=2)`, `band_keys`, `cluster_band_keys` for
streams (textbook.filter keeps only the keys and signatures of a pass over the input).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from textbook.workers import process_pool

U64 = np.uint64
U32 = np.uint32
_WORD = re.compile(r"\w+")
_MAX32 = np.uint32(0xFFFFFFFF)
# Odd 64-bit constants for the polynomial word hash and for combining word hashes into n-grams.
_POLY = U64(0x100000001B3)  # FNV-1 64-bit prime: odd, so invertible mod 2^64
MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD,
     0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5],
    dtype=U64,
)


def normalise(text: str) -> str:
    """Lowercase, punctuation dropped, whitespace folded: the `\\w+` words joined by single spaces.

    Words are `\\w+` runs, the same definition as the benchmark's ground truth
    (shared/bench/make_corpus.py), so shingles here and there are the same sets.
    """
    return " ".join(_WORD.findall(text.lower()))


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: an avalanching bijection (wraparound is the intended mod 2^64)."""
    h = h ^ (h >> U64(33))
    h = h * U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> U64(33))
    h = h * U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> U64(33))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch's affine32 scheme applies it before permuting."""
    h = h ^ (h >> U32(16))
    h = h * U32(0x85EBCA6B)
    h = h ^ (h >> U32(13))
    h = h * U32(0xC2B2AE35)
    return h ^ (h >> U32(16))


class _Tables:
    """Per-process lookup tables, built on first use (~30 ms).

    `lower[cp]` is the lowercased code point of a word character (`\\w` after `str.lower`) and 0
    for everything else, for the Basic Multilingual Plane; code points above it (emoji, rare
    scripts) count as non-word. `pow`/`inv` are POLY^i and POLY^-i mod 2^64.
    """

    lower: np.ndarray | None = None
    pow = np.ones(1, dtype=U64)
    inv = np.ones(1, dtype=U64)

    @classmethod
    def chars(cls) -> np.ndarray:
        if cls.lower is None:
            lowered = "".join(chr(i).lower()[0] for i in range(0x10000))
            table = np.zeros(0x10000, dtype=np.uint32)
            codes = np.frombuffer(lowered.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            for m in _WORD.finditer(lowered):
                table[m.start() : m.end()] = codes[m.start() : m.end()]
            cls.lower = table
        return cls.lower

    @classmethod
    def powers(cls, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(cls.pow) < n:
            size = max(1 << 20, 1 << (n - 1).bit_length())  # a power of two: few regrowths, bounded waste
            cls.pow = _geometric(_POLY, size)
            cls.inv = _geometric(U64(pow(int(_POLY), -1, 1 << 64)), size)
        return cls.pow, cls.inv


def is_word_char(cp: np.ndarray) -> np.ndarray:
    """Which code points are word characters (`\\w` after lowercasing; BMP only, see _Tables)."""
    return _Tables.chars()[np.minimum(cp, 0xFFFF)] != 0


def _geometric(base: np.uint64, n: int) -> np.ndarray:
    """[1, base, base^2, ...] mod 2^64 (np.cumprod on uint64 wraps, which is what we want)."""
    out = np.full(n, base, dtype=U64)
    out[0] = 1
    return np.cumprod(out, dtype=U64)


def code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The code points of texts joined by "\\n" (a non-word separator), and where each text starts."""
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(texts) else lengths
    joined = "\n".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(joined, dtype=np.uint32), starts


class WordTable:
    """The words of a batch of documents: one 64-bit hash and length per word, grouped by document.

    Words are what `normalise` keeps (lowercased `\\w+` runs); `counts[d]` words belong to
    document d, at `hashes[starts[d]:starts[d] + counts[d]]`. Built with numpy over the code points
    of the whole batch: a word's hash is a polynomial over its lowercased code points, read off
    prefix sums, so no Python code runs per word. `cp`/`doc_chars` keep the code points and each
    document's offset in them, `char_start` each word's offset, for other features.
    """

    __slots__ = ("hashes", "lengths", "counts", "starts", "cp", "doc_chars", "char_start")

    def __init__(self, texts: Sequence[str]):
        cp, doc_chars = code_points(texts)
        self.cp, self.doc_chars = cp, doc_chars
        low = _Tables.chars()[np.minimum(cp, 0xFFFF)]
        isw = (low != 0).view(np.int8)
        edge = np.diff(isw, prepend=np.int8(0), append=np.int8(0))
        w_start = np.flatnonzero(edge == 1)
        w_end = np.flatnonzero(edge == -1)
        pw, inv = _Tables.powers(len(cp) + 1)
        with np.errstate(over="ignore"):
            # prefix[i] = sum_{j<i} low_j * POLY^j; a word = (prefix[end] - prefix[start]) * POLY^-start
            prefix = np.zeros(len(cp) + 1, dtype=U64)
            np.cumsum(low.astype(U64) * pw[: len(cp)], dtype=U64, out=prefix[1:])
            raw = (prefix[w_end] - prefix[w_start]) * inv[w_start]
            self.lengths = w_end - w_start
            self.char_start = w_start
            self.hashes = fmix64(raw ^ self.lengths.astype(U64))
        bounds = np.concatenate((doc_chars, [len(cp) + 1]))
        first = np.searchsorted(w_start, bounds)
        self.counts = np.diff(first).astype(np.int64)
        self.starts = first[:-1].astype(np.int64)

    def doc_hashes(self) -> np.ndarray:
        """One 64-bit hash per document of its word sequence: equal exactly when the normalised
        texts are equal (up to 64-bit collisions). Exact dedup compares these."""
        pw, _ = _Tables.powers(int(self.counts.max(initial=0)) + 1)
        local = np.arange(len(self.hashes)) - np.repeat(self.starts, self.counts)
        out = np.zeros(len(self.counts), dtype=U64)
        nonempty = self.counts > 0
        with np.errstate(over="ignore"):
            if nonempty.any():
                out[nonempty] = np.add.reduceat(self.hashes * pw[local], self.starts[nonempty], dtype=U64)
            return fmix64(out ^ self.counts.astype(U64))

    def doc_of_word(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def ngram_starts(self, n: int, *, short_docs: bool = False) -> np.ndarray:
        """Index (into `hashes`) of the first word of every word n-gram inside a document.

        With `short_docs`, a document with 1..n-1 words yields one n-gram of all its words (what
        datasketch users and the benchmark do: such a document is the set {its whole text}).
        """
        size = np.repeat(self.counts, self.counts)  # words in each word's document
        local = np.arange(len(self.hashes)) - np.repeat(self.starts, self.counts)
        limit = size - n  # last local index where an n-gram can start
        if short_docs:
            limit = np.maximum(limit, 0)
        return np.flatnonzero(local <= limit)

    def ngram_hashes(self, n: int, *, short_docs: bool = False, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of the word n-grams starting at `starts` (default: all, see `ngram_starts`), and
        the document of each. A slot past the end of a short document contributes nothing."""
        w = self.hashes
        valid = self.ngram_starts(n, short_docs=short_docs) if starts is None else starts
        doc = self.doc_of_word()[valid]
        left = (self.starts + self.counts)[doc] - valid  # words from the n-gram's start to its doc's end
        with np.errstate(over="ignore"):
            acc = np.zeros(len(valid), dtype=U64)
            for k in range(n):
                part = w[np.minimum(valid + k, len(w) - 1)] * MIX[k]
                part[left <= k] = 0
                acc += part
            return fmix64(acc ^ U64(n)), doc


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of `datasketch.MinHash(num_perm, seed, scheme="affine32").permutations`, drawn the way
    datasketch 2.x draws them (`MinHash._init_permutations`; a test checks they are equal). Drawn here
    because importing datasketch costs ~0.35 s (its LSH module imports scipy.integrate) at every start."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=U32) * U32(2) + U32(1)  # odd: a bijection mod 2^32
    b = gen.randint(0, 1 << 32, num_perm, dtype=U32)
    return a, b


class MinHasher:
    """MinHash signatures for many texts at once: `MinHasher().signatures(texts)` -> (N, num_perm) uint32.

    Compatible with datasketch: the permutations are `datasketch.MinHash(num_perm, seed)`'s
    (scheme "affine32"), so `lean(row)` goes straight into a `datasketch.MinHashLSH`.
    """

    def __init__(self, num_perm: int = 112, ngram: int = 5, seed: int = 1):
        if num_perm < 1 or ngram < 1:
            raise ValueError("num_perm and ngram must be positive")
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self._a, self._b = affine32_permutations(num_perm, seed)

    # -- per batch --------------------------------------------------------------------------------
    def shingle_hashes(self, words: WordTable) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hash of every word n-gram (before permutation) and the document it belongs to."""
        h, doc = words.ngram_hashes(self.ngram, short_docs=True)
        return (h >> U64(32)).astype(U32), doc

    def signatures_of(self, words: WordTable, chunk: int = 8192) -> np.ndarray:
        """Signatures of the documents of one WordTable; an empty document gets all 0xFFFFFFFF."""
        h, doc = self.shingle_hashes(words)
        n_docs = len(words.counts)
        sig = np.full((self.num_perm, n_docs), _MAX32, dtype=U32)  # permutation-major: see below
        if len(h):
            h = fmix32(h)
            a, b = self._a[:, None], self._b[:, None]
            # Shingles are grouped by document. Per fixed-size chunk of shingles, the (num_perm x
            # chunk) matrix of permuted values is min-reduced over each document's contiguous run;
            # reducing along the last, contiguous axis is ~3x faster than over rows.
            with np.errstate(over="ignore"):
                for lo in range(0, len(h), chunk):
                    hi = min(lo + chunk, len(h))
                    d = doc[lo:hi]
                    seg = np.flatnonzero(np.concatenate(([True], d[1:] != d[:-1])))
                    x = a * h[lo:hi]
                    x += b
                    mins = np.minimum.reduceat(x, seg, axis=1)
                    cols = d[seg]
                    sig[:, cols] = np.minimum(sig[:, cols], mins)
        return np.ascontiguousarray(sig.T)

    def signatures(self, texts: Sequence[str], *, workers: int = 1, batch: int = 1000) -> np.ndarray:
        """Signatures of raw texts (normalised here). `workers` > 1 uses that many processes."""
        chunks = [list(texts[i : i + batch]) for i in range(0, len(texts), batch)]
        if workers > 1 and len(chunks) > 1:
            with process_pool(workers) as pool:
                parts = list(pool.map(self._signatures_chunk, chunks))
        else:
            parts = [self._signatures_chunk(c) for c in chunks]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_perm), dtype=U32)

    def _signatures_chunk(self, texts: list[str]) -> np.ndarray:
        return self.signatures_of(WordTable(texts))

    # -- datasketch interop ----------------------------------------------------------------------
    def text_shingle_hashes(self, text: str) -> np.ndarray:
        """The 32-bit shingle hashes of one text: feed them to `datasketch.MinHash.update_batch`
        with an identity `hashfunc` and its hashvalues equal this class's signature."""
        return self.shingle_hashes(WordTable([text]))[0]

    def lean(self, signature: np.ndarray):
        """A `datasketch.LeanMinHash` carrying this signature (for `MinHashLSH`, `jaccard`, storage)."""
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.seed, hashvalues=signature, scheme="affine32")


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of signature rows (the share of equal values); works on (N, P) arrays."""
    return np.mean(a == b, axis=-1)


def band_keys(signatures: np.ndarray, bands: int = 14, rows: int = 8) -> np.ndarray:
    """One 64-bit key per band: (N, bands) uint64. Equal band values give equal keys; distinct ones
    collide with probability ~2^-64, so the keys stand in for datasketch's byte-string buckets."""
    n, p = signatures.shape
    if bands * rows > p:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations, signatures have {p}")
    s = signatures[:, : bands * rows].reshape(n, bands, rows).astype(U64)
    with np.errstate(over="ignore"):
        acc = np.zeros((n, bands), dtype=U64)
        for r in range(rows):
            acc += s[:, :, r] * MIX[r % len(MIX)] + U64(r)
            acc = (acc << U64(7)) | (acc >> U64(57))  # rotate, so the order of rows matters
        return fmix64(acc ^ np.arange(bands, dtype=U64))


def cluster_band_keys(keys: np.ndarray, edges_filter=None) -> np.ndarray:
    """Connected components of "shares a band key": the representative of each document, i.e. the
    smallest row index in its cluster (a singleton is its own representative).

    `edges_filter(i, j) -> bool mask` may veto candidate edges (e.g. an estimated-Jaccard check).
    Memory is O(N x bands): sort each band's keys, link neighbours with equal keys.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    src, dst = [], []
    for b in range(keys.shape[1]):
        order = np.argsort(keys[:, b], kind="stable")
        k = keys[order, b]
        same = np.flatnonzero(k[1:] == k[:-1])
        if len(same):
            # a run of equal keys becomes a chain; candidate pairs in a bucket all end up connected
            src.append(order[same])
            dst.append(order[same + 1])
    if not src:
        return np.arange(n, dtype=np.int64)
    i, j = np.concatenate(src), np.concatenate(dst)
    if edges_filter is not None:
        keep = edges_filter(i, j)
        i, j = i[keep], j[keep]
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n, dtype=np.int64))
    return first[labels]


def near_duplicate_clusters(
    texts: Sequence[str],
    *,
    num_perm: int = 112,
    bands: int = 14,
    rows: int = 8,
    ngram: int = 5,
    seed: int = 1,
    index: str = "bands",
) -> np.ndarray:
    """Cluster ids for a small in-memory list: result[i] is the index of the first text in i's cluster.

    `index="datasketch"` runs the same signatures through `datasketch.MinHashLSH` (LeanMinHash);
    `index="bands"` uses the compact sorted band keys. Both give the same clusters.
    """
    hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
    sigs = hasher.signatures(texts)
    if index == "bands":
        return cluster_band_keys(band_keys(sigs, bands, rows))
    if index != "datasketch":
        raise ValueError(f"index must be 'bands' or 'datasketch', not {index!r}")
    from datasketch import MinHashLSH

    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    leans = [hasher.lean(s) for s in sigs]
    with lsh.insertion_session() as session:
        for i, m in enumerate(leans):
            session.insert(i, m)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(leans):
        for j in lsh.query(m):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(len(texts))], dtype=np.int64)
