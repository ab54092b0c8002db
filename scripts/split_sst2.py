"""Split SST-2 train into a fit set and a held-out set of whole sentences (for decisions, keep-best, temperature).

SST-2 train mixes ~6.9k full sentences with their parse-tree phrases, while dev holds only full sentences.
A random held-out slice is mostly short phrases, easier than dev, so a temperature fitted there does not
transfer. Here the held-out rows are sentences (rows no other row contains) and every row that is a phrase
of a held-out sentence (a run of its words) is removed from the fit set, so nothing held out was trained on,
not even in part. Sentences are drawn uniformly from all of them (6,575 of 6+ words), so their lengths are
distributed as in train (mean 19.4 words; dev: 19.5).
SST-2 dev stays untouched: it is the reported score, never a tuning set.
usage: python scripts/split_sst2.py ../shared/data/sst2/train.tsv OUT_DIR [--sentences 1000] [--seed 13]
       python scripts/split_sst2.py ../shared/data/sst2/train.tsv OUT_DIR --random 2000 [--seed 13]
(--random: the first recipe's split, a random slice of rows, phrases included)
Writes OUT_DIR/fit.tsv and OUT_DIR/heldout.tsv (sentence, label) and, in sentence mode, OUT_DIR/rows.json:
the train.tsv row numbers (0 = the first row after the header) of each, in the order written.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def text_of(row: str) -> str:
    return row.rsplit("\t", 1)[0].strip()


def spans(words: list[str]) -> set[str]:
    """Every run of consecutive words of a sentence: the texts its parse-tree phrases can have."""
    return {" ".join(words[a:b]) for a in range(len(words)) for b in range(a + 1, len(words) + 1)}


def sentences(texts: list[str]) -> list[int]:
    """Indices of the rows no other row contains: longest first, a row is a sentence unless it is a run of
    words of a longer sentence already found. Linear in the sentences' words squared (~1.3M spans)."""
    covered: set[str] = set()
    found = []
    for i in sorted(range(len(texts)), key=lambda i: -len(texts[i].split())):
        if texts[i] not in covered:
            found.append(i)
            covered |= spans(texts[i].split())
    return found


def write(out: Path, header: str, heldout: list[str], fit: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.tsv").write_text("\n".join([header, *heldout]) + "\n", encoding="utf-8")
    (out / "fit.tsv").write_text("\n".join([header, *fit]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("train", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--min-words", type=int, default=6, help="shorter sentences are not held out")
    parser.add_argument("--random", type=int, help="hold out this many random rows instead of sentences")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    header, *rows = args.train.read_text(encoding="utf-8").splitlines()
    if args.random:
        rows = rows[:]
        random.Random(args.seed).shuffle(rows)
        write(args.out, header, rows[: args.random], rows[args.random :])
        print(f"fit: {len(rows) - args.random} rows, heldout: {args.random} random rows -> {args.out}")
        return
    texts = [text_of(r) for r in rows]
    candidates = sorted(i for i in sentences(texts) if len(texts[i].split()) >= args.min_words)
    held = sorted(random.Random(args.seed).sample(candidates, min(args.sentences, len(candidates))))
    removed: set[str] = set()
    for i in held:
        removed |= spans(texts[i].split())
    fit = [i for i in range(len(rows)) if texts[i] not in removed]
    write(args.out, header, [rows[i] for i in held], [rows[i] for i in fit])
    (args.out / "rows.json").write_text(json.dumps({"heldout": held, "fit": fit}) + "\n", encoding="utf-8")
    print(f"fit: {len(fit)} rows ({len(rows) - len(fit) - len(held)} phrases of held-out sentences removed), "
          f"heldout: {len(held)} sentences of {len(candidates)} -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
