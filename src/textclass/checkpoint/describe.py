"""What a checkpoint holds, read from its files without building the model (the seed's "inspect the model")."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

from textclass.checkpoint.folder import Checkpoint, open_checkpoint
from textclass.checkpoint.weights import normalise_name
from textclass.errors import CheckpointError


def _tensor_shapes(checkpoint: Checkpoint) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype); safetensors from the headers alone, other formats by reading the tensors."""
    if checkpoint.weight_format != "safetensors":
        from textclass.checkpoint.weights import read_arrays, read_tensors  # they name the file when it cannot be read

        # tf_model.h5 reads as numpy (float32, as Keras saved it); pytorch_model.bin needs torch.
        tensors = read_arrays(checkpoint) if checkpoint.weight_format == "h5" else read_tensors(checkpoint)
        return {
            name: (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")) for name, tensor in tensors.items()
        }
    from safetensors import safe_open

    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for path in checkpoint.weight_files:
        try:
            with safe_open(str(path), framework="numpy") as handle:
                for name in handle.keys():
                    part = handle.get_slice(name)
                    shapes[name] = (tuple(part.get_shape()), str(part.get_dtype()).lower())
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
    return shapes


def describe(path_or_id: str | os.PathLike[str]) -> dict[str, Any]:
    checkpoint = open_checkpoint(path_or_id)
    config = checkpoint.config
    shapes = _tensor_shapes(checkpoint)
    head = checkpoint.family.head_names(config)
    present = {normalise_name(name, checkpoint.family.base_prefix) for name in shapes}
    parameters = sum(math.prod(shape) for shape, _ in shapes.values())
    dtypes = Counter(dtype for _, dtype in shapes.values())
    return {
        "folder": str(checkpoint.folder),
        "family": config.family,
        "model_type": config.model_type,
        "architectures": config.raw.get("architectures"),
        "layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "activation": config.activation,
        "vocab_size": config.vocab_size,
        "max_length": config.max_tokens,
        "labels": list(config.id2label),
        "problem_type": config.problem_type,
        "has_classification_head": head <= present,
        "parameters": parameters,
        "weight_dtype": dtypes.most_common(1)[0][0] if dtypes else None,
        "weight_files": [p.name for p in checkpoint.weight_files],
        "weight_bytes": sum(p.stat().st_size for p in checkpoint.weight_files),
    }

