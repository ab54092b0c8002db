"""Labelled data for training and evaluation: read CSV/TSV/JSONL/JSON/Parquet, pick columns, encode labels.

Rows that cannot be used (empty text, missing label) are dropped and counted, never lost silently:
the `Dataset` carries the counts and the CLI prints them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from textclass.errors import TextclassError

Task = Literal["single_label", "multi_label", "regression"]
PROBLEM_TYPES: dict[str, str] = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
TEXT_COLUMNS = ("text", "sentence", "content", "review")  # tried in order when --text-column is not given
LABEL_COLUMNS = ("label", "labels")


class DataError(TextclassError):
    """A data file is missing, empty, malformed, or lacks the columns or labels asked for."""


@dataclass
class Dataset:
    texts: list[str | tuple[str, str]]  # a text, or a (text, text_pair) pair
    # single_label: (n,) int64 class ids; multi_label: (n, labels) float32 multi-hot; regression: (n,) float32
    targets: np.ndarray
    raw_labels: list[Any]  # the label values as read (strings, lists, numbers), for reports
    source: str
    dropped: Counter = field(default_factory=Counter)  # reason -> rows dropped

    def __len__(self) -> int:
        return len(self.texts)

    def drop_summary(self) -> str:
        if not self.dropped:
            return ""
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.dropped.items()))
        return f"{self.source}: dropped {sum(self.dropped.values())} rows ({reasons})"


# ---- reading files ---------------------------------------------------------------------------------
def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a CSV, TSV, JSONL, JSON (array of objects) or Parquet file as dicts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DataError("reading Parquet needs pyarrow: pip install 'textclass[train]'") from exc
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DataError(f"cannot read {path} as Parquet: {exc}") from exc
    else:
        try:
            content = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text (byte {exc.start}); re-encode it as UTF-8") from exc
        if suffix in (".jsonl", ".ndjson"):
            rows = _jsonl(content, path)
        elif suffix == ".json":
            rows = _json_array(content, path)
        elif suffix in (".csv", ".tsv", ".txt"):
            rows = _delimited(content, delimiter="\t" if suffix in (".tsv", ".txt") else ",")
        else:
            raise DataError(f"{path}: unknown data format {suffix!r}; expected .csv, .tsv, .jsonl, .json or .parquet")
    if not rows:
        raise DataError(f"{path} is empty; expected a header and at least one row")
    return rows


def _delimited(content: str, delimiter: str) -> list[dict[str, Any]]:
    # GLUE TSVs are unquoted and contain stray quote characters, so TSV is split on tabs only.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # newline="" keeps line breaks inside quoted CSV fields as the csv module expects.
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter, quoting=quoting)
    return [dict(row) for row in reader]


def _jsonl(content: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON: {exc.msg}") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number} is {type(row).__name__}; expected a JSON object per line")
        rows.append(row)
    return rows


def _json_array(content: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(content) if content.strip() else []
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path} must hold a JSON array of objects (or use .jsonl, one object per line)")
    return data


# ---- columns and labels ----------------------------------------------------------------------------
def pick_column(rows: list[dict[str, Any]], wanted: str | None, defaults: Sequence[str], what: str, path: str) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))  # JSONL rows may differ in keys
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{path} has no column {wanted!r} for {what}; its columns are {columns}")
        return wanted
    for name in defaults:
        if name in columns:
            return name
    raise DataError(f"{path}: no {what} column found (looked for {list(defaults)}); its columns are {columns}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


def split_labels(value: Any, delimiter: str | None) -> list[str]:
    """A multi-label cell as a list of label names: a list, a delimited string, or a JSON list string."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("[") and delimiter is None:
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        except json.JSONDecodeError:
            pass
    parts = text.split(delimiter) if delimiter else [text]
    return [p.strip() for p in parts if p.strip()]


def is_integer_label(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def load_dataset(
    path: str | Path,
    task: Task = "single_label",
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_delimiter: str | None = None,
) -> tuple[Dataset, list[Any]]:
    """Read a file into texts and raw labels (targets are filled by `encode_targets`); drops are counted."""
    rows = read_rows(path)
    source = str(path)
    text_col = pick_column(rows, text_column, TEXT_COLUMNS, "text", source)
    pair_col = pick_column(rows, text_pair_column, (), "text pairs", source) if text_pair_column else None
    label_col = pick_column(rows, label_column, LABEL_COLUMNS, "labels", source)
    texts: list[str | tuple[str, str]] = []
    labels: list[Any] = []
    dropped: Counter = Counter()
    for row in rows:
        text, label = row.get(text_col), row.get(label_col)
        if _missing(text) or not str(text).strip():
            dropped["empty text"] += 1
            continue
        if pair_col is not None:
            pair = row.get(pair_col)
            if _missing(pair) or not str(pair).strip():
                dropped["empty text pair"] += 1
                continue
            item: str | tuple[str, str] = (str(text), str(pair))
        else:
            item = str(text)
        if label is None or (task != "multi_label" and _missing(label)):
            dropped["missing label"] += 1
            continue
        texts.append(item)
        labels.append(label)
    if not texts:
        raise DataError(f"{source}: no usable rows ({sum(dropped.values())} dropped: {dict(dropped)})")
    return Dataset(texts, np.empty(0), labels, source, dropped), labels


def label_names(values: Sequence[Any], task: Task, delimiter: str | None) -> tuple[list[str], bool]:
    """The label set of a training file, and whether its labels are class ids.

    Integer labels covering exactly 0..K-1 are class ids (GLUE/`datasets` style); other integers
    (star ratings 1..5) are names, sorted numerically; strings are names, sorted.
    """
    if task == "multi_label":
        return sorted({name for v in values for name in split_labels(v, delimiter)}), False
    if all(is_integer_label(v) for v in values):
        found = sorted({int(v) for v in values})
        return [str(i) for i in found], found == list(range(len(found)))
    return sorted({str(v).strip() for v in values}), False


def label_lookup(id2label: Sequence[str]) -> dict[str, int]:
    """Label text in a data file -> class id: the names, and plain ids when no name looks like an integer."""
    lookup = {name: i for i, name in enumerate(id2label)}
    if not any(is_integer_label(name) for name in id2label):
        lookup.update({str(i): i for i in range(len(id2label))})
    return lookup


def encode_targets(
    dataset: Dataset, task: Task, label2id: dict[str, int] | None, delimiter: str | None = None
) -> Dataset:
    """Fill `dataset.targets` from its raw labels; labels outside `label2id` are an error naming them."""
    values = dataset.raw_labels
    if task == "regression":
        try:
            dataset.targets = np.asarray([float(v) for v in values], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{dataset.source}: regression labels must be numbers ({exc})") from exc
        return dataset
    assert label2id is not None
    if task == "multi_label":
        targets = np.zeros((len(values), max(label2id.values()) + 1), dtype=np.float32)
        unknown: Counter = Counter()
        for row, value in enumerate(values):
            for name in split_labels(value, delimiter):
                if name in label2id:
                    targets[row, label2id[name]] = 1.0
                else:
                    unknown[name] += 1
    else:
        ids = np.empty(len(values), dtype=np.int64)
        unknown = Counter()
        for row, value in enumerate(values):
            name = str(int(value)) if is_integer_label(value) else str(value).strip()
            if name in label2id:
                ids[row] = label2id[name]
            else:
                unknown[name] += 1
        targets = ids
    if unknown:
        shown = ", ".join(f"{name!r} ({count} rows)" for name, count in unknown.most_common(10))
        raise DataError(
            f"{dataset.source} has labels the model does not know: {shown}; known labels are {sorted(label2id)}. "
            "Remove those rows or add training examples for them"
        )
    dataset.targets = targets
    return dataset
