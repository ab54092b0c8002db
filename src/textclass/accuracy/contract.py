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


# ---- measuring a model against the contract (`textclass check`) ------------------------------------------------
TEXT_FILE_SUFFIXES = (".txt", ".text")  # one text per line; other formats are batch/readers.py's


@dataclass(frozen=True)
class Measurement:
    verdict: Verdict
    mode: str  # e.g. "onnx-int8"
    reason: str  # why that mode runs on this machine
    reference: str  # the exact fp32 mode it is compared with
    mode_texts_per_second: float
    reference_texts_per_second: float
    rescored: float | None = None  # share of the texts the mode scored again in fp32 (near ties, rescore.py)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.as_dict()}


def read_texts(path: str, text_column: str = "text", limit: int | None = None) -> list[str]:
    """The texts of a .txt file (one a line) or of a CSV/TSV/JSONL/Parquet column; rows without text are left
    out. A missing column is an error that names the columns the file has."""
    from pathlib import Path

    from textclass.errors import InputError

    file = Path(path)
    if not file.is_file():
        raise InputError(f"data file {path} does not exist")
    if file.suffix.lower() in TEXT_FILE_SUFFIXES:
        texts = [line for line in file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    else:
        from textclass.batch.readers import InputSpec, check_columns, detect_format, read_chunks

        spec = InputSpec(str(file), detect_format(file), text_column)
        check_columns(spec)
        texts = []
        for chunk in read_chunks(spec, chunk_rows=4096):
            for value in chunk.column("text").to_pylist():
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                if text and text.strip():
                    texts.append(text)
            if limit and len(texts) >= limit:
                break
    if not texts:
        raise InputError(f"{path} holds no texts to check")
    return texts[:limit] if limit else texts


def measure(
    model: str | None,
    texts: list[str],
    dtype: str | None = None,
    backend: str | None = None,
    alone: int = 200,
) -> Measurement:
    """Score `texts` with the model's default mode (or the one asked for) and with exact fp32, time both, score
    `alone` of them one at a time as well, and judge the mode against the contract."""
    import time

    from textclass.classifier import Classifier
    from textclass.errors import TextclassError

    fast = Classifier.from_pretrained(model, dtype=dtype, backend=backend)
    try:  # the fastest exact mode: ONNX Runtime fp32 (1e-6 from torch fp32), else what dtype="float32" gives
        exact = Classifier.from_pretrained(fast.folder, backend="onnx", dtype="fp32")
    except TextclassError:
        exact = Classifier.from_pretrained(fast.folder, dtype="float32")
    exclusive = _function(fast) == "softmax"

    def timed(clf: Classifier) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        probs = probabilities(clf, texts)
        return probs, len(texts) / (time.perf_counter() - start)

    for clf in (fast, exact):
        probabilities(clf, texts[:64])  # warm-up: thread pools, first-call allocations
    # Each mode twice, alternating, the faster run kept: a machine busy with something else slows one run.
    counted = (getattr(fast.engine, "rescored", None), getattr(fast.engine, "scored", None))
    (fast_probs, fast_rate), (exact_probs, exact_rate) = timed(fast), timed(exact)
    rescored = None if None in counted else (fast.engine.rescored - counted[0]) / (fast.engine.scored - counted[1])
    fast_rate, exact_rate = max(fast_rate, timed(fast)[1]), max(exact_rate, timed(exact)[1])
    picks = np.unique(np.linspace(0, len(texts) - 1, min(alone, len(texts))).astype(int))
    alone_probs = probabilities(fast, [texts[i] for i in picks], batch_size=1)
    verdict = evaluate(exact_probs, fast_probs, alone_probs, fast_probs[picks], exclusive=exclusive)
    return Measurement(verdict, fast.precision, fast.precision_reason, exact.precision, fast_rate, exact_rate,
                       rescored)  # fmt: skip


def probabilities(clf: Any, texts: list[str], batch_size: int | None = None) -> np.ndarray:
    """(texts, labels) probabilities as the model reports them: its temperature, then softmax or sigmoid."""
    from textclass import postprocess

    logits = clf.logits(texts, batch_size=batch_size)
    return postprocess.apply(logits / clf.temperature, _function(clf))


def _function(clf: Any) -> str:
    from textclass import postprocess
    from textclass.errors import InputError

    function = postprocess.resolve_function(None, clf.config.problem_type, clf.config.num_labels)
    if function == "none":
        raise InputError(f"{clf.folder} outputs raw scores (regression): the contract compares probabilities")
    return function
