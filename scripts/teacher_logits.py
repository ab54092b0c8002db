"""The teacher's logits for the student's training texts: the SST-2 fit rows, then the built sentences.

usage: python scripts/teacher_logits.py TEACHER_DIR SPLIT_DIR BUILT_TXT OUT_DIR [--max-length 64]

Writes OUT_DIR/sentiment_teacher_logits.npy, float32 (rows, 2) in NEGATIVE, POSITIVE order, and
OUT_DIR/sentiment_teacher_rows.npy, int32 (rows,): each row's key, its train.tsv row number (0 = the first row
after the header, from SPLIT_DIR/rows.json) or -1 - i for built sentence i. scripts/distill_data.py turns them
back into the student's training file, so the student trains again without the teacher.
torch bf16 where the CPU has native bf16 (by its flags), else fp32; teacher and student read at most 64 tokens.
Resumable: rows are scored in chunks of 4,096, each saved as it is done (OUT_DIR/*.partial.npy, with the texts'
sha256 beside it); run again after a kill and it goes on from the last chunk, with the same result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from textclass import Classifier
from textclass.runtime.cpu import emulated_bf16

# Rows per saved step; a batch's neighbours are fixed by its chunk, so resumed logits are the same.
CHUNK = int(os.environ.get("TEACHER_CHUNK", 4096))


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
    texts = fit + built
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "sentiment_teacher_logits.partial.npy"
    stamp = partial.with_suffix(".json")
    inputs = {"texts_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "teacher": str(args.teacher)}
    same = stamp.is_file() and partial.is_file() and json.loads(stamp.read_text()) == inputs
    logits = np.load(partial) if same else np.empty((0, 2), dtype=np.float32)
    stamp.write_text(json.dumps(inputs))
    began = time.perf_counter()
    for start in range(len(logits), len(texts), CHUNK):
        chunk = teacher.logits(texts[start : start + CHUNK], max_length=args.max_length)[:, order]
        logits = np.concatenate([logits, chunk.astype(np.float32)])  # (rows done, 2)
        np.save(args.out / "partial.tmp.npy", logits, allow_pickle=False)
        os.replace(args.out / "partial.tmp.npy", partial)  # a kill leaves the old chunks or the new, never half
        print(f"{len(logits)} of {len(texts)} rows, {time.perf_counter() - began:.0f} s", flush=True)
    np.save(args.out / "sentiment_teacher_logits.npy", logits, allow_pickle=False)
    np.save(args.out / "sentiment_teacher_rows.npy", np.asarray(keys, dtype=np.int32), allow_pickle=False)
    partial.unlink(missing_ok=True)
    stamp.unlink()
    print(f"teacher ({dtype}): logits for {len(fit)} fit rows and {len(built)} built sentences in "
          f"{time.perf_counter() - began:.0f} s -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
