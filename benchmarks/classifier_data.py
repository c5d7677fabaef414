"""Build the classifier's labelled data (tests/data/labels/) from the real texts in ../shared/data.

Labels and how each was made:
  dclm-human       DCLM's human binary quality labels (mlfoundations/dclm data/majority_data.jsonl, MIT):
                   label 1 = high quality, as the annotators judged it.
  web-educational  label 1: sections of the Python tutorial, Software Carpentry, the Rust Book and
                   OpenStax Astronomy (shared/data/web/educational-sample.jsonl). Source label, not a judgement.
  web-cc           label 0: Common Crawl / news / shop pages of mixed quality (shared/data/web/cc-sample.jsonl).
                   Source label: some of these pages are fine text, so this label is noisy by design.
Split: per source, a seeded 30% is held out (stratified by label) and never used for training or model
selection; the model card reports metrics on it.

Usage: python benchmarks/classifier_data.py [--shared ../shared/data] [--out tests/data/labels]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "labels"))
    ap.add_argument("--heldout", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=13)
    a = ap.parse_args()
    shared = Path(a.shared)
    rows = []
    for i, line in enumerate(open(shared / "quality" / "dclm-human-labels.jsonl", encoding="utf-8")):
        r = json.loads(line)
        rows.append({"id": f"dclm-{i:04d}", "source": "dclm-human", "label": int(r["label"]), "text": r["text"]})
    for name, source, label in (("educational-sample.jsonl", "web-educational", 1), ("cc-sample.jsonl", "web-cc", 0)):
        for line in open(shared / "web" / name, encoding="utf-8"):
            r = json.loads(line)
            rows.append({"id": r["id"], "source": source, "label": label, "text": r["text"],
                         "lang": r.get("lang"), "license": r.get("license")})
    rng = random.Random(a.seed)
    train, held = [], []
    for key in sorted({(r["source"], r["label"]) for r in rows}):
        group = [r for r in rows if (r["source"], r["label"]) == key]
        rng.shuffle(group)
        k = round(a.heldout * len(group))
        held += group[:k]
        train += group[k:]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.jsonl", train), ("heldout.jsonl", held)):
        with open(out / name, "w", encoding="utf-8") as fh:
            for r in part:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"train {len(train)}, held out {len(held)} -> {out}")


if __name__ == "__main__":
    main()
