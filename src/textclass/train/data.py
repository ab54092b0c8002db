"""Labelled data for training and evaluation: CSV/TSV/JSONL/JSON/Parquet read by the one tabular reader
(fileio/tables.py: its column rule, encoding rule and corruption rule), labels encoded.

Rows that cannot be used (empty text, missing label) are dropped and counted, never lost silently:
the `Dataset` carries the counts and the CLI prints them. A row the reader cannot read (invalid UTF-8, a CSV row
with more or fewer fields than the header, a JSONL line that is not an object) is an error naming it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from textclass.errors import TextclassError
from textclass.fileio.tables import Table, open_table, pick_column, records

Task = Literal["single_label", "multi_label", "regression"]
PROBLEM_TYPES: dict[str, str] = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
LABEL_COLUMNS = ("label", "labels")
DATA_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")


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
def open_data(path: str | Path) -> Table:
    """The data file's header (fileio/tables.py): a missing file, an unknown format, an unreadable header or
    Parquet without pyarrow are errors here, before anything loads a model."""
    return open_table(path, DATA_FORMATS)


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
    table = open_data(path)
    source = str(path)
    columns = {
        "text": pick_column(table, text_column, "--text-column"),
        "text pair": pick_column(table, text_pair_column, "--text-pair-column") if text_pair_column else None,
        "label": pick_column(table, label_column, "--label-column", LABEL_COLUMNS),
    }
    texts: list[str | tuple[str, str]] = []
    labels: list[Any] = []
    dropped: Counter = Counter()
    rows = 0
    for record in records(table, columns, text_roles=("text", "text pair")):
        rows += 1
        values = record.check(source).values
        text, label = values["text"], values["label"]
        if _missing(text) or not str(text).strip():
            dropped["empty text"] += 1
            continue
        if columns["text pair"] is not None:
            pair = values["text pair"]
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
    if not rows:
        raise DataError(f"{path} is empty; expected a header and at least one row")
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
