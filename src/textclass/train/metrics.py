"""Evaluation metrics as pure numpy functions of logits and targets (no sklearn), and temperature fitting.

Conventions follow scikit-learn: confusion rows are true classes, columns predictions; macro averages
run over the classes present in the targets or predictions; a 0/0 precision or recall counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textclass.postprocess import sigmoid

ECE_BINS = 15
# Metrics where smaller is better, for keep-best and early stopping.
LOWER_IS_BETTER = {"loss", "log_loss", "ece", "mse", "mae"}


def log_softmax(logits: np.ndarray) -> np.ndarray:  # (n, classes) -> (n, classes)
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))  # stable for large |x|


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2 * precision * recall, precision + recall)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_bins |accuracy − mean confidence| × share of samples, equal-width bins over (0, 1]."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to the first bin.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += abs(correct[inside].mean() - confidence[inside].mean()) * inside.mean()
    return float(total)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per-bin mean confidence, accuracy and count: the reliability diagram's data."""
    which = np.clip(np.ceil(np.asarray(confidence) * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": b / bins, "high": (b + 1) / bins, "confidence": float(confidence[inside].mean()),
                         "accuracy": float(np.mean(correct[inside])), "count": int(inside.sum())})  # fmt: skip
    return rows


def single_label(logits: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """logits (n, classes), targets (n,) class ids."""
    targets = np.asarray(targets, dtype=np.int64)
    log_probs = log_softmax(logits)
    probs = np.exp(log_probs)
    predictions = probs.argmax(axis=-1)
    classes = len(labels)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (targets, predictions), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    precision = _ratio(true_positive, confusion.sum(axis=0))
    recall = _ratio(true_positive, confusion.sum(axis=1))
    f1 = _f1(precision, recall)
    present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    confidence = probs.max(axis=-1)
    correct = predictions == targets
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1[present].mean()),
        "log_loss": float(-log_probs[np.arange(len(targets)), targets].mean()),
        "ece": expected_calibration_error(confidence, correct),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(confusion[i].sum()),
            }  # fmt: skip
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion.tolist(),
        "labels": list(labels),
        "samples": int(len(targets)),
    }


def multi_label(logits: np.ndarray, targets: np.ndarray, labels: Sequence[str], threshold: float = 0.5) -> dict:
    """logits and targets (n, labels); a label is predicted when its sigmoid score reaches `threshold`."""
    targets = np.asarray(targets) > 0.5
    logits = np.asarray(logits, dtype=np.float64)
    probs = sigmoid(logits)
    predicted = probs >= threshold
    tp = (predicted & targets).sum(axis=0).astype(np.float64)
    fp = (predicted & ~targets).sum(axis=0).astype(np.float64)
    fn = (~predicted & targets).sum(axis=0).astype(np.float64)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _f1(precision, recall)
    micro_p, micro_r = _ratio(tp.sum(), tp.sum() + fp.sum()), _ratio(tp.sum(), tp.sum() + fn.sum())
    present = (tp + fp + fn) > 0
    bce = -(targets * log_sigmoid(logits) + ~targets * log_sigmoid(-logits))
    # Calibration over every (sample, label) decision: confidence in the chosen side.
    confidence = np.where(predicted, probs, 1 - probs).ravel()
    return {
        "accuracy": float((predicted == targets).all(axis=1).mean()),  # exact match of the label set
        "label_accuracy": float((predicted == targets).mean()),
        "micro_f1": float(_f1(micro_p, micro_r)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "log_loss": float(bce.mean()),
        "ece": expected_calibration_error(confidence, (predicted == targets).ravel()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(targets[:, i].sum()),
            }  # fmt: skip
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "threshold": threshold,
        "samples": int(len(targets)),
    }


def regression(predictions: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    errors = predictions - targets
    spread = predictions.std() * targets.std()
    pearson = (
        float(((predictions - predictions.mean()) * (targets - targets.mean())).mean() / spread) if spread else 0.0
    )
    return {"mse": float((errors**2).mean()), "mae": float(np.abs(errors).mean()), "pearson": pearson,
            "samples": int(len(targets))}  # fmt: skip


def compute(task: str, logits: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    if task == "multi_label":
        return multi_label(logits, targets, labels)
    if task == "regression":
        return regression(logits, targets)
    return single_label(logits, targets, labels)


def better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


# ---- temperature scaling ---------------------------------------------------------------------------
def nll(logits: np.ndarray, targets: np.ndarray, task: str) -> float:
    if task == "multi_label":
        positive = np.asarray(targets) > 0.5
        return float(-(positive * log_sigmoid(logits) + ~positive * log_sigmoid(-logits)).mean())
    return float(-log_softmax(logits)[np.arange(len(targets)), np.asarray(targets, dtype=np.int64)].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, task: str = "single_label") -> float:
    """The T > 0 minimising the NLL of logits / T (Guo et al. 2017).

    NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T in [1/20, 20] finds it.
    """
    logits = np.asarray(logits, dtype=np.float64)
    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    loss = lambda log_t: nll(logits / np.exp(log_t), targets, task)  # noqa: E731
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):  # shrinks the interval by 0.618^60: far below float noise
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(np.exp((low + high) / 2))
