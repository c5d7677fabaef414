"""Build the settings agent's pretraining corpus: real English text that installs offline, as Arrow shards
with a `text` column (`textbook train --task pretrain --data DIR`).

    python examples/pretrain_corpus.py OUT [--wordnet /usr/share/wordnet] [--pool tests/data/edu/pool.jsonl]

What goes in, and why (Mu pretrains on high-quality educational text before it learns a task):
- WordNet 3.0 glosses and example sentences (Debian `wordnet-base`, Princeton's WordNet 3.0 licence: use,
  copy, modify and distribute with the notice kept): a definition of ~117,000 senses of everyday English,
  the world knowledge a model trained only on settings rows lacks ("squint: look with the eyes partly
  closed"). Install with `apt-get install wordnet-base`, or without root:
  `apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb x` and pass `--wordnet x/usr/share/wordnet`.
- The 1,446 documentation texts of tests/data/edu/pool.jsonl (manuals, tutorials, handbooks, man pages and
  FAQs from 86 Debian packages; each text's package, version and licence in tests/data/edu/SOURCES.md): how
  people write about computers, screens, keyboards, networks and sound.
Each WordNet document is 40 consecutive senses of one part of speech ("squint, squinch (verb): cross one's
eyes as if in an effort to focus on something. \"The child squinted at the sun.\""), so a pretraining window
reads definitions of related words.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from textbook.shards import ShardWriter

POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
PER_DOC = 40
SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string())])


def parse_sense(line: str) -> tuple[list[str], str, str, list[str]] | None:
    """'00211642 30 v 01 tumble 3 ... | put clothes in ...; "Wash in warm water"' ->
    (words, part of speech, definition, example sentences); None for a licence header line."""
    if line.startswith("  ") or " | " not in line:  # the licence header lines start with two spaces
        return None
    head, gloss = line.split(" | ", 1)
    fields = head.split()
    count = int(fields[3], 16)
    words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
    words = list(dict.fromkeys(w.split("(")[0] for w in words))  # adjectives carry markers: "galore(ip)"
    parts = [p.strip() for p in gloss.strip().split("; ")]
    definition = "; ".join(p for p in parts if not p.startswith('"'))
    examples = [p.rstrip(";") for p in parts if p.startswith('"')]
    return words, POS[fields[2]], definition, examples


def sense(line: str) -> str | None:
    """One sense as one readable line: 'tumble (verb): put clothes in .... "Wash in warm water"'."""
    parsed = parse_sense(line)
    if parsed is None:
        return None
    words, pos, definition, examples = parsed
    text = f"{', '.join(words)} ({pos}): {definition}."
    return f"{text} {' '.join(examples)}" if examples else text


def wordnet(directory: Path) -> Iterator[dict]:
    for name in FILES:
        path = directory / name
        if not path.is_file():
            sys.exit(f"error: no {path}: install wordnet-base (apt-get install wordnet-base) or pass --wordnet DIR")
        lines = [s for s in map(sense, path.read_text(encoding="utf-8", errors="replace").splitlines()) if s]
        for i in range(0, len(lines), PER_DOC):
            yield {"id": f"wordnet-{name[5:]}-{i // PER_DOC}", "source": "wordnet-base 3.0 (WordNet 3.0 licence)",
                   "text": "\n".join(lines[i : i + PER_DOC])}


def pool(path: Path) -> Iterator[dict]:
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        yield {"id": doc["id"], "source": f"{doc['source']} ({doc['licence']})", "text": doc["text"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--pool", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/edu/pool.jsonl")
    args = ap.parse_args()
    rows = chars = 0
    with ShardWriter(args.out, SCHEMA, meta={"sources": ["wordnet-base", str(args.pool.name)]}) as writer:
        for doc in (*wordnet(args.wordnet), *pool(args.pool)):
            writer.write(doc)
            rows += 1
            chars += len(doc["text"])
    print(f"wrote {rows:,} documents ({chars / 1e6:.1f} M characters) to {args.out}")


if __name__ == "__main__":
    main()
