"""Crash-safe chunked output: part files plus an atomically replaced manifest, merged into one file at the end.

Layout while running, for `--output scores.parquet`:
  scores.parquet.parts/manifest.json      what is done: settings fingerprint, rows_done, the part files in order
  scores.parquet.parts/part-000000.parquet one per chunk, in input order
Each part is written to a temporary name, fsynced and renamed, and only then listed in the manifest (itself
written to a temporary file, fsynced and os.replace'd). A SIGKILL at any instant therefore leaves a manifest
that lists only complete parts, which together hold rows 0..rows_done-1; a resume continues at rows_done and
overwrites any part the manifest does not list. When every row is in, the parts are merged into the output
(again via a temporary file and os.replace) and the parts folder is removed. The folder appears with the first
part, so a run that fails before scoring its first row leaves nothing behind.
JSON lines are written with the standard library; Parquet needs pyarrow (the `parquet` extra), checked by
output_format before any work starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from textclass.errors import InputError
from textclass.fileio import atomic_write
from textclass.fileio.tables import require_parquet

if TYPE_CHECKING:
    from textclass.batch.score import Columns, Fields

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MANIFEST_VERSION = 1
# Fault injection for the kill-and-resume tests: "point:n" SIGKILLs this process at that point of part n.
CRASH_AT = os.environ.get("TEXTCLASS_BATCH_CRASH_AT")


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"cannot tell the output format of {path}: expected a name ending in .parquet or .jsonl")
    if OUTPUT_FORMATS[suffix] == "parquet":
        require_parquet("writing Parquet")
    return OUTPUT_FORMATS[suffix]


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


class PartStore:
    """Appends chunks of output rows in order; survives being killed at any moment."""

    def __init__(self, output: str | Path, fields: Fields, fingerprint: dict[str, Any], resume: bool):
        self.output = Path(output)
        self.format = output_format(self.output)
        self.fields = fields
        self.folder = parts_folder(self.output)
        self.manifest_path = self.folder / "manifest.json"
        if self.folder.is_dir() and self.manifest_path.is_file():
            if not resume:
                raise InputError(
                    f"{self.folder} holds an interrupted run; add --resume to continue it, "
                    "or delete that folder to start over"
                )
            self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            _check_same_job(self.manifest.get("fingerprint", {}), fingerprint, self.folder)
        else:
            if self.output.exists():
                what = "is already complete (there is no .parts folder to resume)" if resume else "already exists"
                raise InputError(f"{self.output} {what}; delete it or choose another --output")
            # The folder and manifest are made with the first part: a run that never scores a row leaves nothing.
            self.manifest = {"version": MANIFEST_VERSION, "fingerprint": fingerprint, "rows_done": 0, "parts": []}

    @property
    def rows_done(self) -> int:
        return int(self.manifest["rows_done"])

    def write(self, columns: Columns) -> None:
        """Make a chunk durable: the part file first, then the manifest entry that makes it count."""
        if not self.manifest_path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._save_manifest()
        index = len(self.manifest["parts"])
        name = f"part-{index:06d}.{self.format}"
        rows = len(columns["error"])
        atomic_write(self.folder / name, lambda f: _write_rows(f, columns, self.fields, self.format), durable=True)
        _crash_point("part-written", index)
        self.manifest["parts"].append({"name": name, "rows": rows})
        self.manifest["rows_done"] = self.rows_done + rows
        self._save_manifest(crash_index=index)
        _crash_point("part-listed", index)

    def finish(self) -> Path:
        """Merge the parts, in order, into the output file; remove the parts folder."""
        parts = [self.folder / p["name"] for p in self.manifest["parts"]]
        if self.format == "jsonl":
            merge = lambda f: _concat(f, parts)  # JSON lines concatenate as bytes
        else:
            merge = lambda f: _merge_parquet(f, parts, self.fields)
        atomic_write(self.output, merge, durable=True)
        _crash_point("merged", 0)
        shutil.rmtree(self.folder, ignore_errors=True)  # absent when the input had no rows
        return self.output

    def _save_manifest(self, crash_index: int = -1) -> None:
        text = json.dumps(self.manifest, indent=1).encode("utf-8")

        def fill(f: BinaryIO) -> None:
            f.write(text[: len(text) // 2])
            _crash_point("manifest-half-written", crash_index)  # a torn temporary file must not matter
            f.write(text[len(text) // 2 :])

        atomic_write(self.manifest_path, fill, durable=True)


def _check_same_job(saved: dict[str, Any], current: dict[str, Any], folder: Path) -> None:
    def show(key: str) -> str:
        if isinstance(saved.get(key), dict) and isinstance(current.get(key), dict) and key != "score_options":
            return f"{key} changed"  # e.g. the model's files: too long to print
        return f"{key} ({saved.get(key)!r} then, {current.get(key)!r} now)"

    changed = [show(key) for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if changed:
        raise InputError(
            f"cannot resume: the interrupted run in {folder} used different settings: {'; '.join(changed)}. "
            "Rerun with the same input, model and options, or delete that folder to start over"
        )


def _crash_point(point: str, index: int) -> None:
    if CRASH_AT == f"{point}:{index}":
        os.kill(os.getpid(), signal.SIGKILL)


def _write_rows(f: BinaryIO, columns: Columns, fields: Fields, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(arrow_table(columns, fields), f)
    else:
        names = [name for name, _ in fields]
        # default=str: a Parquet input's id of a type JSON lacks (a timestamp, a decimal) is written as its text.
        lines = [json.dumps(dict(zip(names, row)), ensure_ascii=False, default=str)
                 for row in zip(*(columns[name] for name in names))]  # fmt: skip
        f.write("".join(line + "\n" for line in lines).encode("utf-8"))


def arrow_table(columns: Columns, fields: Fields) -> Any:
    """The columns as a pyarrow Table of the output's schema (Parquet output and the Ray engine)."""
    import pyarrow as pa

    return pa.Table.from_pydict({name: columns[name] for name, _ in fields}, schema=arrow_schema(fields))


def arrow_schema(fields: Fields) -> Any:
    import pyarrow as pa

    types = {"int64": pa.int64(), "int32": pa.int32(), "float32": pa.float32(), "string": pa.string(),
             "top_k": pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))}  # fmt: skip
    return pa.schema([(name, types[kind] if isinstance(kind, str) else kind) for name, kind in fields])


def _concat(f: BinaryIO, parts: list[Path]) -> None:
    for part in parts:
        with open(part, "rb") as source:
            shutil.copyfileobj(source, f, 1 << 20)


def _merge_parquet(f: BinaryIO, parts: list[Path], fields: Fields) -> None:
    import pyarrow.parquet as pq

    schema = arrow_schema(fields)
    with pq.ParquetWriter(f, schema) as writer:  # one part in memory at a time
        for part in parts:
            writer.write_table(pq.read_table(part, schema=schema))
