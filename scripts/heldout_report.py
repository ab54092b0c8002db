"""The shipping rule's figures for sentiment models on one labelled set (the held-out sentences, or the drug reviews).

usage: python scripts/heldout_report.py DATA_TSV MODEL_DIR [MODEL_DIR ...] [--json OUT]

For each model, exact fp32 logits (torch), then: accuracy, log loss and ECE (15 bins) of the raw logits
(temperature 1), of the model's own stored temperature, and of a temperature fitted on DATA itself; and the
cross-fitted check the rule uses to decide whether to ship a temperature: fitted on one half of DATA (a seeded
split), scored on the other, both ways, mean log loss against the raw logits' on the same halves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from textclass import Classifier
from textclass.train.metrics import compute, fit_temperature, nll


def figures(logits: np.ndarray, targets: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    found = compute("single_label", logits, targets, labels)
    return {k: float(found[k]) for k in ("accuracy", "log_loss", "ece")}


def cross_fitted(logits: np.ndarray, targets: np.ndarray, seed: int = 13) -> dict[str, float]:
    order = np.random.default_rng(seed).permutation(len(targets))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    raw, scaled = [], []
    for fit, score in (halves, halves[::-1]):
        temperature = fit_temperature(logits[fit], targets[fit])
        raw.append(nll(logits[score], targets[score], "single_label"))
        scaled.append(nll(logits[score] / temperature, targets[score], "single_label"))
    return {"raw": float(np.mean(raw)), "fitted_elsewhere": float(np.mean(scaled))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [line.rsplit("\t", 1) for line in args.data.read_text(encoding="utf-8").splitlines()[1:]]
    texts, targets = [t.strip() for t, _ in rows], np.asarray([int(y) for _, y in rows])
    report = {}
    for folder in args.models:
        clf = Classifier.from_pretrained(folder, backend="torch", dtype="fp32")
        order = [clf.labels.index(name) for name in ("NEGATIVE", "POSITIVE")]
        logits = clf.logits(texts)[:, order].astype(np.float64)  # (n, 2), SST-2's label order
        labels = ("NEGATIVE", "POSITIVE")
        fitted = fit_temperature(logits, targets)
        report[str(folder)] = {
            "raw": figures(logits, targets, labels),
            "stored_temperature": clf.temperature,
            "stored": figures(logits / clf.temperature, targets, labels),
            "fitted_temperature": fitted,
            "fitted": figures(logits / fitted, targets, labels),
            "cross_fitted_log_loss": cross_fitted(logits, targets),
        }
        r = report[str(folder)]
        print(f"{folder}: accuracy {r['raw']['accuracy']:.4f}, log loss {r['raw']['log_loss']:.4f}, ECE "
              f"{r['raw']['ece']:.4f}; stored T {clf.temperature:.3f}: {r['stored']['log_loss']:.4f} / "
              f"{r['stored']['ece']:.4f}; fitted T {fitted:.3f}: {r['fitted']['log_loss']:.4f} / "
              f"{r['fitted']['ece']:.4f}; cross-fitted log loss {r['cross_fitted_log_loss']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
