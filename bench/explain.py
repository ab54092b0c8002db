"""Explanations: are they faithful (AOPC deletion test), and what does one cost?

python bench/explain.py [--sentences 100] [--model FOLDER]

For SST-2 dev sentences and the model's predicted label: delete the k = 1..3 words with the highest attribution,
or k random words (5 draws), and measure the drop in the label's probability (faithfulness.py). Per method:
AOPC of the top words, of random words, their ratio, and the time per text; then the latency of one explain call
for one text on the default path (occlusion, ONNX Runtime).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import SST2_DEV, cpu_name, read_texts, table

METHODS = [  # (name, explain options)
    ("occlusion, delete (default)", dict(method="occlusion")),
    ("occlusion, pad", dict(method="occlusion", baseline="pad")),
    ("occlusion, mask", dict(method="occlusion", baseline="mask")),
    ("occlusion, delete, per token", dict(method="occlusion", unit="token")),
    ("integrated gradients, pad, 50 steps", dict(method="integrated_gradients")),
    ("integrated gradients, pad, 16 steps", dict(method="integrated_gradients", steps=16)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    args = parser.parse_args()

    from textclass import Classifier
    from textclass.tasks.faithfulness import aopc

    clf = Classifier.from_pretrained(args.model)
    texts = read_texts(SST2_DEV, args.sentences)
    clf.explain(texts[:2], method="integrated_gradients", steps=2)  # build the torch model outside the timings
    rows = []
    for name, options in METHODS:
        started = time.perf_counter()
        explanations = clf.explain(texts, **options)
        per_text = (time.perf_counter() - started) / len(texts) * 1000
        score = aopc(clf, texts, explanations)
        rows.append([name, f"{score.top:.3f}", f"{score.random:.3f}", f"{score.top / score.random:.1f}×",
                     " / ".join(f"{v:.2f}" for v in score.top_by_k), f"{per_text:.0f}"])  # fmt: skip
    words = np.mean([len(e["words"]) for e in clf.explain(texts[:50])])
    print(f"\n{clf.folder.name}, {len(texts)} SST-2 dev sentences ({words:.1f} words on average), {cpu_name()}\n")
    print(table(["method", "AOPC top-k", "AOPC random", "ratio", "drop k=1 / 2 / 3", "ms per text (batch)"], rows))

    latencies = []
    for text in texts[:60]:
        started = time.perf_counter()
        clf.explain(text)
        latencies.append((time.perf_counter() - started) * 1000)
    p50, p90 = np.percentile(latencies[10:], [50, 90])
    print(f"\nexplain latency, one text per call, default path ({clf.precision}, occlusion): "
          f"p50 {p50:.1f} ms, p90 {p90:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
