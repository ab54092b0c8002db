#!/usr/bin/env bash
# Cold start: a new process from `textclass classify "..."` to the printed label, with the default (ONNX fp32) engine.
#   bash bench/coldstart.sh [MODEL_DIR] [RUNS]      (default: the bundled model, 10 runs)
# Uses hyperfine when installed (apt-get install -y hyperfine), else a loop of `date +%s.%N`.
# Also times the floor (python importing onnxruntime + tokenizers and running one session) for comparison.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$ROOT/src/textclass/bundled/sentiment-en}"
RUNS="${2:-10}"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
CLASSIFY="$PY -m textclass classify 'a gorgeous, witty, seductive movie.' --model $MODEL --format json"
FLOOR="$PY -c 'import numpy, onnxruntime as o, tokenizers; s = o.InferenceSession(\"$MODEL/model.fp32.onnx\", providers=[\"CPUExecutionProvider\"])'"
eval "$CLASSIFY" >/dev/null  # builds and caches the ONNX artefact if needed (not timed)
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 2 --runs "$RUNS" --export-markdown /dev/stdout -n "textclass classify" "$CLASSIFY" -n "floor: import onnxruntime+tokenizers, load session" "$FLOOR"
else
  for name in CLASSIFY FLOOR; do
    times=()
    for _ in $(seq "$RUNS"); do
      start=$(date +%s.%N); eval "${!name}" >/dev/null; end=$(date +%s.%N)
      times+=("$(echo "$end - $start" | bc)")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v n="$name" '{a[NR]=$1} END {printf "| %s | median %.3f s | min %.3f s | max %.3f s |\n", n, a[int((NR+1)/2)], a[1], a[NR]}'
  done
fi
