"""Input for `textclass batch`: the file's rows in chunks of exactly `chunk_rows` (the last may be shorter), read by
the one tabular reader (fileio/tables.py), never the whole file at once.

A chunk holds, per row: its 0-based number among the file's data rows (the header and blank lines do not count),
the --id-column value (when one is given), the text (None when the row has none or it cannot be read) and the
reader's error for the row (invalid UTF-8, a ragged CSV row, a JSONL line that is not an object). Chunks always
start at multiples of `chunk_rows` from row 0, so a resumed run batches rows exactly as an uninterrupted one did and
computes bit-identical scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from textclass.fileio.tables import Table, open_table, pick_column, records

BATCH_FORMATS = ("csv", "tsv", "jsonl", "parquet", "lines")
OnBytes = Callable[[int], None]  # told how far into the file reading has got, for the progress bar


@dataclass(frozen=True)
class InputSpec:
    """Which file, in which format, and which columns hold the text and the id."""

    table: Table
    text_column: str
    id_column: str | None = None

    @property
    def path(self) -> str:
        return self.table.path

    @property
    def format(self) -> str:
        return self.table.format


@dataclass(frozen=True)
class Chunk:
    rows: list[int]
    ids: list[Any] | None  # None without an --id-column
    texts: list[str | None]
    errors: list[str | None]

    def __len__(self) -> int:
        return len(self.rows)


def input_spec(path: str, text_column: str | None, id_column: str | None) -> InputSpec:
    """The input's header, read and checked (the columns exist) before any model is loaded."""
    table = open_table(path, BATCH_FORMATS)
    text = pick_column(table, text_column, "--text-column")
    if id_column is not None:
        pick_column(table, id_column, "--id-column")
    return InputSpec(table, text, id_column)


def id_kind(spec: InputSpec) -> Any:
    """Type of the output id column: "int64" (the row number), "string" (text formats), or Parquet's own type."""
    if spec.id_column is None:
        return "int64"
    if spec.format == "parquet":
        from textclass.fileio.parquet import column_type

        return column_type(spec.path, spec.id_column)
    return "string"


def read_chunks(
    spec: InputSpec, chunk_rows: int, skip_rows: int = 0, on_bytes: OnBytes | None = None
) -> Iterator[Chunk]:
    """Chunks of the input from row `skip_rows` (a multiple of chunk_rows) on."""
    if skip_rows % chunk_rows:
        raise ValueError(f"skip_rows {skip_rows} is not a multiple of chunk_rows {chunk_rows}")
    columns = {"text": spec.text_column, "id": spec.id_column}
    chunk = _empty(spec)
    for record in records(spec.table, columns, skip_rows, lenient_roles=("id",), on_bytes=on_bytes):
        chunk.rows.append(record.number)
        chunk.texts.append(record.values["text"])
        chunk.errors.append(record.error)
        if chunk.ids is not None:
            chunk.ids.append(record.values["id"])
        if len(chunk) == chunk_rows:
            yield chunk
            chunk = _empty(spec)
    if len(chunk):
        yield chunk


def _empty(spec: InputSpec) -> Chunk:
    return Chunk([], None if spec.id_column is None else [], [], [])
