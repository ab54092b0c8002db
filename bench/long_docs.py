"""Long documents: time against length, 1k to 300k words, with long_text="chunk". The cost per word must be flat.

python bench/long_docs.py [--model FOLDER] [--words 1000,3000,...] [--score-up-to 300000]

Documents are SST-2 dev sentences joined in order (repeated past the 872 sentences), cut at N words. For each
length it prints the windows, the seconds to plan them (tokenize and cut: no model) and to answer `clf(text,
long_text="chunk")` (plan, score every window, aggregate), each also per word and as a ratio to the shortest
document's per-word cost: flat (about 1.0) is linear; the cutter before this bench read the tokenizer's lists
once per token and took 2.4 s for 4,000 tokens and minutes for 40k words.
"""

from __future__ import annotations

import argparse
import time

from common import SST2_DEV, cpu_name, read_texts, table


def best_of(runs: int, work) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--words", default="1000,3000,10000,30000,100000,300000")
    parser.add_argument("--score-up-to", type=int, default=300_000, help="longest document also scored (words)")
    args = parser.parse_args()

    from textclass import Classifier
    from textclass.tasks.chunking import windows_for

    clf = Classifier.from_pretrained(args.model)
    words = " ".join(read_texts(SST2_DEV, None)).split()
    lengths = [int(n) for n in args.words.split(",")]
    windows = windows_for(clf.tokenizer, "chunk")
    clf("warm-up " * 600, long_text="chunk")  # thread pools, first-call allocations
    rows, base = [], {}
    for count in lengths:
        text = " ".join((words * (count // len(words) + 1))[:count])
        runs = 3 if count <= 30_000 else 1
        plan_seconds = best_of(runs, lambda text=text: windows.plan([text]))
        plan = windows.plan([text])
        tokens = sum(len(e) for e in plan.encoded)
        scored = count <= args.score_up_to
        score_seconds = best_of(1, lambda text=text: clf(text, long_text="chunk")) if scored else float("nan")
        per_word = {"plan": plan_seconds / count * 1e6, "score": score_seconds / count * 1e6}
        base = base or per_word
        rows.append([f"{count:,}", f"{tokens:,}", f"{plan.counts[0]:,}", f"{plan_seconds:.3f}",
                     f"{per_word['plan']:.2f}", f"{per_word['plan'] / base['plan']:.2f}",
                     f"{score_seconds:.2f}" if scored else "-", f"{per_word['score']:.1f}" if scored else "-",
                     f"{per_word['score'] / base['score']:.2f}" if scored else "-"])  # fmt: skip
    print(f"\n{clf.folder.name} ({clf.precision}), windows of {windows.chunk_tokens} tokens, stride "
          f"{windows.stride}; {cpu_name()}\n")  # fmt: skip
    print(table(["words", "window tokens", "windows", "plan s", "plan µs/word", "plan ratio", "answer s",
                 "answer µs/word", "answer ratio"], rows))  # fmt: skip
    print("\nratio: µs per word against the shortest document's (1.00 = linear)")


if __name__ == "__main__":
    main()
