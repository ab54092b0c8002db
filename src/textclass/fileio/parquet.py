"""Parquet for tables.py: the header from the footer, rows by batches, row groups before a resume point skipped.
Imported only where a .parquet file is read, so the core install (no pyarrow) never needs it. It knows nothing of
tables.py's types (that would be an import cycle): it returns plain tuples."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textclass.errors import InputError

BATCH_ROWS = 8192


def parquet_header(path: str) -> tuple[tuple[str, ...], int]:
    """(column names, rows), from the footer alone."""
    try:
        metadata = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file: {_reason(exc)}") from None
    return tuple(metadata.schema.to_arrow_schema().names), metadata.num_rows


def column_type(path: str, column: str) -> pa.DataType:
    return pq.read_schema(path).field(column).type


def parquet_rows(
    path: str, wanted: dict[str, str], skip: int, text_roles: Collection[str]
) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """(row number, values by role, error) from row `skip` on."""
    try:
        parquet = pq.ParquetFile(path)
        # Resuming: whole row groups before `skip` are never read; the first one needed is sliced.
        groups, number = [], 0
        for index in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            if number + rows > skip:
                groups.append(index)
            else:
                number += rows
        names = list(dict.fromkeys(wanted.values()))
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, columns=names):
            values, errors = {}, [None] * batch.num_rows
            for role, name in wanted.items():
                values[role] = _values(batch.column(name), role in text_roles, role, errors)
            for offset in range(batch.num_rows):
                if number >= skip:
                    yield number, {role: column[offset] for role, column in values.items()}, errors[offset]
                number += 1
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file: {_reason(exc)}") from None


def _values(column: pa.Array, text: bool, role: str, errors: list[str | None]) -> list[Any]:
    """A column as Python values; a text column as str (numbers as their text, bytes decoded: invalid UTF-8 is the
    row's error)."""
    if not text:
        return column.to_pylist()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        try:  # fast path: Arrow validates the whole column's UTF-8 at once
            return column.cast(pa.string()).to_pylist()
        except pa.ArrowInvalid:
            out: list[Any] = []
            for offset, raw in enumerate(column.to_pylist()):
                try:
                    out.append(None if raw is None else raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    out.append(None)
                    errors[offset] = errors[offset] or f"invalid UTF-8 at byte {exc.start} of the {role}"
            return out
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())  # numbers and the like score as their text
    return column.to_pylist()


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
