"""Gopher's word n-gram repetition statistics for a whole batch at once (numpy, no loop per word).

For each document: the characters of its most frequent n-gram times its count (n = 2, 3, 4: "top
n-gram share"), and the characters of words covered by n-grams that already occurred earlier in
the document (n = 5..10: "duplicated n-gram share"), as in Rae et al. 2021 / datatrove's
GopherRepetitionFilter. Words are the normalised words (`textbook.minhash.WordTable`).

Why it is cheap: an n-gram can only repeat where its (n-1)-gram prefix repeats, so each n after the
first is computed only at the positions whose shorter n-gram occurs twice or more in the document.
"""

from __future__ import annotations

import numpy as np

from textbook.minhash import U64, WordTable, fmix64


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each key: its group number and whether it is the group's first occurrence; group sizes."""
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    new = np.empty(len(ks), dtype=bool)
    new[:1] = True
    np.not_equal(ks[1:], ks[:-1], out=new[1:])
    gid_sorted = np.cumsum(new) - 1
    gid = np.empty(len(keys), dtype=np.int64)
    gid[order] = gid_sorted
    first = np.zeros(len(keys), dtype=bool)
    first[order[new]] = True  # stable sort: the first of each run is the earliest occurrence
    return gid, first, np.bincount(gid_sorted)


def _top_chars(words: WordTable, n: int, starts: np.ndarray, doc: np.ndarray, count: np.ndarray,
               prefix_len: np.ndarray) -> np.ndarray:
    """len(most common n-gram) x its count per document; ties go to the n-gram seen first, and a
    document without a repeated n-gram scores its first n-gram once (datatrove's Counter.most_common)."""
    n_docs = len(words.counts)
    top = np.zeros(n_docs)
    has = words.counts >= n
    s0 = words.starts[has]
    top[has] = prefix_len[s0 + n] - prefix_len[s0] + (n - 1)
    best = np.zeros(n_docs, dtype=np.int64)
    np.maximum.at(best, doc, count)
    mask = (count > 1) & (count == best[doc])
    docs, first = np.unique(doc[mask], return_index=True)  # starts are ascending: first = earliest
    pos = starts[mask][first]
    top[docs] = best[docs] * (prefix_len[pos + n] - prefix_len[pos] + (n - 1))
    return top


def ngram_repetition(words: WordTable, top_ns: tuple[int, ...], dup_ns: tuple[int, ...]) -> dict[int, np.ndarray]:
    """{n: per-document characters} for every n in top_ns (top n-gram chars x count, with spaces) and
    dup_ns (chars of words covered by repeated n-grams, without spaces); float64 arrays."""
    n_docs = len(words.counts)
    out: dict[int, np.ndarray] = {}
    wanted = sorted(set(top_ns) | set(dup_ns))
    if not wanted or not len(words.hashes):
        return {n: np.zeros(n_docs) for n in wanted}
    doc_of_word = words.doc_of_word()
    prefix_len = np.concatenate(([0], np.cumsum(words.lengths)))
    doc_salt = fmix64(np.arange(n_docs, dtype=U64) + U64(0x51ED27))
    candidates = words.ngram_starts(wanted[0])
    repeated = np.ones(len(candidates), dtype=bool)
    for n in range(wanted[0], wanted[-1] + 1):
        if n > wanted[0]:
            # only positions whose (n-1)-gram repeats can start a repeated n-gram
            candidates = candidates[repeated]
            end_ok = candidates + n <= (words.starts + words.counts)[doc_of_word[candidates]]
            candidates = candidates[end_ok]
        h, doc = words.ngram_hashes(n, starts=candidates)
        gid, first, sizes = _groups(h ^ doc_salt[doc])
        repeated = sizes[gid] > 1
        if n in top_ns:
            out[n] = _top_chars(words, n, candidates, doc, sizes[gid], prefix_len)
        if n in dup_ns:
            rep = candidates[~first]  # later occurrences of an n-gram seen before in the document
            cover = np.bincount(rep, minlength=len(words.hashes) + n) - np.bincount(rep + n, minlength=len(words.hashes) + n)
            covered = np.cumsum(cover)[: len(words.hashes)] > 0
            out[n] = np.bincount(doc_of_word, weights=words.lengths * covered, minlength=n_docs)
        if n not in out and n in wanted:
            out[n] = np.zeros(n_docs)
    return out
