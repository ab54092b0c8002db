"""One chunk of input rows -> one chunk of output rows: decode, validate, tokenize, run, format.

Split in two (`prepare`, then `finish` around `Classifier.run`) so an engine can place the model call as it
likes; `score_chunk` does all three, as the Ray actors do. Rows that cannot
be scored keep their place with an `error` and null label/score, so the output always has every input row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from textclass.tasks import chunking

if TYPE_CHECKING:
    from textclass.checkpoint.tokenizer import Encoded
    from textclass.classifier import Classifier

TOP_K_TYPE = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))


@dataclass(frozen=True)
class ScoreOptions:
    top_k: int = 1  # labels in the `top_k` column, best first; 0 = all; 1 = no such column (label/score say it)
    all_scores: bool = False  # one `score_<label>` column per label, in the model's label order
    # Texts past the model's limit: "truncate", or "chunk" (windows scored and aggregated; a `windows` column).
    long_text: str = "truncate"
    chunk_tokens: int | None = None
    stride: int | None = None
    aggregate: str = "mean"


@dataclass(frozen=True)
class Prepared:
    chunk: pa.Table
    errors: list[str | None]  # per row; None where the row is scored
    valid: np.ndarray  # (scored rows,) int64 positions of the scored rows in the chunk
    encoded: list[Encoded]  # tokenized texts of the valid rows (their windows, when chunking), in the same order
    plan: chunking.Plan | None = None  # long_text "chunk": which windows belong to which valid row


def output_schema(labels: Sequence[str], id_type: pa.DataType, options: ScoreOptions) -> pa.Schema:
    fields = [("id", id_type), ("label", pa.string()), ("score", pa.float32())]
    if options.top_k != 1:
        fields.append(("top_k", TOP_K_TYPE))
    if options.all_scores:
        fields += [(f"score_{label}", pa.float32()) for label in labels]
    if options.long_text == "chunk":
        fields.append(("windows", pa.int32()))
    fields.append(("error", pa.string()))
    return pa.schema(fields)


def decode_texts(column: pa.ChunkedArray | pa.Array) -> tuple[list[str | None], list[str | None]]:
    """Texts as str (None where missing or undecodable) and a per-row decoding error."""
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        try:  # fast path: Arrow validates the whole column's UTF-8 at once
            return column.cast(pa.string()).to_pylist(), [None] * len(column)
        except pa.ArrowInvalid:
            texts: list[str | None] = []
            errors: list[str | None] = []
            for raw in column.to_pylist():
                try:
                    texts.append(None if raw is None else raw.decode("utf-8"))
                    errors.append(None)
                except UnicodeDecodeError as exc:
                    texts.append(None)
                    errors.append(f"invalid UTF-8 at byte {exc.start} of the text")
            return texts, errors
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())  # numbers and the like score as their text
    return column.to_pylist(), [None] * len(column)


def prepare(clf: Classifier, chunk: pa.Table, options: ScoreOptions = ScoreOptions()) -> Prepared:
    texts, decode_errors = decode_texts(chunk.column("text"))
    errors: list[str | None] = []
    for text, reader_error, decode_error in zip(texts, chunk.column("error").to_pylist(), decode_errors):
        if reader_error or decode_error:
            errors.append(reader_error or decode_error)
        elif text is None:
            errors.append("missing text: the row has no value in the text column")
        elif not text.strip():
            errors.append("empty text")
        else:
            errors.append(None)
    valid = np.flatnonzero(np.array([e is None for e in errors], dtype=bool))
    windows = chunking.windows_for(clf.tokenizer, options.long_text, options.chunk_tokens, options.stride,
                                   options.aggregate)  # fmt: skip
    if windows is not None:
        plan = windows.plan([texts[i] for i in valid], strict=False)
        return Prepared(chunk, errors, valid, plan.encoded, plan)
    encoded = clf.encode([texts[i] for i in valid]) if len(valid) else []
    return Prepared(chunk, errors, valid, encoded)


def finish(
    clf: Classifier, prepared: Prepared, logits: np.ndarray, options: ScoreOptions, schema: pa.Schema
) -> pa.Table:
    """Output rows for a prepared chunk given (scored rows, num_labels) logits."""
    scores = clf.scores(logits)  # as clf(texts) scores them: (scored rows, num_labels), or (windows, ...)
    if prepared.plan is not None:
        scores = prepared.plan.combine(scores)
    rows = prepared.chunk.num_rows
    missing = np.ones(rows, dtype=bool)  # True where the row has no score
    missing[prepared.valid] = False
    labels = np.array(clf.labels, dtype=object)

    def per_row(values: np.ndarray, fill: object, dtype: object) -> np.ndarray:
        full = np.full(rows, fill, dtype=dtype)
        full[prepared.valid] = values
        return full

    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    columns: dict[str, pa.Array] = {
        "id": prepared.chunk.column("id" if "id" in prepared.chunk.column_names else "row"),
        "label": pa.array(per_row(labels[best], None, object), pa.string()),
        "score": pa.array(per_row(scores[np.arange(len(best)), best], 0, np.float32), mask=missing),
    }
    if options.top_k != 1:
        keep = options.top_k or len(labels)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]  # stable: ties keep label order
        ranked: list[list[dict] | None] = [None] * rows
        for position, row_order, row_scores in zip(prepared.valid, order, scores):
            ranked[position] = [{"label": labels[j], "score": float(row_scores[j])} for j in row_order]
        columns["top_k"] = pa.array(ranked, TOP_K_TYPE)
    if options.all_scores:
        for index, label in enumerate(labels):
            columns[f"score_{label}"] = pa.array(per_row(scores[:, index], 0, np.float32), mask=missing)
    if prepared.plan is not None:
        columns["windows"] = pa.array(per_row(np.array(prepared.plan.counts), 0, np.int32), mask=missing)
    columns["error"] = pa.array(prepared.errors, pa.string())
    return pa.Table.from_pydict(columns, schema=schema)


def score_chunk(clf: Classifier, chunk: pa.Table, options: ScoreOptions, schema: pa.Schema) -> pa.Table:
    prepared = prepare(clf, chunk, options)
    return finish(clf, prepared, clf.run(prepared.encoded), options, schema)
