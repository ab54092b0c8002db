"""`textclass check`: measure a model's fast mode against exact fp32 on the user's own texts, and judge it by the
accuracy contract (contract.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.accuracy.contract import Verdict, evaluate

if TYPE_CHECKING:
    from textclass.classifier import Classifier


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


def read_texts(path: str, text_column: str | None = None, limit: int | None = None) -> list[str]:
    """The texts of a .txt file (one a line) or of a CSV/TSV/JSONL/JSON/Parquet column (`text_column`, else
    `text`, else `sentence`), read by the one tabular reader: rows without text are left out, a missing column or
    a row that cannot be read is an error naming it. Reads only the header before failing on a column."""
    from textclass.errors import InputError
    from textclass.fileio.tables import open_table, pick_column, records

    table = open_table(path)
    column = pick_column(table, text_column)
    texts = []
    for record in records(table, {"text": column}):
        text = record.check(table.path).values["text"]
        if text and text.strip():
            texts.append(text)
            if limit and len(texts) >= limit:
                break
    if not texts:
        raise InputError(f"{path} holds no texts to check")
    return texts


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
    counts = fast.engine.rescored  # None: an engine that scores each text once
    before = (counts.texts, counts.again) if counts is not None else (0, 0)
    (fast_probs, fast_rate), (exact_probs, exact_rate) = timed(fast), timed(exact)
    rescored = None if counts is None else (counts.again - before[1]) / (counts.texts - before[0])
    fast_rate, exact_rate = max(fast_rate, timed(fast)[1]), max(exact_rate, timed(exact)[1])
    picks = np.unique(np.linspace(0, len(texts) - 1, min(alone, len(texts))).astype(int))
    alone_probs = probabilities(fast, [texts[i] for i in picks], batch_size=1)
    verdict = evaluate(exact_probs, fast_probs, alone_probs, fast_probs[picks], exclusive=exclusive)
    return Measurement(verdict, fast.precision, fast.precision_reason, exact.precision, fast_rate, exact_rate,
                       rescored)  # fmt: skip


def probabilities(clf: Classifier, texts: list[str], batch_size: int | None = None) -> np.ndarray:
    """(texts, labels) probabilities as the model reports them (Classifier.scores): its temperature, then softmax
    or sigmoid."""
    _function(clf)  # raw scores (regression) have no probabilities to compare
    return clf.scores(clf.logits(texts, batch_size=batch_size))


def _function(clf: Classifier) -> str:
    from textclass import postprocess
    from textclass.errors import InputError

    function = postprocess.resolve_function(None, clf.config.problem_type, clf.config.num_labels)
    if function == "none":
        raise InputError(f"{clf.folder} outputs raw scores (regression): the contract compares probabilities")
    return function
