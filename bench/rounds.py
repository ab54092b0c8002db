"""What a server's rounds cost the engine, without HTTP: texts/s of `clf.run` on rounds of N texts from two lanes
(`one_thread`, as the batcher's lanes call it), against one sorted call over all texts, in the same run.

python bench/rounds.py --model src/textclass/bundled/sentiment-en [--texts FILE] [--size 16] [--runs 4]

Rows (each the median of --runs, measured interleaved; ratio against one call):
  one call          every text in one `clf.run`: one global length sort, passes side by side
  rounds, arrival   rounds of --size texts in the order they come (a server's queue): mixed lengths
  rounds, shares    a queue of --size x lanes texts in arrival order, sorted by length and cut into one share of its
                    tokens per lane: the rounds the server's lanes take under load (server/batcher.py)
  rounds, by length rounds of --size texts cut from the length-sorted list: what a round of near-equal lengths runs at
The gap between arrival order and near-equal lengths is what mixed lengths cost (padding, short passes), not round
size (docs/performance.md).
"""

from __future__ import annotations

import argparse
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import SST2_DEV, cpu_name, read_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", type=Path, default=SST2_DEV, help="SST-2 style .tsv or one text per line")
    parser.add_argument("--limit", type=int, default=872)
    parser.add_argument("--size", type=int, default=16, help="texts per round")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--dtype", default=None, help="fp32 or int8 (default: the CPU's default mode)")
    args = parser.parse_args()

    from textclass import Classifier
    from textclass.server.batcher import length_shares

    clf = Classifier.from_pretrained(args.model, **({"dtype": args.dtype} if args.dtype else {}))
    encoded = clf.encode(read_texts(args.texts, args.limit))
    random.Random(0).shuffle(encoded)  # arrival order: lengths mixed
    clf.run(encoded[: max(64, len(encoded) // 4)])  # warm up both sessions (the side-by-side one included)
    by_length = sorted(encoded, key=len)

    def rounds(texts: list) -> list[list]:
        cut = [texts[i : i + args.size] for i in range(0, len(texts), args.size)]
        random.Random(1).shuffle(cut)  # the lanes meet rounds of every length in turn
        return cut

    def lanes(cut: list[list]) -> None:
        with ThreadPoolExecutor(clf.engine.lanes) as pool:
            list(pool.map(lambda texts: clf.run(texts, one_thread=True), cut))

    def shares(texts: list) -> list[list]:
        # What the server's lanes take under load: a queue of `lanes` rounds' worth cut as the batcher cuts it.
        lanes_n, cut = clf.engine.lanes, []
        for start in range(0, len(texts), args.size * lanes_n):
            queue = texts[start : start + args.size * lanes_n]
            of = length_shares([len(item) for item in queue], lanes_n)
            cut += [part for part in ([t for t, s in zip(queue, of) if s == k] for k in range(lanes_n)) if part]
        return cut

    cases = {
        "one call": lambda: clf.run(encoded),
        f"rounds of {args.size}, arrival order": lambda: lanes(rounds(encoded)),
        f"rounds of {args.size}, shares by length of {args.size * clf.engine.lanes} queued": lambda: lanes(
            shares(encoded)),
        f"rounds of {args.size}, near-equal lengths": lambda: lanes(rounds(by_length)),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            rates[name].append(len(encoded) / (time.perf_counter() - started))
    one = float(np.median(rates["one call"]))
    print(f"\n{Path(args.model).name}, {clf.engine.dtype}, {len(encoded)} texts, {clf.engine.lanes} lanes, "
          f"budget {clf.max_batch_tokens}, {cpu_name()}\n")  # fmt: skip
    print("| how | texts/s | vs one call |\n|---|---|---|")
    for name, values in rates.items():
        rate = float(np.median(values))
        print(f"| {name} | {rate:.0f} | {rate / one:.2f}× |")


if __name__ == "__main__":
    main()
