"""Batch scoring vs the offline Classifier on the same texts, in one run; optionally the Ray engine too.

    python bench/batch.py [--rows 4096] [--model DIR] [--ray --workers 2]

Without --model it builds all-MiniLM-L6-v2 with a random 2-label head (transformers, bench-only) so the compute
is a real model's. Texts: SST-2 train sentences from ../shared/data/sst2 (repeated to --rows), else synthetic.
Offline = `clf(texts)` on a list already in memory; batch = `run_batch` from a CSV file to a Parquet file
(reading, decoding, manifest + fsync per chunk, final merge included). Compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def minilm_with_head(cache: Path) -> Path:
    folder = cache / "minilm-head"
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoTokenizer, BertForSequenceClassification

    from conftest import minilm_folder

    source = minilm_folder()
    BertForSequenceClassification.from_pretrained(source, num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def load_texts(rows: int) -> list[str]:
    sst2 = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
    if sst2.is_file():
        with open(sst2, encoding="utf-8") as f:
            texts = [row[0] for row in csv.reader(f, delimiter="\t")][1:]
    else:
        from conftest import CORPUS

        texts = CORPUS
    return [texts[i % len(texts)] for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--ray", action="store_true", help="also time --engine ray")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import torch

    from textclass import Classifier
    from textclass.batch import BatchJob, run_batch

    work = Path(tempfile.mkdtemp(prefix="textclass-bench-batch-"))
    model = args.model or minilm_with_head(ROOT / ".cache")
    texts = load_texts(args.rows)
    source = work / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    tokens = sum(len(e) for e in Classifier.from_pretrained(model).encode(texts))
    print(f"model {model}, {len(texts)} texts, {tokens / len(texts):.1f} tokens mean, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip

    clf = Classifier.from_pretrained(model)
    clf(texts[:64])  # warm-up
    started = time.perf_counter()
    clf(texts)
    offline = len(texts) / (time.perf_counter() - started)
    print(f"offline Classifier: {offline:8.1f} texts/s")

    job = BatchJob(str(source), str(work / "local.parquet"), str(model), chunk_rows=args.chunk_rows)
    result = run_batch(job, show_progress=False)  # includes loading the model (~0.1 s for MiniLM)
    print(f"batch (local):      {result.rows_per_second:8.1f} rows/s   ratio {result.rows_per_second / offline:.2f}")
    if args.ray:
        job = BatchJob(str(source), str(work / "ray.parquet"), str(model), chunk_rows=args.chunk_rows // 4,
                       engine="ray", workers=args.workers)  # fmt: skip
        started = time.perf_counter()
        result = run_batch(job, show_progress=False)
        print(f"batch (ray, {args.workers} workers): {result.rows_per_second:8.1f} rows/s including Ray start-up "
              f"({time.perf_counter() - started:.0f} s wall)")  # fmt: skip


if __name__ == "__main__":
    main()
