"""Running a batch job: check it, open the output store, and dispatch to the local or the Ray engine.

Everything that can be checked is checked before the model loads, cheapest first: the options, the input's header
and columns, the output's format (and the extras Parquet or Ray need), the model's config and tokenizer.
"""

from __future__ import annotations

import time
from pathlib import Path

from textclass.batch.job import ENGINES, BatchJob, BatchResult, Progress, fingerprint
from textclass.batch.readers import id_kind, input_spec
from textclass.batch.score import output_fields
from textclass.batch.writer import PartStore, output_format
from textclass.errors import InputError
from textclass.extras import MissingExtra, installed
from textclass.fileio.tables import require_file
from textclass.tasks import chunking


def run_batch(job: BatchJob, show_progress: bool = True) -> BatchResult:
    """Score every row of job.input into job.output; with resume, continue an interrupted run of the same job."""
    from textclass.checkpoint import open_checkpoint
    from textclass.checkpoint.locate import resolve_model

    if job.engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}; got {job.engine!r}")
    if job.chunk_rows < 1 or job.workers < 1 or job.score.top_k < 0:
        raise InputError("--chunk-rows and --workers must be at least 1, --top-k at least 0")
    if job.engine == "ray" and not installed("ray"):
        raise MissingExtra("--engine ray needs Ray Data, which is not installed: pip install 'textclass[ray]'")
    require_file(job.input, "input file")
    output_format(job.output)
    spec = input_spec(str(Path(job.input).resolve()), job.text_column, job.id_column)
    model = resolve_model(job.model)
    checkpoint = open_checkpoint(model)  # config and labels only; the engines load the weights
    options = job.score  # bad long-text options fail here, before any output is written
    chunking.windows_for(checkpoint.load_tokenizer(), options.long_text, options.chunk_tokens, options.stride,
                         options.aggregate)  # fmt: skip
    chunking.check_max_windows(options.max_windows, 1)
    fields = output_fields(checkpoint.config.id2label, id_kind(spec), job.score)
    store = PartStore(job.output, fields, fingerprint(job, spec, checkpoint.folder), job.resume)
    start_rows, started = store.rows_done, time.perf_counter()
    with Progress(spec, spec.table.rows, store.rows_done, enabled=show_progress) as progress:
        if job.engine == "local":
            from textclass.batch.local import run_local

            errors = run_local(job, spec, model, store, progress)
        else:
            from textclass.batch.ray_engine import run_ray

            errors = run_ray(job, spec, model, store, progress)
    output = store.finish()
    seconds = time.perf_counter() - started
    return BatchResult(output, store.rows_done, store.rows_done - start_rows, errors, seconds)
