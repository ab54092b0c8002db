"""`textclass convert`: any supported checkpoint (tf_model.h5 included) → a safetensors checkpoint folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from textclass.cli.common import fail


def convert(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Checkpoint folder, hub id (org/name) or bundled model name.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the converted checkpoint.")],
) -> None:
    """Write a checkpoint as model.safetensors with config and tokenizer, loadable by transformers v5 and textclass.

    Reads safetensors, pytorch_model.bin or tf_model.h5 (TensorFlow-era checkpoints; TensorFlow is not needed).
    """
    from textclass.checkpoint.convert import convert_checkpoint
    from textclass.errors import TextclassError

    try:
        written = convert_checkpoint(model, out)
    except TextclassError as exc:
        fail(str(exc))
    typer.echo(f"wrote {written / 'model.safetensors'} (with config.json and tokenizer files)")
