"""The student's training file from the committed teacher logits: SST-2 fit rows with their own labels, then the
built sentences labelled by the teacher (its argmax), in the logits' row order.

usage: python scripts/distill_data.py SPLIT_DIR BUILT_TXT LOGITS_DIR OUT_TSV [--no-built]

Checks each logits row's key (scripts/teacher_logits.py) against the split's rows.json and the built file, so
logits from another split or seed are refused instead of silently misaligned. With --no-built, the fit rows
alone. Writes OUT_TSV with .npy for .tsv beside it: the logits of exactly its rows, for `--teacher-logits`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("split", type=Path)
    parser.add_argument("built", type=Path)
    parser.add_argument("logits", type=Path, help="folder with sentiment_teacher_{logits,rows}.npy")
    parser.add_argument("out", type=Path)
    parser.add_argument("--no-built", action="store_true", help="leave the built sentences out")
    args = parser.parse_args()
    logits = np.load(args.logits / "sentiment_teacher_logits.npy", allow_pickle=False)
    keys = np.load(args.logits / "sentiment_teacher_rows.npy", allow_pickle=False)
    fit_rows = args.split.joinpath("fit.tsv").read_text(encoding="utf-8").splitlines()
    built = [line for line in args.built.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = json.loads((args.split / "rows.json").read_text())["fit"] + [-1 - i for i in range(len(built))]
    if keys.tolist() != expected:
        raise SystemExit(f"{args.logits}: the logits' row keys do not match {args.split} and {args.built}; "
                         "rebuild them with the same split and seed")  # fmt: skip
    header, body = fit_rows[0], fit_rows[1:]
    lines = list(body)
    if args.no_built:
        logits = logits[: len(body)]
    else:
        names = ("0", "1")  # SST-2's ids for NEGATIVE, POSITIVE: the teacher's argmax is the label
        lines += [f"{text}\t{names[int(row.argmax())]}" for text, row in zip(built, logits[len(body) :])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    np.save(args.out.with_suffix(".npy"), np.ascontiguousarray(logits, dtype=np.float32), allow_pickle=False)
    print(f"{len(lines)} rows ({len(lines) - len(body)} built) -> {args.out} and {args.out.with_suffix('.npy')}")


if __name__ == "__main__":
    main()
