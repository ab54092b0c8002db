"""Read a `tf_model.h5` (Keras H5 weights, as transformers 4.x TF models save them) into PyTorch-named arrays.

Only h5py and numpy are needed; neither TensorFlow nor torch is imported. The file holds one group per
top-level Keras layer (`layer_names`), each listing its variables in `weight_names` as
`<model scope>/<layer>/<path>:0`. As in transformers' own TF loader, the model scope
(`tf_bert_for_sequence_classification`) is dropped and the rest is translated by `models.tf_names`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from textclass.checkpoint.tf_names import pytorch_name
from textclass.errors import CheckpointError


def _names(node: Any, key: str) -> list[str]:
    """A list-of-names attribute; Keras splits one over 64 KB into `key0`, `key1`, ... chunks."""
    if key in node.attrs:
        values = list(node.attrs[key])
    else:
        values, chunk = [], 0
        while f"{key}{chunk}" in node.attrs:
            values.extend(node.attrs[f"{key}{chunk}"])
            chunk += 1
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    """PyTorch name → array for every variable in the file, Dense kernels transposed to (out, in)."""
    import h5py

    tensors: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    with h5py.File(path, "r") as file:
        root = file["model_weights"] if "model_weights" in file and "layer_names" not in file.attrs else file
        layers = _names(root, "layer_names")
        if not layers:
            raise CheckpointError(f"{path} has no Keras layer_names; expected weights saved by a TF transformers model")
        for layer in layers:
            group = root[layer]
            for weight_name in _names(group, "weight_names"):
                scoped = weight_name.split("/", 1)[1] if "/" in weight_name else weight_name
                name, transposed = pytorch_name(scoped)
                if name in sources:
                    raise CheckpointError(f"{path}: {weight_name} and {sources[name]} both translate to {name}")
                array = np.asarray(group[weight_name])
                if transposed and array.ndim == 2:
                    array = array.T  # (in, out) → (out, in)
                tensors[name] = np.ascontiguousarray(array)
                sources[name] = weight_name
    return tensors
