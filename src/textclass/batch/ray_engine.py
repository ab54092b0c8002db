"""The Ray Data engine: read tasks stream the file, an actor pool scores, the driver writes the parts.

  read_datasource(_InputFile)  ─▶  map_batches(_Scorer, ActorPoolStrategy(size=workers))  ─▶  iter_batches
  (the same reader as local:        (each actor loads the model once and                  (in input order;
   same row numbers, error rows,     calls score.score_chunk on chunk_rows rows)            PartStore.write)
   resume skip without scoring)
Chunks travel between them as Arrow tables (Ray Data's batch format; Ray brings pyarrow).
Rows come back in input order (preserve_order), so the driver writes through the same PartStore as the local
engine and the final file, resume and error rows follow the same contract. Local Ray by default; the cluster
at RAY_ADDRESS when set (then the input path and the model folder must be readable on every node, and
textclass installed there).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import ray
from ray.data.datasource import FileBasedDatasource

from textclass.batch.job import BatchJob, Progress
from textclass.batch.readers import Chunk, InputSpec, read_chunks
from textclass.batch.score import Fields, ScoreOptions, score_chunk
from textclass.batch.writer import PartStore, arrow_table
from textclass.errors import TextclassError


class _InputFile(FileBasedDatasource):
    """The input file read by textclass's own streaming reader inside a Ray read task."""

    def __init__(self, spec: InputSpec, chunk_rows: int, skip_rows: int):
        super().__init__(spec.path)
        self._spec, self._chunk_rows, self._skip_rows = spec, chunk_rows, skip_rows

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> pa.NativeFile:
        if self._spec.format == "parquet":
            return filesystem.open_input_file(path)  # Parquet needs random access to its footer
        return filesystem.open_input_stream(path, buffer_size=1 << 20)  # never guess a compression from the name

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        # The spec's path, read where the task runs (the input must be readable on every node).
        for chunk in read_chunks(self._spec, self._chunk_rows, self._skip_rows):
            columns = {"row": pa.array(chunk.rows, pa.int64()), "text": pa.array(chunk.texts, pa.string()),
                       "error": pa.array(chunk.errors, pa.string())}  # fmt: skip
            if chunk.ids is not None:
                columns["id"] = pa.array(chunk.ids)
            yield pa.table(columns)


class _Scorer:
    """One actor: loads the model once, then scores chunk after chunk."""

    def __init__(self, model: str, precision: dict[str, str | None], options: ScoreOptions, fields: Fields):
        """precision: from_pretrained's device, dtype and backend."""
        from textclass.classifier import Classifier

        self.clf = Classifier.from_pretrained(model, **precision)
        self.options, self.fields = options, fields

    def __call__(self, table: pa.Table) -> pa.Table:
        names = table.column_names
        chunk = Chunk(table.column("row").to_pylist(), table.column("id").to_pylist() if "id" in names else None,
                      table.column("text").to_pylist(), table.column("error").to_pylist())  # fmt: skip
        return arrow_table(score_chunk(self.clf, chunk, self.options), self.fields)


def run_ray(job: BatchJob, spec: InputSpec, model: str, store: PartStore, progress: Progress) -> int:
    """Score the rows after store.rows_done on Ray Data into the store; returns how many rows got an error."""
    started_here = _connect(job.workers)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows must reach the writer in input order
        context.enable_progress_bars = False  # ours shows rows/s and ETA
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no execution-plan chatter on stderr
        dataset = ray.data.read_datasource(_InputFile(spec, job.chunk_rows, store.rows_done))
        scored = dataset.map_batches(
            _Scorer,
            fn_constructor_kwargs={
                "model": os.path.abspath(model) if os.path.exists(model) else model,
                "precision": {"device": job.device, "dtype": job.dtype, "backend": job.backend},
                "options": job.score,
                "fields": store.fields,
            },
            compute=ray.data.ActorPoolStrategy(size=job.workers),
            batch_size=job.chunk_rows,  # = the reader's chunks: the same batches as the local engine
            batch_format="pyarrow",
            num_cpus=1,
            **({"num_gpus": 1} if (job.device or "").startswith("cuda") else {}),  # one GPU per actor
        )
        errors = 0
        for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            store.write(table.to_pydict())
            errors += table.num_rows - table.column("error").null_count
            progress.advance(table.num_rows)
        return errors
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, TextclassError):
            raise TextclassError(str(cause).splitlines()[-1]) from None
        raise
    finally:
        if started_here:
            ray.shutdown()


def _connect(workers: int) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local Ray sized for the actors plus a reader; True if we started it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance: no token notice
        ray.init(num_cpus=workers + 1, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return True
