"""textbook.minhash: datasketch-identical signatures, honest Jaccard estimates, the same clusters both ways."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from textbook.minhash import (
    MinHasher,
    affine32_permutations,
    WordTable,
    band_keys,
    cluster_band_keys,
    estimate_jaccard,
    near_duplicate_clusters,
    normalise,
)

VOCAB = (
    "river stone light garden window music paper orbit planet signal number vector matrix lesson student "
    "teacher python function loop variable string integer memory process thread kernel galaxy comet "
    "Bär Straße naïve café 42 x_1 über"
).split()


def doc(rng: random.Random, words: int) -> str:
    lines = []
    while words > 0:
        k = min(words, rng.randint(5, 15))
        lines.append(" ".join(rng.choice(VOCAB) for _ in range(k)).capitalize() + rng.choice([".", "!", ",", "..."]))
        words -= k
    return "\n".join(lines)


def edit(rng: random.Random, text: str, rate: float) -> str:
    toks = text.split(" ")
    for i in rng.sample(range(len(toks)), max(1, round(rate * len(toks)))):
        toks[i] = rng.choice(VOCAB)
    return " ".join(toks)


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    def sh(t):
        w = re.findall(r"\w+", t.lower())
        return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else {" ".join(w)}

    sa, sb = sh(a), sh(b)
    return len(sa & sb) / len(sa | sb)


def test_normalise_lowercases_drops_punctuation_and_folds_whitespace():
    assert normalise("  Hello,   WORLD!\n\tIt's  x_1 -- Straße…  ") == "hello world it s x_1 straße"
    assert normalise("?!...") == ""


@pytest.mark.parametrize("num_perm,seed", [(112, 1), (128, 1), (1, 7), (256, 12345)])
def test_permutations_are_datasketchs_affine32(num_perm, seed):
    a, b = affine32_permutations(num_perm, seed)
    ref_a, ref_b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    assert a.dtype == b.dtype == np.uint32
    np.testing.assert_array_equal(a, ref_a)
    np.testing.assert_array_equal(b, ref_b)


@pytest.mark.parametrize("text", ["", "one", "two words here", "Der Bär isst gern Äpfel, sagt er.", None])
def test_signature_equals_datasketch_minhash_fed_the_same_shingle_hashes(text):
    rng = random.Random(3)
    text = doc(rng, 300) if text is None else text
    hasher = MinHasher()
    ours = hasher.signatures([text])[0]
    ref = MinHash(num_perm=112, seed=1, hashfunc=lambda h: h)
    ref.update_batch([int(h) for h in hasher.text_shingle_hashes(text)])
    assert ours.dtype == np.uint32
    np.testing.assert_array_equal(ours, ref.hashvalues)
    lean = hasher.lean(ours)
    assert isinstance(lean, LeanMinHash) and lean.jaccard(LeanMinHash(ref)) == 1.0


def test_shingles_are_the_word_5grams_without_collisions():
    rng = random.Random(4)
    text = doc(rng, 400)
    words = normalise(text).split()
    expected = {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}
    hashes = MinHasher().text_shingle_hashes(text)
    assert len(hashes) == len(words) - 4
    assert len(set(hashes.tolist())) == len(expected)


def test_a_document_hashes_the_same_alone_and_inside_a_batch():
    rng = random.Random(5)
    texts = [doc(rng, rng.randint(0, 200)) for _ in range(30)] + ["", "a b", "x"]
    hasher = MinHasher()
    together = hasher.signatures_of(WordTable(texts), chunk=97)
    alone = np.stack([hasher.signatures([t])[0] for t in texts])
    np.testing.assert_array_equal(together, alone)


def test_estimated_jaccard_tracks_the_true_jaccard():
    rng = random.Random(6)
    hasher = MinHasher()
    errors = []
    for rate in (0.0, 0.02, 0.05, 0.1, 0.2):
        for _ in range(8):
            a = doc(rng, 300)
            b = edit(rng, a, rate)
            s = hasher.signatures([a, b])
            errors.append(abs(float(estimate_jaccard(s[0], s[1])) - true_jaccard(a, b)))
    # 112 permutations: standard error <= 0.05; the mean absolute error must be well under it
    assert np.mean(errors) < 0.04 and max(errors) < 0.2


def test_band_keys_are_equal_exactly_when_the_band_is_equal():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, size=(50, 112), dtype=np.uint32)
    sigs[1] = sigs[0]
    sigs[2, :8] = sigs[0, :8]  # only band 0 equal
    keys = band_keys(sigs)
    assert keys.shape == (50, 14) and keys.dtype == np.uint64
    assert (keys[1] == keys[0]).all()
    assert keys[2, 0] == keys[0, 0] and (keys[2, 1:] != keys[0, 1:]).all()
    assert len(np.unique(keys[3:])) == 47 * 14
    with pytest.raises(ValueError):
        band_keys(sigs[:, :100])


def test_clusters_find_near_duplicates_and_agree_with_datasketch_lsh():
    rng = random.Random(7)
    base = [doc(rng, rng.randint(80, 300)) for _ in range(120)]
    texts = list(base)
    planted = []
    for i in range(0, 120, 4):
        planted.append((i, len(texts)))
        texts.append(edit(rng, base[i], 0.01))
    texts.append(base[5])  # an exact copy
    ours = near_duplicate_clusters(texts)
    ref = near_duplicate_clusters(texts, index="datasketch")
    np.testing.assert_array_equal(ours, ref)
    assert all(ours[a] == ours[b] == a for a, b in planted)
    assert ours[len(texts) - 1] == 5
    assert len(set(ours.tolist())) == 120  # unrelated random documents stay apart


def test_clusters_match_a_datasketch_index_built_from_lean_minhashes():
    rng = random.Random(8)
    base = [doc(rng, 120) for _ in range(40)]
    texts = base + [edit(rng, t, 0.05) for t in base]
    hasher = MinHasher()
    sigs = hasher.signatures(texts)
    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    for i, s in enumerate(sigs):
        lsh.insert(i, hasher.lean(s))
    pairs = {(min(i, j), max(i, j)) for i, s in enumerate(sigs) for j in lsh.query(hasher.lean(s)) if i != j}
    rep = cluster_band_keys(band_keys(sigs))
    assert all(rep[i] == rep[j] for i, j in pairs)
    # every non-singleton cluster is explained by datasketch's candidate pairs
    linked = {i for p in pairs for i in p}
    assert {i for i in range(len(texts)) if rep[i] != i or (rep == i).sum() > 1} == linked


def test_edge_filter_can_veto_candidate_pairs():
    texts = ["alpha beta gamma delta epsilon zeta", "alpha beta gamma delta epsilon zeta"]
    keys = band_keys(MinHasher().signatures(texts))
    assert cluster_band_keys(keys).tolist() == [0, 0]
    assert cluster_band_keys(keys, edges_filter=lambda i, j: np.zeros(len(i), bool)).tolist() == [0, 1]


def test_two_worker_processes_give_the_same_signatures():
    rng = random.Random(9)
    texts = [doc(rng, 100) for _ in range(50)]
    hasher = MinHasher(num_perm=64, ngram=3, seed=7)
    np.testing.assert_array_equal(hasher.signatures(texts, workers=2, batch=10), hasher.signatures(texts))
