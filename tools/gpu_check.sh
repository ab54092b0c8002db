#!/bin/bash
# The GPU checks in one call, for a session that is lent a GPU machine (none has run them yet: docs/performance.md,
# "GPU"). Two steps:
#
#   bash tools/gpu_check.sh prepare     # here, beside ../shared: copies the bench texts into .gpu/ (git-ignored)
#   bash tools/gpu_check.sh run         # there (the device tool's `run`, carrying .gpu), ~5-8 minutes
#
# `run` needs only what such a machine's image holds (python3 with torch, transformers, tokenizers, onnxruntime,
# pytest): textclass runs from src/ (no install), the bench's DistilBERT-shape model is built there with the bundled
# model's tokenizer, and the bundled model stands in for MiniLM's vocabulary in the tests. It prints the machine, the
# GPU tests (every family against transformers, GPU training), bench/gpu.py on short and long texts and the bundled
# model, then the CPU-pinned suite's model tests with the GPU present; everything also goes to $OUT/log.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
    shared=${SHARED:-../shared}
    mkdir -p .gpu && cp "$shared/data/sst5/train.tsv" .gpu/sst5-train.tsv && cp "$shared/data/sst2/dev.tsv" .gpu/dev.tsv
    du -sh .gpu && exit 0
fi
[ "${1:-}" = run ] || { echo "usage: tools/gpu_check.sh prepare|run" >&2; exit 2; }
export PYTHONPATH=$PWD/src:$PWD/tests PYTHONUNBUFFERED=1 TEXTCLASS_MINILM=$PWD/src/textclass/bundled/sentiment-en
# Nothing can be fetched there: pip fails at once (the real-MPNet tests then skip) instead of retrying for minutes.
export TEXTCLASS_SST2=$PWD/.gpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_NO_INDEX=1
quiet() { grep -v "Loading weights\|Writing model shards\|Warning\|warn\|^$"; }
{
echo "== machine"; date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
grep -m1 "model name" /proc/cpuinfo; nproc
python3 -c "import torch, transformers, onnxruntime, tokenizers; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'onnxruntime', onnxruntime.__version__, 'tokenizers', tokenizers.__version__)"
echo "== bench models"; timeout 90 python3 bench/make_models.py /tmp/models 2>&1 | quiet | tail -3
echo "== GPU tests"; timeout 150 python3 -m pytest -q -p no:cacheprovider -s -k gpu tests/models tests/train/test_train.py 2>&1 | quiet | tail -30
for args in "--model /tmp/models/distilbert-sst2-shape --limit 8000" \
            "--model /tmp/models/distilbert-sst2-shape --long --limit 0 --pipeline-b1 200" \
            "--model src/textclass/bundled/sentiment-en --limit 8000"; do
    echo "== bench/gpu.py $args"; timeout 110 python3 bench/gpu.py --texts .gpu/sst5-train.tsv $args 2>&1 | quiet | tail -20
done
# (The MiniLM hidden-states test wants MiniLM's bare encoder; the bundled model standing in for it has a head.)
echo "== model tests, CPU-pinned, with the GPU present"; timeout 100 python3 -m pytest -q -p no:cacheprovider tests/models \
    --deselect tests/models/test_parity.py::test_minilm_hidden_states_match_transformers 2>&1 | quiet | tail -15
date
} 2>&1 | tee "${OUT:-/tmp}/log"
