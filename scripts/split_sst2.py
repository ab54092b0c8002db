"""Split SST-2 train into a fit set and a held-out set of whole sentences (for keep-best and temperature).

SST-2 train mixes ~6.9k full sentences with their parse-tree phrases, while dev holds only full sentences.
A random held-out slice is mostly short phrases, easier than dev, so a temperature fitted there does not
transfer. Here the held-out rows are sentences (rows no other row contains) and every phrase taken from
them is removed from the fit set, so nothing held out was trained on.
SST-2 dev stays untouched: it is the reported score, never a tuning set.
usage: python scripts/split_sst2.py ../shared/data/sst2/train.tsv OUT_DIR [--sentences 500] [--seed 13]
       python scripts/split_sst2.py ../shared/data/sst2/train.tsv OUT_DIR --random 2000 [--seed 13]
(--random: the first recipe's split, a random slice of rows, phrases included)
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def text_of(row: str) -> str:
    return row.rsplit("\t", 1)[0].strip()


def write(out: Path, header: str, heldout: list[str], fit: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.tsv").write_text("\n".join([header, *heldout]) + "\n", encoding="utf-8")
    (out / "fit.tsv").write_text("\n".join([header, *fit]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("train", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--min-words", type=int, default=6, help="shorter rows are not taken as sentences")
    parser.add_argument("--random", type=int, help="hold out this many random rows instead of sentences")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    header, *rows = args.train.read_text(encoding="utf-8").splitlines()
    random.Random(args.seed).shuffle(rows)
    if args.random:
        write(args.out, header, rows[: args.random], rows[args.random :])
        print(f"fit: {len(rows) - args.random} rows, heldout: {args.random} random rows -> {args.out}")
        return
    texts = [text_of(r) for r in rows]
    # Longest first: a row is a sentence when no longer row already seen contains it.
    by_length = sorted(range(len(rows)), key=lambda i: -len(texts[i]))
    roots: list[int] = []
    for position, i in enumerate(by_length):
        if len(texts[i].split()) < args.min_words:
            break
        if not any(texts[i] in texts[j] for j in by_length[:position] if len(texts[j]) > len(texts[i])):
            roots.append(i)
        if len(roots) >= 20 * args.sentences:  # enough candidates to draw from
            break
    held = set(random.Random(args.seed).sample(sorted(roots), min(args.sentences, len(roots))))
    held_texts = [texts[i] for i in held]
    fit = [r for i, r in enumerate(rows) if i not in held and not any(texts[i] in h for h in held_texts)]
    write(args.out, header, [rows[i] for i in sorted(held)], fit)
    print(f"fit: {len(fit)} rows ({len(rows) - len(fit) - len(held)} phrases of held-out sentences removed), "
          f"heldout: {len(held)} sentences -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
