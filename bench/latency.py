"""Latency of one ~32-token text at a time: p50/p90/p99 ms, textclass modes vs the transformers pipeline.

python bench/latency.py --model bench/models/distilbert-sst2-shape [--runs 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import MODES, SST2_DEV, cpu_name, read_texts, table


def percentiles(call, texts: list[str], runs: int) -> list[str]:
    for text in texts[:10]:
        call(text)  # warm-up
    times = []
    for i in range(runs):
        start = time.perf_counter()
        call(texts[i % len(texts)])
        times.append((time.perf_counter() - start) * 1000)
    return [f"{np.percentile(times, q):.1f}" for q in (50, 90, 99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--texts", default=str(SST2_DEV))
    args = parser.parse_args()

    from pathlib import Path

    from transformers import pipeline

    from textclass import Classifier

    reference = Classifier.from_pretrained(args.model, dtype="fp32")
    # Texts of 28-36 tokens, the "~32-token request" of the target.
    texts = [t for t in read_texts(Path(args.texts), None) if 28 <= len(reference.encode(t)[0]) <= 36][:100]
    pipe = pipeline("text-classification", model=args.model, device=-1)
    rows = [["pipeline", *percentiles(pipe, texts, args.runs)]]
    for name, backend, dtype in [*MODES, ("default", None, None)]:  # the last: the CPU default as users get it
        clf = Classifier.from_pretrained(args.model, backend=backend, dtype=dtype)
        label = f"default ({clf.precision})" if backend is None else name
        rows.append([f"textclass {label}", *percentiles(clf, texts, args.runs)])
    print(f"\n{Path(args.model).name}, one text at a time ({len(texts)} texts of 28-36 tokens), {cpu_name()}\n")
    print(table(["engine", "p50 ms", "p90 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
