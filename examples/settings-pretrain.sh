#!/usr/bin/env bash
# The first step of the Mu recipe for the settings agent: pretrain mu-small on real English text, so that the
# fine-tune (examples/settings-demo.sh with PRETRAINED=OUT/run) starts from a model that knows words the
# settings catalogue never uses. Makes, in OUT:
#   data/settings   the settings rows (the same command and seed as the demo: the tokenizer learns their calls)
#   corpus          WordNet glosses + Debian documentation as Arrow shards (examples/pretrain_corpus.py)
#   tokenizer.json  one byte-level BPE for both (whitespace pre-tokenization: a call stays ~4 tokens)
#   run             the pretrained checkpoint (prefix -> continuation on the corpus)
#
#   bash examples/settings-pretrain.sh OUT                       # 30 minutes of pretraining on a 2-core CPU
#   MINUTES=120 bash examples/settings-pretrain.sh OUT           # longer is better; on a GPU add DEVICE=cuda
#   WORDNET=x/usr/share/wordnet bash examples/settings-pretrain.sh OUT   # WordNet unpacked without root
#   N=2000 PRESET=mu-tiny MINUTES=0.2 bash examples/settings-pretrain.sh OUT   # a smoke run (tests/test_examples.py)
#   EMBEDDINGS=none bash examples/settings-pretrain.sh OUT       # without all-MiniLM-L6-v2's word vectors
#
# WordNet comes from the Debian package wordnet-base (apt-get install wordnet-base; or, without root,
# apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb x).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bash examples/settings-pretrain.sh OUT   (a directory for the corpus, the tokenizer and the run)" >&2
  exit 2
fi
OUT=$1
MINUTES=${MINUTES:-30}
N=${N:-200000}
PRESET=${PRESET:-mu-small}
WORDNET=${WORDNET:-/usr/share/wordnet}
DEVICE=${DEVICE:-cpu}
EMBEDDINGS=${EMBEDDINGS:-minilm}  # the embedding's word rows start as all-MiniLM-L6-v2's vectors
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"

textbook gen settings --offline --n "$N" --out "$OUT/data"
if [ ! -f "$OUT/corpus/manifest.json" ]; then
  python "$HERE/pretrain_corpus.py" "$OUT/corpus" --wordnet "$WORDNET"
fi
if [ ! -f "$OUT/tokenizer.json" ]; then
  textbook tokenizer train "$OUT/data/settings" "$OUT/corpus" --pretokenize whitespace --out "$OUT/tokenizer.json"
fi
embeddings=()
if [ "$EMBEDDINGS" != none ]; then
  embeddings=(--embeddings-from "$EMBEDDINGS")
fi
textbook train --preset "$PRESET" --task pretrain --data "$OUT/corpus" --tokenizer "$OUT/tokenizer.json" \
    --out "$OUT/run" "${embeddings[@]}" --batch-size 64 --lr 4e-3 --warmup-steps 20 --decay-fraction 0.3 --max-steps 1000000 \
    --max-minutes "$MINUTES" --precision bf16 --device "$DEVICE"
echo "pretrained checkpoint: $OUT/run   (PRETRAINED=$OUT/run bash examples/settings-demo.sh DEMO_OUT)"
