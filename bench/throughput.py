"""Throughput, textclass modes vs the transformers pipeline, in one process and one run.

    python bench/make_models.py                       # once: builds bench/models/{distilbert-..., minilm-...}
    python bench/throughput.py --model bench/models/distilbert-sst2-shape [--limit 300] [--long]

Rows: pipeline (batch_size 1, its default), pipeline batch_size=32, then each textclass mode (length-sorted
batches under a token budget). Columns: texts/s, tokens/s, speed-up over each pipeline row, label agreement
with the fp32 pipeline and the largest probability difference from it. Load time (first load exports and
caches the ONNX artefacts) is not counted; tokenization is. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import MODES, SST2_DEV, cpu_name, paragraphs, read_texts, table


def pipeline_probs(pipe, texts: list[str], labels: tuple[str, ...], batch_size: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    results = pipe(texts, batch_size=batch_size, top_k=None, truncation=True)
    seconds = time.perf_counter() - start
    probs = np.array([[{r["label"]: r["score"] for r in result}[label] for label in labels] for result in results])
    return probs, seconds


def textclass_probs(clf, texts: list[str]) -> tuple[np.ndarray, float]:
    clf(texts[:16], top_k=None)  # warm-up: thread pools, first-call allocations
    start = time.perf_counter()
    results = clf(texts, top_k=None)
    seconds = time.perf_counter() - start
    probs = np.array([[{r["label"]: r["score"] for r in result}[label] for label in clf.labels] for result in results])
    return probs, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--texts", default=str(SST2_DEV), help="SST-2 style .tsv or one text per line")
    parser.add_argument("--limit", type=int, default=300, help="texts to use (0: all)")
    parser.add_argument("--long", action="store_true", help="join sentences into ~300-token paragraphs first")
    parser.add_argument("--modes", default="all", help="comma-separated table labels' backends, e.g. onnx")
    args = parser.parse_args()

    from pathlib import Path

    from textclass import Classifier

    reference = Classifier.from_pretrained(args.model, dtype="fp32")
    count = lambda text: len(reference.tokenizer.encode_batch([text])[0])  # noqa: E731
    texts = read_texts(Path(args.texts), None if args.long else args.limit)
    if args.long:
        texts = paragraphs(texts, count)[: args.limit or None]
    tokens = sum(len(e) for e in reference.encode(texts))

    from transformers import pipeline

    pipe = pipeline("text-classification", model=args.model, device=-1)
    labels = reference.labels
    rows, speeds = [], {}
    truth, seconds = pipeline_probs(pipe, texts, labels, batch_size=1)
    speeds["b1"] = len(texts) / seconds
    b32_probs, seconds = pipeline_probs(pipe, texts, labels, batch_size=32)
    speeds["b32"] = len(texts) / seconds

    def row(name: str, probs: np.ndarray, seconds: float) -> list[str]:
        rate = len(texts) / seconds
        agree = (probs.argmax(1) == truth.argmax(1)).mean()
        return [name, f"{rate:.0f}", f"{tokens / seconds:,.0f}", f"{rate / speeds['b1']:.1f}×",
                f"{rate / speeds['b32']:.1f}×", f"{agree:.2%}", f"{np.abs(probs - truth).max():.1e}"]  # fmt: skip

    rows.append(row("pipeline, batch_size=1 (default)", truth, len(texts) / speeds["b1"]))
    rows.append(row("pipeline, batch_size=32", b32_probs, len(texts) / speeds["b32"]))
    for name, backend, dtype in MODES:
        if args.modes != "all" and backend not in args.modes.split(","):
            continue
        clf = Classifier.from_pretrained(args.model, backend=backend, dtype=dtype)
        probs, seconds = textclass_probs(clf, texts)
        rows.append(row(f"textclass {name}", probs, seconds))
        del clf

    mean = tokens / len(texts)
    print(f"\n{Path(args.model).name}, {len(texts)} texts ({mean:.0f} tokens mean), {cpu_name()}\n")
    header = ["engine", "texts/s", "tokens/s", "vs pipeline", "vs pipeline b32", "label agreement", "max Δprob"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
