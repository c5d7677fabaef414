"""The educational-value classifier: a linear head over hashed n-grams (or embeddings), 0-5 scores.

Saved as a directory: `model.json` (feature configuration, label scheme, head, metrics, provenance)
and `weights.npz` (plain float arrays, read with allow_pickle=False). Nothing is unpickled, so a
downloaded model cannot run code; a file that does not match its own description is rejected.

Label schemes: `edu5` (teacher scores 0-5, FineWeb-Edu: a regression head, clipped to 0-5) and
`binary` (human or source labels: a logistic head; edu_score = 5 x probability, so threshold 3
means p >= 0.6).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from textbook.errors import TextbookError
from textbook.filter.features import FEATURES_VERSION, FeatureConfig, featurizer
from textbook.filter.vectors import WordVectors
from textbook.minhash import WordTable
from textbook.shards import atomic_write_bytes, atomic_write_json

FORMAT = "textbook-edu-classifier/1"
SCHEMES = ("binary", "edu5")


class EduClassifier:
    def __init__(self, features: FeatureConfig, scheme: str, sparse_w: np.ndarray | None, dense_w: np.ndarray,
                 dense_mean: np.ndarray, dense_std: np.ndarray, bias: float, meta: dict[str, Any] | None = None,
                 vectors: WordVectors | None = None):
        if scheme not in SCHEMES:
            raise TextbookError(f"unknown label scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
        self.features, self.scheme = features, scheme
        self.sparse_w = None if sparse_w is None else np.asarray(sparse_w, dtype=np.float32)
        self.dense_w = np.asarray(dense_w, dtype=np.float32)
        self.dense_mean = np.asarray(dense_mean, dtype=np.float32)
        self.dense_std = np.asarray(dense_std, dtype=np.float32)
        self.bias = float(bias)
        self.meta = dict(meta or {})
        self.vectors = vectors
        self.calibration: tuple[np.ndarray, np.ndarray] | None = None  # edu5: (head output, score) knots
        self._featurizer = None
        self._w_ext: np.ndarray | None = None

    @property
    def featurizer(self):
        if self._featurizer is None:
            self._featurizer = featurizer(self.features, self.vectors)
        return self._featurizer

    def decision(self, texts: Sequence[str], words: WordTable | None = None) -> np.ndarray:
        """The linear head's raw output (log-odds for binary, the score for edu5)."""
        z = np.full(len(texts), self.bias, dtype=np.float64)
        if self.features.kind != "embeddings":
            words = words if words is not None else WordTable(texts)
            if self.sparse_w is not None:
                if self._w_ext is None:  # one extra zero weight: the bucket of "not an n-gram"
                    self._w_ext = np.append(self.sparse_w, np.float32(0))
                z += self.featurizer.dot(self._w_ext, texts, words)
            dense = self.featurizer.dense(texts, words)
        else:
            _, dense = self.featurizer.transform(texts)
        if dense.shape[1]:
            z += ((dense - self.dense_mean) / self.dense_std * self.features.style_scale) @ self.dense_w
        return z

    def score(self, texts: Sequence[str], words: WordTable | None = None) -> np.ndarray:
        """edu_score in [0, 5] per text (float32)."""
        if not len(texts):
            return np.zeros(0, dtype=np.float32)
        z = self.decision(texts, words)
        if self.scheme == "binary":
            return (5.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return self.calibrate(z)

    def calibrate(self, z: np.ndarray) -> np.ndarray:
        """edu5: the head's output as a 0-5 score (through the calibration knots when the model has them)."""
        if self.calibration is None:
            return np.clip(z, 0.0, 5.0).astype(np.float32)
        xs, ys = self.calibration
        return np.interp(z, xs, ys).astype(np.float32)

    # -- files -------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"dense_w": self.dense_w, "dense_mean": self.dense_mean, "dense_std": self.dense_std,
                  "bias": np.array([self.bias], dtype=np.float64)}
        if self.sparse_w is not None:
            arrays["sparse_w"] = self.sparse_w
        if self.vectors is not None:  # float16 halves the file; the head was fitted on these rounded values
            arrays["vec_keys"], arrays["vec_table"] = self.vectors.keys, self.vectors.table.astype(np.float16)
        if self.calibration is not None:
            arrays["cal_x"], arrays["cal_y"] = self.calibration
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        atomic_write_bytes(directory / "weights.npz", data)
        meta = {"format": FORMAT, "features_version": FEATURES_VERSION, "scheme": self.scheme,
                "features": _plain(dataclasses.asdict(self.features)),
                "weights_sha256": hashlib.sha256(data).hexdigest(), **self.meta}
        atomic_write_json(directory / "model.json", meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "EduClassifier":
        directory = Path(directory)
        hint = "retrain it with `textbook filter train`, or pass another --classifier"
        if not (directory / "model.json").is_file() or not (directory / "weights.npz").is_file():
            raise TextbookError(f"{directory} is not a classifier directory (needs model.json and weights.npz): {hint}")
        try:
            meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
            raw = (directory / "weights.npz").read_bytes()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TextbookError(f"classifier {directory} is unreadable ({exc}): {hint}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise TextbookError(f"classifier {directory}/model.json is not a {FORMAT} model: {hint}")
        if meta.get("features_version") != FEATURES_VERSION:
            raise TextbookError(f"classifier {directory} was trained with features version {meta.get('features_version')}, "
                                f"this textbook computes version {FEATURES_VERSION}: {hint}")
        if meta.get("weights_sha256") != hashlib.sha256(raw).hexdigest():
            raise TextbookError(f"classifier {directory}/weights.npz does not match model.json (corrupt or replaced): {hint}")
        try:
            import io

            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            fields = {f.name for f in dataclasses.fields(FeatureConfig)}
            feats = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["features"].items() if k in fields}
            features = FeatureConfig(**feats)
            vectors = (WordVectors(arrays["vec_keys"], arrays["vec_table"].astype(np.float32))
                       if "vec_keys" in arrays else None)
            model = cls(features, meta["scheme"], arrays.get("sparse_w"), arrays["dense_w"], arrays["dense_mean"],
                        arrays["dense_std"], float(arrays["bias"][0]),
                        {k: v for k, v in meta.items() if k not in ("format", "features_version", "scheme", "features", "weights_sha256")},
                        vectors)
            if "cal_x" in arrays:
                model.calibration = (arrays["cal_x"], arrays["cal_y"])
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise TextbookError(f"classifier {directory} is unreadable ({exc}): {hint}") from None
        if features.kind in ("static", "hashed+static") and vectors is None:
            raise TextbookError(f"classifier {directory} uses {features.kind} features but holds no word vectors: {hint}")
        if model.sparse_w is not None and features.kind != "embeddings" and len(model.sparse_w) != 1 << features.bits:
            raise TextbookError(f"classifier {directory}: {len(model.sparse_w)} weights for {features.bits}-bit hashing: {hint}")
        return model


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def bundled_classifier_dir() -> Path:
    from textbook.bundled import data_dir

    return data_dir("filters") / "classifier"


BUNDLED = {"binary": "classifier", "edu5": "edu5"}  # name -> directory under filters/


def load_classifier(path: str | Path | None) -> EduClassifier:
    """The classifier at `path`, a bundled one by name (`binary`, the default; `edu5`), or the default."""
    if path and str(path) in BUNDLED and not Path(path).exists():
        from textbook.bundled import data_dir

        return EduClassifier.load(data_dir("filters") / BUNDLED[str(path)])
    return EduClassifier.load(Path(path) if path else bundled_classifier_dir())
