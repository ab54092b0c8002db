"""One chunk of input rows -> one chunk of output rows: validate, tokenize, run, format.

Split in two (`prepare`, then `finish` around `Classifier.run`) so an engine can place the model call as it
likes; `score_chunk` does all three, as the Ray actors do. Rows that cannot be scored keep their place with an
`error` and null label/score, so the output always has every input row. Output chunks are columns of plain Python
values (name -> list, in the order of `output_fields`): the writer makes JSON lines of them with the standard
library, or Parquet with pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.tasks import chunking

if TYPE_CHECKING:
    from textclass.batch.readers import Chunk
    from textclass.checkpoint.tokenizer import Encoded
    from textclass.classifier import Classifier

Columns = dict[str, list[Any]]  # an output chunk: column name -> one value per row
Fields = list[tuple[str, Any]]  # output columns: (name, type), the type "int64", "string", ... or an Arrow type


@dataclass(frozen=True)
class ScoreOptions:
    top_k: int = 1  # labels in the `top_k` column, best first; 0 = all; 1 = no such column (label/score say it)
    all_scores: bool = False  # one `score_<label>` column per label, in the model's label order
    # Texts past the model's limit: "truncate", or "chunk" (windows scored and aggregated; a `windows` column).
    long_text: str = "truncate"
    chunk_tokens: int | None = None
    stride: int | None = None
    aggregate: str = "mean"
    max_windows: int | None = None  # chunk: a row needing more windows is an error row (None: no bound)


@dataclass(frozen=True)
class Prepared:
    chunk: Chunk
    errors: list[str | None]  # per row; None where the row is scored
    valid: np.ndarray  # (scored rows,) int64 positions of the scored rows in the chunk
    encoded: list[Encoded]  # tokenized texts of the valid rows (their windows, when chunking), in the same order
    plan: chunking.Plan | None = None  # long_text "chunk": which windows belong to which valid row


def output_fields(labels: Sequence[str], id_type: Any, options: ScoreOptions) -> Fields:
    fields: Fields = [("id", id_type), ("label", "string"), ("score", "float32")]
    if options.top_k != 1:
        fields.append(("top_k", "top_k"))
    if options.all_scores:
        fields += [(f"score_{label}", "float32") for label in labels]
    if options.long_text == "chunk":
        fields.append(("windows", "int32"))
    fields.append(("error", "string"))
    return fields


def prepare(clf: Classifier, chunk: Chunk, options: ScoreOptions = ScoreOptions()) -> Prepared:
    errors: list[str | None] = []
    for text, reader_error in zip(chunk.texts, chunk.errors):
        if reader_error:
            errors.append(reader_error)
        elif text is None:
            errors.append("missing text: the row has no value in the text column")
        elif not text.strip():
            errors.append("empty text")
        else:
            errors.append(None)
    valid = np.flatnonzero(np.array([e is None for e in errors], dtype=bool))
    texts: list[str] = [chunk.texts[i] for i in valid]  # type: ignore[misc]
    windows = chunking.windows_for(clf.tokenizer, options.long_text, options.chunk_tokens, options.stride,
                                   options.aggregate)  # fmt: skip
    if windows is not None:
        plan, over = windows.plan_each(texts, options.max_windows)
        for position, error in zip(valid, over):
            errors[position] = error
        valid = valid[[error is None for error in over]] if len(valid) else valid
        return Prepared(chunk, errors, valid, plan.encoded, plan)
    return Prepared(chunk, errors, valid, clf.encode(texts) if texts else [])


def finish(clf: Classifier, prepared: Prepared, logits: np.ndarray, options: ScoreOptions) -> Columns:
    """Output rows for a prepared chunk given (scored rows, num_labels) logits."""
    scores = clf.scores(logits)  # as clf(texts) scores them: (scored rows, num_labels), or (windows, ...)
    if prepared.plan is not None:
        scores = prepared.plan.combine(scores)
    scores = np.asarray(scores, dtype=np.float32)
    rows = len(prepared.chunk)
    labels = list(clf.labels)

    def per_row(values: Sequence[Any]) -> list[Any]:
        """One value per scored row -> one per row, None where the row has no score."""
        full: list[Any] = [None] * rows
        for position, value in zip(prepared.valid.tolist(), values):
            full[position] = value
        return full

    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    chunk = prepared.chunk
    columns: Columns = {
        "id": list(chunk.rows if chunk.ids is None else chunk.ids),
        "label": per_row([labels[i] for i in best.tolist()]),
        "score": per_row(scores[np.arange(len(best)), best].tolist()),
    }
    if options.top_k != 1:
        keep = options.top_k or len(labels)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]  # stable: ties keep label order
        columns["top_k"] = per_row([[{"label": labels[j], "score": row[j]} for j in ranked]
                                    for ranked, row in zip(order.tolist(), scores.tolist())])  # fmt: skip
    if options.all_scores:
        for index, label in enumerate(labels):
            columns[f"score_{label}"] = per_row(scores[:, index].tolist())
    if prepared.plan is not None:
        columns["windows"] = per_row(prepared.plan.counts)
    columns["error"] = list(prepared.errors)
    return columns


def score_chunk(clf: Classifier, chunk: Chunk, options: ScoreOptions) -> Columns:
    prepared = prepare(clf, chunk, options)
    return finish(clf, prepared, clf.run(prepared.encoded), options)
