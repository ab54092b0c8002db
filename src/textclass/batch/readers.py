"""Streaming readers for CSV, TSV, JSONL and Parquet: fixed-size chunks of rows, never the whole file.

Every reader yields `pa.Table` chunks of exactly `chunk_rows` rows (the last may be shorter) with columns
  row   int64    0-based position among the file's data rows (the header and blank JSONL lines do not count)
  id    ...      the --id-column value (only when one is given)
  text  binary or string, null when the row has no value
  error string   set when the reader could not understand the row (invalid JSON, not an object)
Chunks always start at multiples of `chunk_rows` from row 0, so a resumed run batches rows exactly as an
uninterrupted one did and computes bit-identical scores. Text stays undecoded bytes for CSV/TSV so an
invalid UTF-8 row becomes an error row (score.prepare) instead of failing the whole file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from textclass.errors import InputError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
READ_BLOCK_BYTES = 1 << 20
Source = str | Path | BinaryIO  # a path, or an open binary file (Ray hands readers pyarrow NativeFiles)
OnBytes = Callable[[int], None]  # told how far into the file reading has got, for the progress bar


@dataclass(frozen=True)
class InputSpec:
    """Which file, in which format, and which columns hold the text and the id."""

    path: str
    format: str
    text_column: str = "text"
    id_column: str | None = None


def detect_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"cannot tell the format of {path}: expected a file ending in {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def id_type(spec: InputSpec) -> pa.DataType:
    """Type of the output id column: the row number, Parquet's own type, or text for the text formats."""
    if spec.id_column is None:
        return pa.int64()
    if spec.format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(spec.path).field(spec.id_column).type
    return pa.string()


def check_columns(spec: InputSpec) -> int | None:
    """Fail early, naming the columns that exist, when --text-column/--id-column are wrong. Returns the row count
    when the format knows it cheaply (Parquet), else None."""
    rows = None
    if spec.format == "parquet":
        import pyarrow.parquet as pq

        metadata = pq.read_metadata(spec.path)
        names, rows = metadata.schema.to_arrow_schema().names, metadata.num_rows
    elif spec.format in ("csv", "tsv"):
        import pyarrow.csv as csv

        try:
            with csv.open_csv(spec.path, parse_options=_csv_parse(spec), read_options=_csv_read()) as reader:
                names = reader.schema.names
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                raise InputError(f"{spec.path} is empty; expected a header row naming the columns") from None
            raise InputError(f"{spec.path} is not readable as {spec.format.upper()}: {exc}") from None
    else:
        first = next(_jsonl_records(spec, _lines(spec.path)), None)
        if first is None or first[1] is not None:
            return None  # an empty file, or a first line that becomes an error row of its own
        names = list(first[0].keys())
        if spec.text_column not in names:
            raise InputError(
                f"the first line of {spec.path} has no key {spec.text_column!r} (keys: {', '.join(names)}); "
                "pass --text-column KEY"
            )
        return None
    for option, name in (("--text-column", spec.text_column), ("--id-column", spec.id_column)):
        if name is not None and name not in names:
            raise InputError(f"{spec.path} has no column {name!r} ({option}); its columns are: {', '.join(names)}")
    return rows


def read_chunks(
    spec: InputSpec, chunk_rows: int, skip_rows: int = 0, source: Source | None = None, on_bytes: OnBytes | None = None
) -> Iterator[pa.Table]:
    """Chunks of the input from row `skip_rows` (a multiple of chunk_rows) on; `source` overrides the path."""
    if skip_rows % chunk_rows:
        raise ValueError(f"skip_rows {skip_rows} is not a multiple of chunk_rows {chunk_rows}")
    source = spec.path if source is None else source
    if spec.format == "parquet":
        tables = _parquet_tables(spec, source, skip_rows)
        return _rechunk(tables, chunk_rows, skip_rows, spec)
    if spec.format in ("csv", "tsv"):
        return _rechunk(_csv_tables(spec, source, skip_rows, on_bytes), chunk_rows, skip_rows, spec)
    return _jsonl_chunks(spec, _lines(source, on_bytes), chunk_rows, skip_rows)


# ---- CSV / TSV ----------------------------------------------------------------------------------
def _csv_parse(spec: InputSpec) -> Any:
    import pyarrow.csv as csv

    if spec.format == "tsv":
        # TSV is split on tabs only, as train/data.py reads it: GLUE-style files are unquoted and hold stray quote
        # characters, and a field starting with one would otherwise swallow the rows up to the next quote.
        return csv.ParseOptions(delimiter="\t", quote_char=False)
    # Quoted CSV fields may hold newlines; this costs some parsing speed but never splits a row.
    return csv.ParseOptions(delimiter=",", newlines_in_values=True)


def _csv_read() -> Any:
    import pyarrow.csv as csv

    return csv.ReadOptions(block_size=READ_BLOCK_BYTES, use_threads=False)


def _csv_tables(spec: InputSpec, source: Source, skip_rows: int, on_bytes: OnBytes | None) -> Iterator[pa.Table]:
    import pyarrow.csv as csv

    columns = [c for c in (spec.text_column, spec.id_column) if c is not None]
    # Binary, not string: pyarrow rejects a whole block on one invalid UTF-8 byte; we want one error row.
    convert = csv.ConvertOptions(include_columns=columns, column_types={c: pa.binary() for c in columns})
    stream = pa.OSFile(str(source)) if isinstance(source, (str, Path)) else source
    try:
        reader = csv.open_csv(stream, read_options=_csv_read(), parse_options=_csv_parse(spec), convert_options=convert)
        skipped = 0
        for batch in reader:
            if on_bytes is not None and isinstance(stream, pa.NativeFile):
                on_bytes(stream.tell())
            table = pa.Table.from_batches([batch])
            if skipped < skip_rows:  # resuming: rows already scored are parsed, then dropped
                drop = min(skip_rows - skipped, table.num_rows)
                skipped += drop
                table = table.slice(drop)
            if table.num_rows:
                yield _csv_columns(table, spec)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{spec.path} is not valid {spec.format.upper()}: {exc}; fix that row and rerun") from None
    finally:
        if stream is not source:
            stream.close()


def _csv_columns(table: pa.Table, spec: InputSpec) -> pa.Table:
    columns = {"text": table.column(spec.text_column)}
    if spec.id_column is not None:
        # Ids are shown as text: decode leniently so a stray byte in an id never loses the row.
        ids = [None if v is None else v.decode("utf-8", "replace") for v in table.column(spec.id_column).to_pylist()]
        columns["id"] = pa.array(ids, pa.string())
    return pa.table(columns)


# ---- Parquet ------------------------------------------------------------------------------------
def _parquet_tables(spec: InputSpec, source: Source, skip_rows: int) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    columns = [c for c in (spec.text_column, spec.id_column) if c is not None]
    # Resuming: whole row groups before skip_rows are never read; the first one needed is sliced.
    groups, offset = [], 0
    for index in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(index).num_rows
        if offset + rows > skip_rows:
            groups.append(index)
        else:
            offset += rows
    drop = skip_rows - offset
    for batch in parquet.iter_batches(batch_size=8192, row_groups=groups, columns=columns):
        table = pa.Table.from_batches([batch])
        if drop:
            cut = min(drop, table.num_rows)
            table, drop = table.slice(cut), drop - cut
        if table.num_rows:
            columns_out = {"text": table.column(spec.text_column)}
            if spec.id_column is not None:
                columns_out["id"] = table.column(spec.id_column)
            yield pa.table(columns_out)


def _rechunk(tables: Iterable[pa.Table], chunk_rows: int, first_row: int, spec: InputSpec) -> Iterator[pa.Table]:
    """Cut a stream of tables into chunks of exactly chunk_rows rows and number the rows."""
    pending: list[pa.Table] = []
    held = 0
    row = first_row
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= chunk_rows:
            merged = pa.concat_tables(pending)
            yield _finish(merged.slice(0, chunk_rows), row)
            row += chunk_rows
            rest = merged.slice(chunk_rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if held:
        yield _finish(pa.concat_tables(pending), row)


def _finish(table: pa.Table, first_row: int) -> pa.Table:
    table = table.combine_chunks()
    rows = pa.array(range(first_row, first_row + table.num_rows), pa.int64())
    errors = pa.nulls(table.num_rows, pa.string())
    return table.add_column(0, "row", rows).append_column("error", errors)


# ---- JSONL --------------------------------------------------------------------------------------
def _lines(source: Source, on_bytes: OnBytes | None = None) -> Iterator[bytes]:
    """Lines without their newline, read in 1 MiB blocks (pyarrow's NativeFile has no readline)."""
    stream = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115
    try:
        position, rest = 0, b""
        while True:
            block = stream.read(READ_BLOCK_BYTES)
            if not block:
                break
            position += len(block)
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            yield from lines
            if on_bytes is not None:
                on_bytes(position)
        if rest:
            yield rest
    finally:
        if stream is not source:
            stream.close()


def _jsonl_records(spec: InputSpec, lines: Iterable[bytes]) -> Iterator[tuple[dict, str | None]]:
    """(record, error) per non-blank line; a line that is not a JSON object becomes an error, not a crash."""
    for line in lines:
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not rows
        try:
            record = json.loads(line)
        except UnicodeDecodeError as exc:
            yield {}, f"invalid UTF-8 at byte {exc.start}"
            continue
        except ValueError as exc:
            yield {}, f"line is not valid JSON: {exc}"
            continue
        if not isinstance(record, dict):
            yield {}, f"line is a JSON {type(record).__name__}, expected an object with a {spec.text_column!r} key"
        else:
            yield record, None


def _jsonl_chunks(spec: InputSpec, lines: Iterator[bytes], chunk_rows: int, skip_rows: int) -> Iterator[pa.Table]:
    if skip_rows:  # resuming: count non-blank lines without parsing them
        skipped = 0
        for line in lines:
            if line.strip():
                skipped += 1
                if skipped == skip_rows:
                    break
    row = skip_rows
    texts: list[Any] = []
    ids: list[Any] = []
    errors: list[str | None] = []
    for record, error in _jsonl_records(spec, lines):
        text = record.get(spec.text_column)
        if error is None and text is not None and not isinstance(text, str):
            error = f"{spec.text_column!r} is a JSON {type(text).__name__}, expected a string"
        texts.append(text if isinstance(text, str) else None)
        errors.append(error)
        if spec.id_column is not None:
            value = record.get(spec.id_column)
            ids.append(value if value is None or isinstance(value, str) else json.dumps(value))
        if len(texts) == chunk_rows:
            yield _jsonl_table(row, texts, ids, errors, spec)
            row += len(texts)
            texts, ids, errors = [], [], []
    if texts:
        yield _jsonl_table(row, texts, ids, errors, spec)


def _jsonl_table(row: int, texts: list, ids: list, errors: list, spec: InputSpec) -> pa.Table:
    columns: dict[str, pa.Array] = {"row": pa.array(range(row, row + len(texts)), pa.int64())}
    if spec.id_column is not None:
        columns["id"] = pa.array(ids, pa.string())
    columns["text"] = pa.array(texts, pa.string())
    columns["error"] = pa.array(errors, pa.string())
    return pa.table(columns)
