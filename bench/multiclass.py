"""The accuracy contract on a multi-class model: per-row int8 alone, and with its near ties rescored in fp32 under
several near-tie rules, against exact fp32; and what the CPU default chooses for the model, with its speed.

python bench/multiclass.py --model DIR --texts FILE [--limit 0] [--gaps 0.3,0.5,0.7,1.0] [--tops 0.6,0.7,0.75,0.8]

Rules compared (runtime/rescore.py): the two-label rule (top probability minus runner-up ≤ 0.5), top-two logit
gaps (after the temperature) of each of --gaps, top probabilities (after the temperature) of at most each of
--tops, and the default's own rule (rescore.near_ties: for more than two labels a top probability ≤ MULTI_TOP).
Choose on texts no report uses (a held-out part of train); report dev once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import cpu_name, read_texts, table


def near_ties_by_gap(logits: np.ndarray, temperature: float, gap: float) -> np.ndarray:
    """Rows whose top two logits (divided by the temperature) are at most `gap` apart."""
    top2 = np.sort(logits / temperature, axis=1)[:, -2:]
    return np.flatnonzero(top2[:, 1] - top2[:, 0] <= gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", required=True, help="SST-style .tsv or one text per line")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--gaps", default="0.3,0.5,0.7,1.0", help="top-two logit gaps to compare")
    parser.add_argument("--tops", default="0.6,0.7,0.75,0.8", help="top probabilities to compare")
    args = parser.parse_args()

    from textclass import Classifier
    from textclass.accuracy.check import probabilities
    from textclass.accuracy.contract import evaluate
    from textclass.runtime.rescore import MARGIN, MULTI_TOP, near_ties

    texts = read_texts(Path(args.texts), args.limit or None)
    exact = Classifier.from_pretrained(args.model, backend="onnx", dtype="fp32")
    int8 = Classifier.from_pretrained(args.model, dtype="int8")
    reference = exact.logits(texts)
    fast = int8.logits(texts)
    picks = np.unique(np.linspace(0, len(texts) - 1, min(200, len(texts))).astype(int))
    alone = np.concatenate([int8.logits([texts[i]]) for i in picks])
    temperature, probs = exact.temperature, exact.scores
    top2 = np.sort(probs(fast), axis=1)[:, -2:]
    ties = {f"probability gap ≤ {MARGIN} (two-label rule)": np.flatnonzero(top2[:, 1] - top2[:, 0] <= MARGIN),
            **{f"logit gap ≤ {gap}": near_ties_by_gap(fast, temperature, float(gap)) for gap in args.gaps.split(",")},
            **{f"top probability ≤ {top}": np.flatnonzero(top2[:, 1] <= float(top)) for top in args.tops.split(",")},
            f"the default's rule (top probability ≤ {MULTI_TOP})": near_ties(fast, "softmax", temperature)}  # fmt: skip
    rows = []
    for name, chosen in [("int8 alone", np.array([], dtype=int)), *ties.items()]:
        mixed = fast.copy()
        mixed[chosen] = reference[chosen]  # what the rescoring engine returns: fp32's logits for its near ties
        alone_mixed = alone.copy()
        again = np.isin(picks, chosen)
        alone_mixed[again] = reference[picks[again]]
        verdict = evaluate(probs(reference), probs(mixed), probs(alone_mixed), probs(mixed[picks]))
        rows.append([name, f"{len(chosen) / len(texts):.1%}", f"{verdict.agreement:.2%}", f"{verdict.mean_delta:.4f}",
                     f"{verdict.p99_delta:.3f}", f"{verdict.max_delta:.3f}", f"{verdict.batch_delta:.0e}",
                     "holds" if verdict.holds else "fails: " + ", ".join(c.name for c in verdict.clauses
                                                                         if not c.holds)])  # fmt: skip

    default = Classifier.from_pretrained(args.model)
    rates = {}
    for _ in range(2):  # interleaved, the better run of each
        for name, clf in (("onnx fp32", exact), ("default", default)):
            probabilities(clf, texts[:32])
            start = time.perf_counter()
            clf.logits(texts)
            rates[name] = max(rates.get(name, 0.0), len(texts) / (time.perf_counter() - start))
    labels = len(exact.labels)
    print(f"\n{Path(args.model).name} ({labels} labels), {len(texts)} texts from {args.texts}, {cpu_name()}\n")
    print(table(["int8, near ties rescored by", "rescored", "agreement", "mean |Δp|", "p99 |Δp|", "max |Δp|",
                 "alone vs batch", "contract"], rows))  # fmt: skip
    print(f"\nthe default here: {default.precision} ({default.precision_reason})")
    print(f"speed: default {rates['default']:.0f} texts/s, onnx fp32 {rates['onnx fp32']:.0f} "
          f"({rates['default'] / rates['onnx fp32']:.2f}×)")


if __name__ == "__main__":
    main()
