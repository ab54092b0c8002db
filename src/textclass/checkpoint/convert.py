"""Rewrite any checkpoint textclass loads (safetensors, pytorch_model.bin, tf_model.h5) as a safetensors folder.

The output uses Hugging Face's PyTorch tensor names and keeps config.json and the tokenizer files, so a
TF-era model becomes one that transformers v5 (`AutoModelForSequenceClassification.from_pretrained`) and
textclass both load. The weights are checked exactly as loading checks them before anything is written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from textclass.checkpoint.folder import open_checkpoint
from textclass.checkpoint.locate import resolve_model
from textclass.checkpoint.weights import map_weights, read_arrays, read_tensors
from textclass.errors import CheckpointError

if TYPE_CHECKING:
    import torch


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors that share no memory: safetensors refuses tied weights (e.g. an MLM decoder)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        out[name] = tensor
    return out


def convert_checkpoint(model: str | os.PathLike[str] | None, out: str | os.PathLike[str]) -> Path:
    """Write `model` (folder, hub id or bundled name) into the new folder `out`: safetensors, config, tokenizer.

    tf_model.h5 (float32 arrays read with h5py) converts without torch; the other formats go through torch."""
    checkpoint = open_checkpoint(resolve_model(None if model is None else str(model)))
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"{target} already exists and is not an empty folder; choose a new output folder")
    # HF PyTorch names, whatever the format
    tensors = read_arrays(checkpoint) if checkpoint.weight_format == "h5" else _unshared(read_tensors(checkpoint))
    map_weights(checkpoint, dict(tensors))  # the strict check loading does: missing or unexpected tensors raise
    if checkpoint.weight_format == "h5":
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file
    target.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", *checkpoint.family.tokenizer_files):
        if (checkpoint.folder / name).is_file():
            shutil.copyfile(checkpoint.folder / name, target / name)
    return target
