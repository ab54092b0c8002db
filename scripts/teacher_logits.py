"""The teacher's logits for the student's training texts: the SST-2 fit rows, then the built sentences.

usage: python scripts/teacher_logits.py TEACHER_DIR SPLIT_DIR BUILT_TXT OUT_DIR [--max-length 64]

Writes OUT_DIR/sentiment_teacher_logits.npy, float32 (rows, 2) in NEGATIVE, POSITIVE order, and
OUT_DIR/sentiment_teacher_rows.npy, int32 (rows,): each row's key, its train.tsv row number (0 = the first row
after the header, from SPLIT_DIR/rows.json) or -1 - i for built sentence i. scripts/distill_data.py turns them
back into the student's training file, so the student trains again without the teacher.
torch bf16 where the CPU has native bf16 (by its flags), else fp32; teacher and student read at most 64 tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from textclass import Classifier
from textclass.runtime.cpu import emulated_bf16


def texts_of(path: Path) -> list[str]:
    return [line.rsplit("\t", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher", type=Path)
    parser.add_argument("split", type=Path)
    parser.add_argument("built", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    fit = texts_of(args.split / "fit.tsv")
    built = [line for line in args.built.read_text(encoding="utf-8").splitlines() if line.strip()]
    keys = json.loads((args.split / "rows.json").read_text())["fit"] + [-1 - i for i in range(len(built))]
    assert len(keys) == len(fit) + len(built), "rows.json does not match fit.tsv"
    dtype = "fp32" if emulated_bf16() else "bf16"
    teacher = Classifier.from_pretrained(args.teacher, backend="torch", dtype=dtype)
    order = [teacher.labels.index(name) for name in ("NEGATIVE", "POSITIVE")]
    began = time.perf_counter()
    logits = teacher.logits(fit + built, max_length=args.max_length)[:, order].astype(np.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "sentiment_teacher_logits.npy", logits, allow_pickle=False)
    np.save(args.out / "sentiment_teacher_rows.npy", np.asarray(keys, dtype=np.int32), allow_pickle=False)
    print(f"teacher ({dtype}): logits for {len(fit)} fit rows and {len(built)} built sentences in "
          f"{time.perf_counter() - began:.0f} s -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
