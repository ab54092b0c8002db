"""`textclass batch`: score a large CSV/TSV/JSONL/Parquet file into Parquet or JSONL, resumably."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textclass.cli.common import (
    AggregateOption,
    BackendOption,
    ChunkTokensOption,
    DeviceOption,
    DtypeOption,
    ModelOption,
    StrideOption,
    TextColumnOption,
    fail,
)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def batch(
    input_file: Annotated[Path, typer.Option("--input", "-i", help="CSV, TSV, JSONL, Parquet or .txt file to score.")],
    output_file: Annotated[Path, typer.Option("--output", "-o", help="Result file: .parquet or .jsonl.")],
    model: ModelOption = None,
    text_column: TextColumnOption = None,
    id_column: Annotated[
        str | None, typer.Option(help="Column copied to the output `id` (default: the 0-based row number).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Also write the K best labels (0 = all).", min=0)] = 1,
    all_scores: Annotated[bool, typer.Option("--all-scores", help="Add a score_<label> column per label.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same job.")] = False,
    chunk_rows: Annotated[int, typer.Option(help="Rows per durable chunk (the most a crash can redo).", min=1)] = 4096,
    engine: Annotated[Engine, typer.Option(help="local, or ray (Ray Data; a cluster when RAY_ADDRESS is set).")] = (
        Engine.local
    ),
    workers: Annotated[int, typer.Option(help="Ray engine: model-holding actors.", min=1)] = 2,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    long_text: Annotated[
        str, typer.Option(help="Texts past the model's limit: truncate, or chunk (score windows; a windows column).")
    ] = "truncate",
    chunk_tokens: ChunkTokensOption = None,
    stride: StrideOption = None,
    aggregate: AggregateOption = "mean",
    max_windows: Annotated[
        int | None, typer.Option(help="Chunk: a row needing more windows is an error row (default: no bound).", min=1)
    ] = None,
) -> None:
    """Score every row of a large file; rows that cannot be scored are kept with an error."""
    from textclass.batch import BatchJob, ScoreOptions, run_batch
    from textclass.errors import TextclassError

    job = BatchJob(
        input=str(input_file),
        output=str(output_file),
        model=model,
        text_column=text_column,
        id_column=id_column,
        score=ScoreOptions(top_k=top_k, all_scores=all_scores, long_text=long_text, chunk_tokens=chunk_tokens,
                           stride=stride, aggregate=aggregate, max_windows=max_windows),  # fmt: skip
        chunk_rows=chunk_rows,
        engine=engine.value,
        resume=resume,
        workers=workers,
        device=device,
        dtype=dtype,
        backend=backend,
    )
    try:
        result = run_batch(job, show_progress=not quiet and sys.stderr.isatty())
    except TextclassError as exc:
        fail(str(exc))
    if not quiet:
        typer.echo(
            f"wrote {result.rows:,} rows to {result.output} ({result.scored_now:,} scored now, "
            f"{result.errors:,} with errors, {result.rows_per_second:,.0f} rows/s)",
            err=True,
        )
