"""What every command shares: the option definitions (one help text each), printing an error, reading texts.

cli/app.py and the other command modules import this module; it imports none of them.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Checkpoint folder, hub id (org/name) or bundled model name (default: the bundled model)."
    ),
]
InputOption = Annotated[Path | None, typer.Option("--input", "-i", help="File with one text per line ('-' for stdin).")]
FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f")]
DeviceOption = Annotated[str | None, typer.Option(
    help="cpu, cuda, cuda:1 or auto (default: TEXTCLASS_DEVICE, else a GPU when there is one).")]
DtypeOption = Annotated[
    str | None,
    typer.Option(
        help="fp32 (exact), bf16, fp16 or int8 (default: the checkpoint's pin, else this CPU's fast mode: per-row "
        "int8 with near ties scored again in fp32 on x86 with AVX2/VNNI/AMX, ONNX Runtime fp32 on other CPUs; bf16 "
        "on a GPU). int8 alone runs ONNX Runtime per-row int8 without rescoring."
    ),
]
TextColumnOption = Annotated[
    str | None, typer.Option(help="The column (or JSON key) holding the text (default: text, else sentence).")
]
BackendOption = Annotated[
    str | None,
    typer.Option(help="torch or onnx (ONNX Runtime, CPU only; exported once into the user cache: textclass cache)."),
]


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def read_texts(texts: list[str] | None, input_file: Path | None, verbose: bool = False) -> list[str]:
    """TEXT arguments, or the lines of --input (a file or '-'), or of piped standard input. Blank lines are
    skipped (verbose: says how many, on stderr); a file of blank lines only is an error."""
    from textclass.errors import InputError
    from textclass.fileio.tables import read_lines, require_file

    if texts and input_file:
        fail("give texts as arguments or with --input, not both")
    if texts:
        return list(texts)
    if input_file is not None:
        if str(input_file) == "-":
            raw, source = sys.stdin.buffer.read(), "standard input"
        else:
            try:
                require_file(input_file, "input file", read_once=True)
                raw, source = input_file.read_bytes(), str(input_file)
            except InputError as exc:
                fail(str(exc))
            except OSError as exc:
                fail(f"cannot read {input_file}: {exc.strerror or exc}")
    elif not sys.stdin.isatty():
        raw, source = sys.stdin.buffer.read(), "standard input"
    else:
        fail("no texts to classify; pass TEXT arguments, --input FILE, or pipe lines on standard input")
    try:
        lines, blank = read_lines(raw, source)
    except InputError as exc:
        fail(str(exc))
    if verbose and blank:
        typer.echo(f"{source}: skipped {blank} blank line{'s' if blank != 1 else ''}", err=True)
    return lines


# Texts past the model's limit (chunking.py): classify and batch take the same four options.
LongTextOption = Annotated[
    str, typer.Option(help="Texts past the model's limit: truncate, or chunk (score windows, aggregate).")
]
ChunkTokensOption = Annotated[int | None, typer.Option(help="Chunk: tokens per window (default: the limit).")]
StrideOption = Annotated[int | None, typer.Option(help="Chunk: tokens neighbouring windows share.")]
AggregateOption = Annotated[str, typer.Option(help="Chunk: mean, max or first (window scores to one).")]
MaxWindowsOption = Annotated[
    int | None,
    typer.Option(help="The most windows (model inputs; a truncated text is one) to score (default: no bound).", min=1),
]
