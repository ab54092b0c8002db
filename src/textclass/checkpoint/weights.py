"""Reading a checkpoint's weights (safetensors, pytorch_model.bin, tf_model.h5) and mapping them onto the family's
parameter names through its declarative table, strictly: a tensor the table expects but the file lacks, or a
tensor nobody expects, is an error that names it. Every weight file textclass reads is read here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from textclass.checkpoint.folder import Checkpoint


def read_tensors(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors as torch tensors, under their checkpoint names (the torch engine, training)."""
    from textclass.extras import require_torch

    if checkpoint.weight_format == "bin":
        require_torch(f"reading {checkpoint.weight_files[0].name} (a PyTorch pickle)")
    require_torch("reading weights as torch tensors")
    import torch

    tensors: dict[str, torch.Tensor] = {}
    for path in checkpoint.weight_files:
        try:
            if checkpoint.weight_format == "safetensors":
                from safetensors.torch import load_file

                part = load_file(str(path), device="cpu")
            elif checkpoint.weight_format == "h5":
                from textclass.checkpoint.keras_h5 import read_keras_h5

                part = {name: torch.from_numpy(array) for name, array in read_keras_h5(path).items()}
            else:
                # weights_only refuses pickled code: a .bin from the internet cannot run anything.
                part = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
        if not isinstance(part, dict):
            raise CheckpointError(f"{path} does not hold a state dict of tensors")
        tensors.update(part)
    return tensors


def read_arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The checkpoint's float tensors as float32 numpy arrays, under their checkpoint names: what the ONNX
    builder reads. safetensors (bf16 included) and tf_model.h5 need no torch; pytorch_model.bin does."""
    import numpy as np

    if checkpoint.weight_format == "bin":
        return {name: tensor.float().numpy() for name, tensor in read_tensors(checkpoint).items()
                if tensor.is_floating_point()}  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    for path in checkpoint.weight_files:
        try:
            if checkpoint.weight_format == "safetensors":
                arrays.update((name, values) for name, (_, values) in read_sources([path]).items())
            else:
                from textclass.checkpoint.keras_h5 import read_keras_h5

                arrays.update((name, array.astype(np.float32)) for name, array in read_keras_h5(path).items())
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
    return arrays


def tensor_names(checkpoint: Checkpoint) -> list[str]:
    """Names of the checkpoint's tensors; for safetensors read from the header alone (no torch, no data)."""
    if checkpoint.weight_format == "h5":
        return list(read_arrays(checkpoint))
    if checkpoint.weight_format != "safetensors":
        return list(read_tensors(checkpoint))
    from safetensors import safe_open

    names: list[str] = []
    for path in checkpoint.weight_files:
        try:
            with safe_open(str(path), framework="numpy") as handle:
                names.extend(handle.keys())
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
    return names


def missing_head(checkpoint: Checkpoint) -> list[str]:
    """Head parameters the checkpoint lacks (a bare encoder); checks the whole weight table on the way."""
    return map_weights(checkpoint, dict.fromkeys(tensor_names(checkpoint)))[1]


def normalise_name(name: str, base_prefix: str) -> str:
    if name.startswith(base_prefix + "."):
        name = name[len(base_prefix) + 1 :]
    # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    if name.endswith(".gamma"):
        name = name[: -len("gamma")] + "weight"
    elif name.endswith(".beta"):
        name = name[: -len("beta")] + "bias"
    return name


def map_weights(checkpoint: Checkpoint, tensors: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Rename checkpoint tensors to our parameter names.

    Returns the state dict, the head parameters the checkpoint lacks (a bare encoder: the caller
    initialises them), and which checkpoint tensor became which parameter. Anything else missing
    or unexpected raises, naming the tensors.
    """
    family = checkpoint.family
    table = family.weight_table(checkpoint.config)
    # Keras names were translated (models/tf_names.py); say so, or the PyTorch names look unrelated to the file.
    via = ""
    if checkpoint.weight_format == "h5":
        via = " (translated from tf_model.h5 names: layer_._1/ffn/lin1/kernel:0 is layer.1.ffn.lin1.weight)"
    state: dict[str, Any] = {}
    state_sources: dict[str, str] = {}  # checkpoint name -> our name, for messages
    unexpected = []
    for name in list(tensors):
        key = normalise_name(name, family.base_prefix)
        if key in table:
            state[table[key]] = tensors.pop(name)
            state_sources[name] = table[key]
        elif not key.startswith(family.ignored_prefixes):
            unexpected.append(name)
    if unexpected:
        raise CheckpointError(
            f"unexpected tensors in {checkpoint.folder} for a {checkpoint.config.model_type} model: "
            f"{', '.join(sorted(unexpected)[:10])}{via}"
        )
    head = family.head_names(checkpoint.config)
    # Name missing tensors as this checkpoint spells them: with the base prefix when it uses one.
    prefixed = any(name.startswith(family.base_prefix + ".") for name in state_sources)
    missing = [family.hf_name(hf) if prefixed else hf for hf, ours in table.items() if ours not in state]
    missing_body = [name for name in missing if normalise_name(name, family.base_prefix) not in head]
    if missing_body:
        raise CheckpointError(
            f"checkpoint {checkpoint.folder} lacks tensors: {', '.join(missing_body[:10])}"
            + (f" and {len(missing_body) - 10} more" if len(missing_body) > 10 else "")
            + via
        )
    if missing and checkpoint.is_classifier_config:
        raise CheckpointError(
            f"config.json says {checkpoint.config.raw['architectures'][0]} but the weights lack its head: "
            f"{', '.join(missing)}{via}"
        )
    return state, [table[normalise_name(name, family.base_prefix)] for name in missing], state_sources


def build_model(
    checkpoint: Checkpoint, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, list[str]]:
    """The model with the checkpoint's weights, and the head parameters that were freshly initialised."""
    from textclass.models.build import build_module

    state, new_head, sources = map_weights(checkpoint, read_tensors(checkpoint))
    model = build_module(checkpoint.family, checkpoint.config, state, new_head, sources, dtype, device)
    return model, new_head



_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64}


@dataclass(frozen=True)
class Source:
    """One checkpoint tensor: where its bytes sit and how they read."""

    file: str  # name inside the checkpoint folder
    offset: int  # bytes from the start of the file
    length: int
    dtype: str  # safetensors dtype code: F32, F16, BF16
    shape: tuple[int, ...]


def read_sources(files: list[Path]) -> dict[str, tuple[Source, np.ndarray]]:
    """Each float tensor of the safetensors files as (where it is, its values as fp32)."""
    out: dict[str, tuple[Source, np.ndarray]] = {}
    for path in files:
        raw = path.read_bytes()
        (header_length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + header_length])
        start = 8 + header_length
        for name, info in header.items():
            if name == "__metadata__" or info["dtype"] not in _NUMPY:
                continue
            begin, end = info["data_offsets"]
            data = raw[start + begin : start + end]
            if info["dtype"] == "BF16":  # numpy has no bfloat16: widen the bits by hand
                values = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                values = np.frombuffer(data, _NUMPY[info["dtype"]]).astype(np.float32)
            shape = tuple(info["shape"])
            out[name] = (Source(path.name, start + begin, end - begin, info["dtype"], shape), values.reshape(shape))
    return out
