"""The one reader of tabular files, for `check`, `batch`, `eval` and `train`: .csv, .tsv, .jsonl/.ndjson, .json (an
array of objects), .parquet, and .txt (one text a line).

One rule for each thing that can go wrong:
- columns: the one asked for, else `text`, else `sentence` (pick_column); a missing one is an error that lists the
  file's columns. The header is read first (open_table), before anything loads a model.
- encoding: UTF-8 (a BOM is skipped; UTF-16 is refused by name). Text formats are decoded with surrogateescape, so
  a bad byte spoils one row, not the file.
- corruption: what makes the file unreadable (no header, a broken Parquet footer, CSV quoting that never closes)
  is one error for the file; what spoils one row (invalid UTF-8, a row with more or fewer fields than the header, a
  line that is not a JSON object, a text that is not a string) is that row's `error`: `batch` writes it as an error
  row, the others stop at it with a one-line error naming the row (Record.check).
Rows stream (CSV/TSV/JSONL/.txt in blocks, Parquet by batches) except .json, which is one array. CSV, TSV, JSONL,
JSON and .txt need only the standard library; Parquet needs pyarrow, the `parquet` extra.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textclass.errors import InputError
from textclass.extras import MissingExtra, installed

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
           ".parquet": "parquet", ".pq": "parquet", ".txt": "lines", ".text": "lines"}  # fmt: skip
TEXT_COLUMNS = ("text", "sentence")  # tried in order when no column is named
BLOCK_BYTES = 1 << 20
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class Table:
    """A file whose header has been read: its format, its columns (None for a JSONL file whose first line is not
    an object: its keys are unknown), and its row count when the format knows it (Parquet)."""

    path: str
    format: str
    columns: tuple[str, ...] | None
    rows: int | None = None


@dataclass(frozen=True)
class Record:
    """One data row: its 0-based number (header and blank lines not counted), its values by role (None where the
    row has none), and why it cannot be used, if it cannot."""

    number: int
    values: dict[str, Any]
    error: str | None = None

    def check(self, path: str) -> Record:
        """The record, or an InputError naming the file and the row: for readers that stop at a bad row."""
        if self.error is not None:
            raise InputError(f"{path}: data row {self.number + 1}: {self.error}; fix that row and rerun")
        return self


def require_parquet(what: str) -> None:
    if not installed("pyarrow"):
        raise MissingExtra(f"{what} needs pyarrow, which is not installed: pip install 'textclass[parquet]'")


def detect_format(path: str | Path, formats: Collection[str] = tuple(set(FORMATS.values()))) -> str:
    """The format named by the file's extension, one of `formats`."""
    suffix = Path(path).suffix.lower()
    if FORMATS.get(suffix) not in formats:
        names = sorted(s for s, f in FORMATS.items() if f in formats)
        raise InputError(f"cannot tell the format of {path}: expected a file ending in {', '.join(names)}")
    return FORMATS[suffix]


def require_file(path: str | Path, what: str, read_once: bool = False) -> None:
    """`path` names something to read: not missing, not a folder. A table is read more than once (its header, then
    its rows; batch scoring again to resume), so it must be a regular file; what is read once (`read_once`: one
    text per line) may be a pipe too (`--input <(grep ... texts.txt)`, /dev/stdin)."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"{what} {path} does not exist")
    if file.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file")
    if not read_once and not file.is_file():
        raise InputError(f"{what} {path} is a pipe or device, not a file: it is read more than once; save it to a "
                         "file first")  # fmt: skip


def open_table(path: str | Path, formats: Collection[str] = tuple(set(FORMATS.values()))) -> Table:
    """Read a file's header only: whether it exists, its format and its columns. File-level problems are errors."""
    file = Path(path)
    fmt = detect_format(file, formats)
    require_file(file, "data file")
    if fmt == "parquet":
        return _parquet_table(str(file))
    with open(file, "rb") as handle:
        start = handle.read(4)
    if start.startswith(_UTF16_BOMS):
        raise InputError(f"{path} is UTF-16 text; re-encode it as UTF-8")
    if fmt == "lines":
        return Table(str(file), fmt, ("text",))
    if fmt == "json":
        return Table(str(file), fmt, tuple(dict.fromkeys(k for row in _json_array(str(file)) for k in row)))
    if fmt == "jsonl":
        first = next(_jsonl_records(_lines(str(file))), None)
        return Table(str(file), fmt, None if first is None or first[1] else tuple(first[0]))
    try:
        header = next(_csv_rows(str(file), fmt), None)
    except csv.Error as exc:
        raise InputError(f"{path} is not readable as {fmt.upper()}: {exc}") from None
    if header is None:
        raise InputError(f"{path} is empty; expected a header row naming the columns")
    bad = next((name for name in header if _utf8_error(name)), None)
    if bad is not None:
        raise InputError(f"{path}: the header is not UTF-8 ({_utf8_error(bad)}); re-encode the file as UTF-8")
    return Table(str(file), fmt, tuple(header))


def pick_column(table: Table, wanted: str | None, option: str = "--text-column",
                defaults: Sequence[str] = TEXT_COLUMNS) -> str:  # fmt: skip
    """The one column rule: `wanted` if given, else the first of `defaults` the file has; an error listing the
    file's columns otherwise. A JSONL file whose keys are unknown takes `wanted` or the first default."""
    if table.columns is None:
        return wanted or defaults[0]
    shown = ", ".join(table.columns) or "none"
    if wanted is not None:
        if wanted not in table.columns:
            raise InputError(f"{table.path} has no column {wanted!r} ({option}); its columns are: {shown}")
        return wanted
    for name in defaults:
        if name in table.columns:
            return name
    looked = " or ".join(repr(name) for name in defaults)
    raise InputError(f"{table.path} has no {looked} column; its columns are: {shown}; name one with {option}")


def records(
    table: Table,
    columns: Mapping[str, str | None],
    skip: int = 0,
    text_roles: Collection[str] = ("text",),
    lenient_roles: Collection[str] = (),
    on_bytes: Any = None,
) -> Iterator[Record]:
    """The rows from number `skip` on, with values by role (`columns`: role -> column name; None leaves it out).

    text roles hold text: invalid UTF-8 or (JSON) a value that is not a string is the row's error, and Parquet
    numbers become their text. lenient roles (ids) never fail a row: bad bytes become U+FFFD, JSON values their
    JSON. Other roles (labels) come as read. `on_bytes` is told how far into a text file reading has got."""
    wanted = {role: name for role, name in columns.items() if name is not None}
    if table.format == "parquet":
        from textclass.fileio.parquet import parquet_rows

        for number, values, error in parquet_rows(table.path, wanted, skip, text_roles):
            yield Record(number, values, error)
        return
    if table.format in ("jsonl", "json"):
        parsed = _jsonl_records(_lines(table.path, on_bytes)) if table.format == "jsonl" else (
            (row, None) for row in _json_array(table.path))  # fmt: skip
        for number, (row, error) in enumerate(parsed):
            if number >= skip:
                yield _json_record(number, row, error, wanted, text_roles, lenient_roles)
        return
    if table.format == "lines":
        rows: Iterator[list[str]] = ([line] for line in _text_lines(table.path, on_bytes) if line.strip())
        header: Sequence[str] = ("text",)
    else:
        rows = _csv_rows(table.path, table.format, on_bytes)
        header = next(rows, [])
    positions = {role: header.index(name) for role, name in wanted.items() if name in header}
    number = -1
    try:
        for number, fields in enumerate(rows):
            if number >= skip:
                yield _delimited_record(number, fields, len(header), positions, text_roles, lenient_roles)
    except csv.Error as exc:
        raise InputError(f"{table.path} is not readable as {table.format.upper()} after data row {number + 1}: "
                         f"{exc}") from None  # fmt: skip


def read_lines(raw: bytes, source: str) -> tuple[list[str], int]:
    """The texts of a one-text-a-line file's bytes, and how many blank lines were skipped. Not UTF-8, no lines, or
    only blank ones: an InputError."""
    if raw.startswith(_UTF16_BOMS):
        raise InputError(f"{source} is UTF-16 text; re-encode it as UTF-8")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        shown = raw[exc.start : exc.start + 1]
        raise InputError(f"{source} is not UTF-8 text (byte {exc.start}: {shown!r}); re-encode it as UTF-8") from None
    lines = content.splitlines()
    if not lines:
        raise InputError(f"{source} is empty; expected one text per line")
    texts = [line for line in lines if line.strip()]
    if not texts:
        shown = "its line is blank" if len(lines) == 1 else f"its {len(lines)} lines are blank"
        raise InputError(f"{source} has no texts: {shown}; expected one text per line")
    return texts, len(lines) - len(texts)


# ---- text formats --------------------------------------------------------------------------------------------
def _csv_rows(path: str, fmt: str, on_bytes: Any = None) -> Iterator[list[str]]:
    """Rows of fields, blank lines skipped. TSV is split on tabs only, as GLUE files need: they are unquoted and
    hold stray quote characters (a field starting with one would swallow the rows up to the next)."""
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB: a long document is one field
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"delimiter": ","}
    with open(path, "rb") as binary:
        # newline="": line breaks inside quoted fields stay in the field, as the csv module expects.
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        for count, fields in enumerate(csv.reader(text, **dialect)):
            if fields:
                yield fields
            if on_bytes is not None and count % 1024 == 0:
                on_bytes(binary.tell())


def _text_lines(path: str, on_bytes: Any) -> Iterator[str]:
    """Lines as str.splitlines() cuts them (as `classify --input` reads a file), streamed."""
    for line in _lines(path, on_bytes):
        yield from line.decode("utf-8", "surrogateescape").splitlines()


def _lines(path: str, on_bytes: Any = None) -> Iterator[bytes]:
    """Lines without their newline, read in 1 MiB blocks; a UTF-8 BOM at the start is skipped. A line longer than
    a block is gathered in pieces and joined once: linear, however long."""
    with open(path, "rb") as stream:
        position, pending = 0, []  # pending: the pieces of a line not ended yet
        while block := stream.read(BLOCK_BYTES):
            if position == 0:
                block = block.removeprefix(b"\xef\xbb\xbf")
            position += len(block)
            *ended, rest = block.split(b"\n")
            if ended:
                ended[0] = b"".join([*pending, ended[0]])
                pending = []
                yield from ended
            pending.append(rest)
            if on_bytes is not None:
                on_bytes(position)
        tail = b"".join(pending)
        if tail:
            yield tail


def _utf8_error(value: str) -> str | None:
    """Where a surrogateescape'd value held a byte that is not UTF-8, or None."""
    try:
        value.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return f"invalid UTF-8 at byte {len(value[: exc.start].encode('utf-8', 'surrogateescape'))}"


def _delimited_record(number: int, fields: list[str], width: int, positions: dict[str, int],
                      text_roles: Collection[str], lenient_roles: Collection[str]) -> Record:  # fmt: skip
    if len(fields) != width:  # which field is which is anyone's guess: none is used
        return Record(number, dict.fromkeys(positions), f"the row has {len(fields)} fields, the header {width}")
    values: dict[str, Any] = {}
    error = None
    for role, at in positions.items():
        value = fields[at]
        if role in lenient_roles:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        elif bad := _utf8_error(value):
            error, value = error or f"{bad} of the {role}", None
        values[role] = value
    return Record(number, values, error)


# ---- JSON ------------------------------------------------------------------------------------------------------
def _jsonl_records(lines: Iterable[bytes]) -> Iterator[tuple[dict, str | None]]:
    """(record, error) per non-blank line; a line that is not a JSON object becomes an error, not a crash."""
    for line in lines:
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not rows
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield {}, f"invalid UTF-8 at byte {exc.start}"
            continue
        except ValueError as exc:
            yield {}, f"line is not valid JSON: {exc}"
            continue
        yield (record, None) if isinstance(record, dict) else ({}, f"line is a JSON {type(record).__name__}")


def _json_array(path: str) -> list[dict[str, Any]]:
    try:
        content = Path(path).read_text(encoding="utf-8-sig")
        data = json.loads(content) if content.strip() else []
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); re-encode it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path} must hold a JSON array of objects (or use .jsonl, one object per line)")
    return data


def _json_record(number: int, row: dict, error: str | None, wanted: dict[str, str], text_roles: Collection[str],
                 lenient_roles: Collection[str]) -> Record:  # fmt: skip
    values: dict[str, Any] = {}
    for role, name in wanted.items():
        value = row.get(name)
        if value is not None and role in lenient_roles and not isinstance(value, str):
            value = json.dumps(value)
        elif value is not None and role in text_roles and not isinstance(value, str):
            error, value = error or f"{name!r} is a JSON {type(value).__name__}, expected a string", None
        values[role] = value
    if error is not None and error.startswith("line is a JSON ") and "text" in wanted:
        error += f", expected an object with a {wanted['text']!r} key"
    return Record(number, values, error)


def _parquet_table(path: str) -> Table:
    require_parquet("reading Parquet")
    from textclass.fileio.parquet import parquet_header

    columns, rows = parquet_header(path)
    return Table(path, "parquet", columns, rows)
