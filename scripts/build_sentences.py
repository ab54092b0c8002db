"""Sentences built from SST-2 train phrases, for the teacher to label: two fit-set phrases joined by a connective.

The student is scored on whole sentences but SST-2 train is mostly short phrases; joined phrases ("X , but Y")
give it longer, often mixed texts whose label the teacher decides (its logits, not a rule, say which clause
wins). Built only from the fit set that scripts/split_sst2.py writes, so no held-out sentence or any of its
phrases is in them; any built text that contains a held-out or SST-2 dev sentence is dropped (14 of 10,000 at
seed 13: short dev sentences that are also SST-2 train phrases). Dev is read only for that check, never scored.
usage: python scripts/build_sentences.py SPLIT_DIR DEV_TSV OUT_TXT [--count 10000] [--seed 13]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# SST-2's tokenization: punctuation stands apart from words, as in the treebank's text.
CONNECTIVES = (" , but ", " , and ", " ; ", " , although ", " , yet ", " . ", " , even though ", " and ", " but ",
               " , while ", " ; still , ", " , so ")  # fmt: skip


def texts_of(path: Path) -> list[str]:
    return [line.rsplit("\t", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("split", type=Path, help="scripts/split_sst2.py's output folder (fit.tsv, heldout.tsv)")
    parser.add_argument("dev", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    phrases = sorted({t for t in texts_of(args.split / "fit.tsv") if len(t.split()) >= args.min_words})
    rng = random.Random(args.seed)
    built = [f"{rng.choice(phrases)}{rng.choice(CONNECTIVES)}{rng.choice(phrases)}" for _ in range(args.count)]
    protected = texts_of(args.split / "heldout.tsv") + texts_of(args.dev)
    kept = [b for b in built if not any(p in b for p in protected)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    print(f"{len(kept)} sentences from {len(phrases)} fit phrases ({len(built) - len(kept)} dropped) -> {args.out}")


if __name__ == "__main__":
    main()
