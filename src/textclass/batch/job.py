"""A batch job: its settings, its result, the fingerprint that guards --resume, and the progress bar.

The engines (local.py, ray_engine.py) take these; run.py dispatches to them.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textclass.batch.readers import InputSpec
from textclass.batch.score import ScoreOptions
from textclass.models.family import TOKENIZER_FILES

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BatchJob:
    input: str
    output: str
    model: str | None = None
    text_column: str | None = None  # default: `text`, else `sentence` (fileio/tables.py's one column rule)
    id_column: str | None = None
    score: ScoreOptions = field(default_factory=ScoreOptions)
    chunk_rows: int = 4096
    engine: str = "local"
    resume: bool = False
    workers: int = 2  # Ray actors, each holding one copy of the model
    device: str | None = None
    dtype: str | None = None
    backend: str | None = None


@dataclass(frozen=True)
class BatchResult:
    output: Path
    rows: int  # rows in the output
    scored_now: int  # rows scored by this run (fewer than `rows` after a resume)
    errors: int  # rows written with an error in this run
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.scored_now / self.seconds if self.seconds else 0.0


# What a checkpoint is made of: its config, weights and tokenizer. Files textclass generates beside it (ONNX
# graphs and their manifests, a model card) are not: rebuilding a cache must not block a --resume.
MODEL_SOURCE_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                      "pytorch_model*.bin.index.json", "tf_model.h5", "*.model", *TOKENIZER_FILES)  # fmt: skip


def model_source_files(folder: Path) -> dict[str, list[int]]:
    """name -> [size, mtime_ns] of the checkpoint's own files (MODEL_SOURCE_FILES)."""
    files = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and any(fnmatch.fnmatchcase(path.name, pattern) for pattern in MODEL_SOURCE_FILES):
            stat = path.stat()
            files[path.name] = [stat.st_size, stat.st_mtime_ns]
    return files


def fingerprint(job: BatchJob, spec: InputSpec, model_folder: Path) -> dict[str, Any]:
    """Everything that changes the output: a resume must match it exactly. The engine may differ: both batch
    rows identically, so a local run can be finished on Ray (scores then agree to float rounding)."""
    stat = os.stat(spec.path)
    return {
        "input": spec.path,
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "model": str(Path(model_folder).resolve()),
        "model_files": model_source_files(model_folder),
        "text_column": spec.text_column,
        "id_column": job.id_column,
        "score_options": asdict(job.score),
        "chunk_rows": job.chunk_rows,
        "device": job.device,
        "dtype": job.dtype,
        "backend": job.backend,
    }


class Progress:
    """A rich progress bar on stderr: rows done, rows/s and ETA (by rows for Parquet, by bytes read otherwise)."""

    def __init__(self, spec: InputSpec, total_rows: int | None, rows_done: int, enabled: bool):
        self.enabled = enabled
        self.by_rows = total_rows is not None
        self.total = total_rows if self.by_rows else os.path.getsize(spec.path)
        self.rows = self.start_rows = rows_done
        self.started = time.perf_counter()
        self.bytes_read = 0
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("scoring"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rows]:,} rows  {task.fields[rate]:,.0f} rows/s  ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("scoring", total=self.total or None, rows=self.rows, rate=0.0)
            if self.by_rows:
                self._bar.update(self._task, completed=self.rows)
        return self

    def on_bytes(self, position: int) -> None:
        """Called by readers of text formats: how far into the file they have read."""
        self.bytes_read = position

    def advance(self, rows: int) -> None:
        self.rows += rows
        if self._bar is not None:
            rate = (self.rows - self.start_rows) / max(time.perf_counter() - self.started, 1e-9)
            completed = self.rows if self.by_rows else self.bytes_read
            self._bar.update(self._task, rows=self.rows, rate=rate, completed=completed)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
