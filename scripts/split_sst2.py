"""Split SST-2 train into a fit set and a held-out slice (for keep-best and temperature), seeded.

SST-2 dev stays untouched: it is the reported score, never a tuning set.
usage: python scripts/split_sst2.py ../shared/data/sst2/train.tsv OUT_DIR [--heldout 2000] [--seed 13]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("train", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--heldout", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    header, *rows = args.train.read_text(encoding="utf-8").splitlines()
    random.Random(args.seed).shuffle(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "heldout.tsv").write_text("\n".join([header, *rows[: args.heldout]]) + "\n", encoding="utf-8")
    (args.out / "fit.tsv").write_text("\n".join([header, *rows[args.heldout :]]) + "\n", encoding="utf-8")
    print(f"fit: {len(rows) - args.heldout} rows, heldout: {args.heldout} rows -> {args.out}")


if __name__ == "__main__":
    main()
