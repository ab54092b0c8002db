"""Logits to labels and scores, following transformers' text-classification pipeline rules.

Pure functions of numpy arrays and config values, so they are testable without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textclass.errors import InputError

FUNCTIONS = ("softmax", "sigmoid", "none")


def default_function(problem_type: str | None, num_labels: int) -> str:
    """The pipeline's choice when the caller gives none."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def resolve_function(function_to_apply: str | None, problem_type: str | None, num_labels: int) -> str:
    if function_to_apply is None or str(function_to_apply).lower() == "default":
        return default_function(problem_type, num_labels)
    name = str(function_to_apply).lower()
    if name not in FUNCTIONS:
        raise InputError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}; got {function_to_apply!r}")
    return name


def softmax(logits: np.ndarray) -> np.ndarray:
    """Over the last axis, in the input's float dtype (training metrics use float64)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def apply(logits: Any, function: str, temperature: float = 1.0) -> Any:
    """(n, labels) float32 logits -> (n, labels) scores. softmax and sigmoid first divide the logits by the
    checkpoint's calibration temperature (`Classifier.temperature`); "none" returns the logits as they are.
    `logits` may also be a torch tensor: the result is then a tensor, differentiable (explain's gradients)."""
    if function not in FUNCTIONS:
        raise InputError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}; got {function!r}")
    if type(logits).__module__.startswith("torch"):  # no torch import here: the core install has none
        scaled = logits / temperature if function != "none" and temperature != 1.0 else logits
        return scaled.softmax(-1) if function == "softmax" else scaled.sigmoid() if function == "sigmoid" else scaled
    logits = np.asarray(logits, dtype=np.float32)
    if function != "none" and temperature != 1.0:
        logits = logits / np.float32(temperature)
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return logits


def rank(scores: np.ndarray, labels: Sequence[str], top_k: int | None) -> list[dict[str, Any]]:
    """One input's labels sorted by score, best first; top_k=None keeps them all."""
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be a positive integer or None (all labels); got {top_k}")
    # Python's stable sort, as the pipeline sorts (label order kept among ties), NaN last. Not np.argsort: numpy
    # releases the GIL to sort even two numbers, and a server's event loop then waits for a model thread to give it
    # back (17 us a request under load, against ~2 us this way).
    values = np.asarray(scores, dtype=np.float64).tolist()
    order = sorted(range(len(values)), key=lambda i: (values[i] == values[i], values[i]), reverse=True)
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": values[i]} for i in order]


def best(scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    index = int(scores.argmax())
    return {"label": labels[index], "score": float(scores[index])}


def format_output(
    scores: np.ndarray, labels: Sequence[str], top_k: int | None, legacy: bool, single: bool
) -> list[Any]:
    """Shape results exactly as `pipeline("text-classification")` does.

    legacy (top_k not given): one dict per input, and a one-element list for a single str.
    Otherwise: a list of ranked dicts per input, and that list alone for a single str.
    """
    if legacy:
        return [best(row, labels) for row in scores]
    ranked = [rank(row, labels, top_k) for row in scores]
    return ranked[0] if single else ranked
