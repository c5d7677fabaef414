"""`textbook filter train`: fit the educational-value classifier on labelled texts and measure it.

Labels: teacher scores 0-5 (`edu_score`, from `textbook filter annotate`: a regression head, as
FineWeb-Edu trained a linear head on its Llama-3 scores) or binary labels (`label` 0/1: a logistic
head). Metrics are cross-validated (stratified k-fold): binary F1 at the threshold, confusion
matrix, ROC AUC, and for 0-5 labels MAE and Spearman correlation.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from textbook.errors import TextbookError
from textbook.filter.classifier import EduClassifier
from textbook.filter.config import ClassifierTrainConfig
from textbook.filter.features import FeatureConfig, featurizer
from textbook.filter.vectors import WordVectors, distill
from textbook.filter.inputs import expand, open_source
from textbook.minhash import WordTable
from textbook.report import Report

LABEL_COLUMNS = ("edu_score", "score", "label")


def load_labels(paths: Sequence[str], config: ClassifierTrainConfig) -> tuple[list[str], np.ndarray, str]:
    """Texts, float labels and the label scheme from Parquet/JSONL/Arrow files or shard directories."""
    files = expand(list(paths))
    texts: list[str] = []
    labels: list[float] = []
    column = config.label_column
    for path in files:
        if path.name == "manifest.json" or path.name.startswith("report"):
            continue
        source = open_source(path)
        names = source.schema.names
        col = column or next((c for c in LABEL_COLUMNS if c in names), None)
        if col is None or col not in names or config.text_column not in names:
            raise TextbookError(
                f"{path} needs a {config.text_column!r} column and a label column ({', '.join(LABEL_COLUMNS)}); "
                f"it has: {', '.join(names)}. Use --text-column / --label-column"
            )
        column = col
        for batch in source.batches(4096, [config.text_column, col]):
            for text, label in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                if isinstance(text, str) and text.strip() and label is not None:
                    texts.append(text)
                    labels.append(float(label))
    if len(texts) < 10:
        raise TextbookError(f"only {len(texts)} labelled rows in {', '.join(paths)}: annotate more (--n) before training")
    y = np.asarray(labels, dtype=np.float64)
    scheme = "binary" if set(np.unique(y)) <= {0.0, 1.0} and column != "edu_score" else "edu5"
    if scheme == "edu5" and (y.min() < 0 or y.max() > 5):
        raise TextbookError(f"labels in {column!r} run from {y.min()} to {y.max()}: expected 0-5 scores or 0/1 labels")
    if len(np.unique(y >= (0.5 if scheme == "binary" else config.threshold))) < 2:
        raise TextbookError("every label falls on the same side of the threshold: the classifier needs both kinds")
    return texts, y, scheme


def _matrix(texts: Sequence[str], features: FeatureConfig, vectors: WordVectors | None = None):
    words = WordTable(texts) if features.kind != "embeddings" else None
    sparse, dense = featurizer(features, vectors).transform(texts, words)
    return sparse, dense


def word_vectors(features: FeatureConfig) -> WordVectors | None:
    """The distilled word vectors the static kinds need (made from `embeddings_model`), else None."""
    if features.kind not in ("static", "hashed+static"):
        return None
    if not features.embeddings_model:
        raise TextbookError(f"--features {features.kind} needs --embeddings-model DIR (a local sentence-transformers model)")
    return distill(features.embeddings_model, features.vector_dims)


def fit(texts: Sequence[str], y: np.ndarray, scheme: str, features: FeatureConfig, config: ClassifierTrainConfig,
        *, cache=None, sample_weight: np.ndarray | None = None, vectors: WordVectors | None = None) -> EduClassifier:
    """Fit a linear head. `cache` = precomputed (sparse, dense) for these texts."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression, Ridge

    if scheme == "binary" and len(np.unique(y >= 0.5)) < 2:
        raise TextbookError("the labels hold only one class: the classifier needs examples of both")
    sparse, dense = cache if cache is not None else _matrix(texts, features, vectors)
    mean = dense.mean(axis=0) if dense.shape[1] else np.zeros(0, np.float32)
    std = dense.std(axis=0) + 1e-6 if dense.shape[1] else np.zeros(0, np.float32)
    parts = [sparse] if sparse is not None else []
    scaled = (dense - mean) / std * features.style_scale
    parts.append(csr_matrix(scaled) if dense.shape[1] else csr_matrix((len(texts), 0)))
    x = hstack(parts).tocsr()
    x.sum_duplicates()
    if scheme == "binary":
        head = LogisticRegression(C=config.C, max_iter=5000, solver="liblinear", random_state=config.seed)
        head.fit(x, (y >= 0.5).astype(int), sample_weight=sample_weight)
        coef, bias = head.coef_[0], float(head.intercept_[0])
    else:
        head = Ridge(alpha=1.0 / config.C, random_state=config.seed)
        head.fit(x, y, sample_weight=sample_weight)
        coef, bias = np.asarray(head.coef_).ravel(), float(head.intercept_)
    width = sparse.shape[1] if sparse is not None else 0
    return EduClassifier(features, scheme, coef[:width] if sparse is not None else None, coef[width:], mean, std, bias,
                         vectors=vectors)


def calibrate(model: EduClassifier, y: np.ndarray, oof: np.ndarray) -> np.ndarray:
    """edu5: a ridge head shrinks its output towards the mean, so few documents reach 3 even when the ranking
    is right (a conditional mean stays below 3 for most true 3s too). The head's output is mapped so that its
    distribution matches the labels': the out-of-fold output above which the share of documents equals the
    share labelled k or more becomes k (piecewise linear between, the ends 0 and 5). Ranks are kept, and
    `edu_score >= k` keeps as many documents as the rubric puts at k or above. Returns the calibrated
    out-of-fold scores."""
    top = 5
    xs = [float(oof.min())]
    for k in range(1, top):
        xs.append(float(np.quantile(oof, float(np.mean(y < k)))))
    xs.append(float(oof.max()))
    xs = np.maximum.accumulate(np.array(xs)) + np.arange(top + 1) * 1e-9  # strictly increasing for np.interp
    model.calibration = (xs, np.arange(top + 1, dtype=np.float64))
    return model.calibrate(oof)


def metrics(y: np.ndarray, score: np.ndarray, scheme: str, threshold: float) -> dict[str, Any]:
    """Binary F1 at the threshold, confusion matrix, AUC; MAE and Spearman for 0-5 labels."""
    from scipy.stats import spearmanr
    from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

    truth = (y >= 0.5) if scheme == "binary" else (y >= threshold)
    pred = score >= threshold
    out: dict[str, Any] = {
        "n": int(len(y)),
        "positives": int(truth.sum()),
        "f1_at_threshold": round(float(f1_score(truth, pred, zero_division=0)), 4),
        "accuracy_at_threshold": round(float((truth == pred).mean()), 4),
        "confusion_matrix": confusion_matrix(truth, pred, labels=[False, True]).tolist(),
        "roc_auc": round(float(roc_auc_score(truth, score)), 4) if 0 < truth.sum() < len(truth) else None,
    }
    if scheme == "edu5":
        out["mae"] = round(float(np.abs(y - score).mean()), 4)
        out["spearman"] = round(float(spearmanr(y, score).statistic), 4)
    return out


def cross_validate(texts: Sequence[str], y: np.ndarray, scheme: str, features: FeatureConfig,
                   config: ClassifierTrainConfig, sample_weight: np.ndarray | None = None,
                   vectors: WordVectors | None = None, oof_out: list | None = None) -> dict[str, Any]:
    """Out-of-fold scores for every text (appended to `oof_out` when given), then the metrics over all of them."""
    from sklearn.model_selection import StratifiedKFold

    strata = (y >= 0.5) if scheme == "binary" else np.round(y).astype(int)
    counts = np.bincount(strata.astype(int))
    folds = min(config.folds, int(counts[counts > 0].min()))
    if folds < 2:
        strata = (y >= 0.5) if scheme == "binary" else (y >= config.threshold)
        folds = min(config.folds, int(np.bincount(strata.astype(int)).min()))
    if folds < 2:
        raise TextbookError("too few labels of one kind for cross-validation: annotate more documents")
    sparse, dense = _matrix(texts, features, vectors)
    oof = np.zeros(len(texts), dtype=np.float64)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=config.seed).split(texts, strata):
        cache = (sparse[train_idx] if sparse is not None else None, dense[train_idx])
        model = fit([texts[i] for i in train_idx], y[train_idx], scheme, features, config, cache=cache,
                    sample_weight=None if sample_weight is None else sample_weight[train_idx], vectors=vectors)
        oof[test_idx] = model.decision([texts[i] for i in test_idx]) if scheme == "edu5" else model.score(
            [texts[i] for i in test_idx])
    if oof_out is not None:
        oof_out.append(oof)
    score = np.clip(oof, 0, 5) if scheme == "edu5" else oof
    return {"folds": folds, **metrics(y, score, scheme, config.threshold)}


def train(paths: Sequence[str], out: str | Path, *, features: FeatureConfig | None = None,
          config: ClassifierTrainConfig | None = None) -> Report:
    """Load labels, cross-validate, fit on everything, save to `out`; returns the metrics.
    `features` (all of FeatureConfig) overrides the kind and model named in `config`."""
    config = config or ClassifierTrainConfig()
    features = features or config.feature_config()
    t0 = time.perf_counter()
    texts, y, scheme = load_labels(paths, config)
    vectors = word_vectors(features)
    oof: list = []
    cv = cross_validate(texts, y, scheme, features, config, vectors=vectors, oof_out=oof)
    model = fit(texts, y, scheme, features, config, vectors=vectors)
    if scheme == "edu5":
        calibrated = calibrate(model, y, oof[0])
        cv = {**metrics(y, calibrated, scheme, config.threshold), "folds": cv["folds"],
              "note": "edu5: scores calibrated (label-distribution matching) on these same out-of-fold scores", "uncalibrated": cv}
    model.meta.update({
        "trained_on": [str(p) for p in paths], "rows": len(texts), "threshold": config.threshold,
        "cross_validation": cv, "train_config": dataclasses.asdict(config),
    })
    model.save(out)
    facts = {"scheme": scheme, "rows": len(texts), "cross_validation": cv, "out": str(out),
             "seconds": round(time.perf_counter() - t0, 1)}
    return Report(facts, summary_lines(facts, config.threshold))


def summary_lines(result: dict[str, Any], threshold: float) -> list[str]:
    """What `textbook filter train` prints: the cross-validated metrics and the confusion matrix."""
    cv = result["cross_validation"]
    (tn, fp), (fn, tp) = cv["confusion_matrix"]
    lines = [f"{result['rows']:,} labelled documents ({result['scheme']} labels), {cv['folds']}-fold cross-validation:",
             f"  F1 at threshold {threshold:g}: {cv['f1_at_threshold']}   accuracy {cv['accuracy_at_threshold']}   ROC AUC {cv['roc_auc']}"]
    if "mae" in cv:
        lines.append(f"  MAE {cv['mae']}   Spearman {cv['spearman']}")
    lines += ["  confusion matrix (rows: truth, columns: predicted)", "            below  above",
              f"    below  {tn:>6} {fp:>6}", f"    above  {fn:>6} {tp:>6}", f"model: {result['out']}"]
    return lines
