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
