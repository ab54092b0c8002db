"""Long documents: truncation against chunked scoring (mean / max / first), on documents built from SST-2 dev.

python bench/long_text.py [--docs 60] [--model FOLDER]

Three sets of labelled documents, from real sentences:
- "same label": 10-40 dev sentences of one label joined (about 250-1,000 tokens); the label is theirs.
- "2:1 mixed": 15-45 dev sentences, two of one label for each of the other, shuffled; the majority's label.
- "late needle": filler sentences the model is unsure of (its score within 0.5 ± 0.2, either gold label), past the
  model's 512-token window, then one sentence it classifies correctly with confidence, then a little more filler;
  the document's label is that sentence's. Truncation never reads it.
Prints accuracy per mode and the cost: windows scored and seconds.
"""

from __future__ import annotations

import argparse
import csv
import random
import time

import numpy as np
from common import SST2_DEV, cpu_name, table


def read_labelled(path) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(row[0].strip(), int(row[1])) for row in rows]


def same_label_docs(rows: list[tuple[str, int]], count: int, rng: random.Random) -> list[tuple[str, int]]:
    by_label = {0: [t for t, y in rows if y == 0], 1: [t for t, y in rows if y == 1]}
    docs = []
    for index in range(count):
        label = index % 2
        docs.append((" ".join(rng.sample(by_label[label], rng.randint(10, 40))), label))
    return docs


def mixed_docs(rows: list[tuple[str, int]], count: int, rng: random.Random) -> list[tuple[str, int]]:
    by_label = {0: [t for t, y in rows if y == 0], 1: [t for t, y in rows if y == 1]}
    docs = []
    for index in range(count):
        label = index % 2
        third = rng.randint(5, 15)
        sentences = rng.sample(by_label[label], 2 * third) + rng.sample(by_label[1 - label], third)
        rng.shuffle(sentences)
        docs.append((" ".join(sentences), label))
    return docs


def needle_docs(rows, positive: np.ndarray, count: int, rng: random.Random, tokens, past: int):
    """Filler the model is unsure of up to `past` tokens, then one confidently right sentence, then more filler."""
    unsure = [t for (t, _), p in zip(rows, positive) if abs(p - 0.5) < 0.2]
    sure = [(t, y) for (t, y), p in zip(rows, positive) if (p > 0.9 and y == 1) or (p < 0.1 and y == 0)]
    sure_by_label = {0: [r for r in sure if r[1] == 0], 1: [r for r in sure if r[1] == 1]}
    docs = []
    for index in range(count):
        needle, label = rng.choice(sure_by_label[index % 2])
        before, size = [], 0
        while size <= past:
            sentence = rng.choice(unsure)
            before.append(sentence)
            size += tokens(sentence)
        after = rng.sample(unsure, 3)
        docs.append((" ".join([*before, needle, *after]), label))
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=60, help="documents per set")
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from textclass import Classifier

    clf = Classifier.from_pretrained(args.model)
    rng = random.Random(args.seed)
    rows = read_labelled(SST2_DEV)
    positive_index = clf.labels.index("POSITIVE") if "POSITIVE" in clf.labels else 1
    positive = np.array([next(s["score"] for s in r if s["label"] == clf.labels[positive_index])
                         for r in clf([t for t, _ in rows], top_k=None)])  # fmt: skip
    limit = clf.tokenizer.model_max_length

    def tokens(text: str) -> int:
        return len(clf.encode([text], truncation=False)[0]) - 2 if len(text) < 4000 else limit

    sets = {"same label": same_label_docs(rows, args.docs, rng), "2:1 mixed": mixed_docs(rows, args.docs, rng),
            "late needle": needle_docs(rows, positive, args.docs, rng, tokens, past=limit)}  # fmt: skip
    sizes = {name: np.mean([len(clf.tokenizer.encodings([t], False)[0].ids) for t, _ in docs])
             for name, docs in sets.items()}  # fmt: skip
    modes = [("truncate (pipeline)", {})]
    for window in (limit, 128, 64):
        for aggregate in ("mean", "max") if window == limit else ("first", "mean", "max"):  # 512 first = truncate
            modes.append((f"chunk {window}, {aggregate}", dict(long_text="chunk", chunk_tokens=window,
                                                               aggregate=aggregate)))  # fmt: skip
    results = []
    for name, options in modes:
        row = [name]
        for docs in sets.values():
            texts, gold = [t for t, _ in docs], [clf.labels[positive_index if y else 1 - positive_index]
                                                 for _, y in docs]  # fmt: skip
            started = time.perf_counter()
            answers = clf(texts, **options)
            seconds = time.perf_counter() - started
            accuracy = np.mean([a["label"] == g for a, g in zip(answers, gold)])
            windows = sum(a.get("windows", 1) for a in answers)
            row += [f"{accuracy:.3f}", f"{windows}", f"{seconds:.1f}"]
        results.append(row)
    header = ["mode"]
    for name in sets:
        header += [f"{name}: accuracy", "windows", "s"]
    print(f"\n{clf.folder.name} ({clf.precision}): {args.docs} documents per set, mean tokens "
          f"{', '.join(f'{n} {s:.0f}' for n, s in sizes.items())}; {cpu_name()}\n")  # fmt: skip
    print(table(header, results))


if __name__ == "__main__":
    main()
