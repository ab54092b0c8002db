"""The accuracy contract a fast mode keeps against exact fp32, as one pure function of probabilities.

Against exact fp32 on the same texts:
- at least 99.5% of the labels agree;
- a label may differ only on a near tie: where fp32's own top probability is at most 0.65;
- the mean of |Δp| is at most 0.005 and its 99th percentile at most 0.05, where a text's |Δp| is its largest
  change over its labels;
- a text's answer does not depend on its batch neighbours: alone or in a batch, |Δp| at most 1e-4.
The largest |Δp| is reported but bounds nothing: it is an extreme value (even bf16 moves one text in 2,700 by
0.024 on the bundled model).

Labels are the arg-max for exclusive labels (softmax); for independent labels (sigmoid, multi-label) each label
is its own yes/no at 0.5, a text agrees when all of them do, and a near tie is a changed label whose fp32
probability lies within 0.15 of 0.5 (the same 0.65 bound).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bounds:
    min_agreement: float = 0.995
    max_flip_confidence: float = 0.65
    max_mean_delta: float = 0.005
    max_p99_delta: float = 0.05
    max_batch_delta: float = 1e-4


CONTRACT = Bounds()


@dataclass(frozen=True)
class Clause:
    name: str
    value: float
    bound: float
    holds: bool
    rule: str  # how value compares with bound, e.g. "≥"


@dataclass(frozen=True)
class Verdict:
    texts: int
    agreement: float  # fraction of texts whose labels equal fp32's
    flips: int  # texts whose labels differ
    flip_confidence: float  # fp32's confidence on the most confident text whose label changed (0 when none did)
    mean_delta: float
    p99_delta: float
    max_delta: float
    batch_delta: float  # largest |Δp| between a text scored alone and in a batch
    clauses: tuple[Clause, ...]

    @property
    def holds(self) -> bool:
        return all(clause.holds for clause in self.clauses)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


def evaluate(
    reference: np.ndarray,
    fast: np.ndarray,
    alone: np.ndarray,
    batched: np.ndarray,
    exclusive: bool = True,
    bounds: Bounds = CONTRACT,
) -> Verdict:
    """Judge a mode against exact fp32.

    reference, fast: (texts, labels) probabilities of exact fp32 and of the mode, same texts, same order.
    alone, batched: (m, labels) probabilities of the mode for m texts (any subset) scored one at a time and
    scored in batches. exclusive: softmax labels (arg-max) rather than independent sigmoid labels.
    """
    reference, fast = np.asarray(reference, np.float64), np.asarray(fast, np.float64)
    alone, batched = np.asarray(alone, np.float64), np.asarray(batched, np.float64)
    if reference.shape != fast.shape or reference.ndim != 2 or not len(reference):
        raise ValueError(f"reference and fast must be the same (texts, labels) shape; got {reference.shape}, "
                         f"{fast.shape}")  # fmt: skip
    if alone.shape != batched.shape:
        raise ValueError(f"alone and batched must have the same shape; got {alone.shape}, {batched.shape}")
    delta = np.abs(fast - reference).max(axis=1)  # (texts,): each text's largest change over its labels
    if exclusive:
        changed = fast.argmax(axis=1) != reference.argmax(axis=1)
        confidence = reference.max(axis=1)
    else:  # per label: a changed yes/no, and fp32's confidence max(p, 1 - p) on the changed ones
        changed_labels = (fast > 0.5) != (reference > 0.5)
        changed = changed_labels.any(axis=1)
        confidence = np.where(changed_labels, np.maximum(reference, 1 - reference), 0.0).max(axis=1)
    agreement = 1.0 - changed.mean()
    flip_confidence = float(confidence[changed].max()) if changed.any() else 0.0
    mean, p99 = float(delta.mean()), float(np.quantile(delta, 0.99))
    batch_delta = float(np.abs(alone - batched).max()) if alone.size else 0.0
    clauses = (
        _at_least("label agreement", float(agreement), bounds.min_agreement),
        _at_most("changed labels only on near ties (fp32 top probability)", flip_confidence,
                 bounds.max_flip_confidence),
        _at_most("mean |Δp|", mean, bounds.max_mean_delta),
        _at_most("p99 |Δp|", p99, bounds.max_p99_delta),
        _at_most("alone vs in a batch, max |Δp|", batch_delta, bounds.max_batch_delta),
    )  # fmt: skip
    return Verdict(
        texts=len(reference),
        agreement=float(agreement),
        flips=int(changed.sum()),
        flip_confidence=flip_confidence,
        mean_delta=mean,
        p99_delta=p99,
        max_delta=float(delta.max()),
        batch_delta=batch_delta,
        clauses=clauses,
    )


def _at_least(name: str, value: float, bound: float) -> Clause:
    return Clause(name, value, bound, value >= bound, "≥")


def _at_most(name: str, value: float, bound: float) -> Clause:
    return Clause(name, value, bound, value <= bound, "≤")
