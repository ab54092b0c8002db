"""Make an exported ONNX graph read its weights from the checkpoint's safetensors files, not a copy of them.

An ONNX initializer may live in an external file at a byte offset, and a safetensors file is a JSON header
followed by each tensor's raw little-endian bytes: so every exported weight that equals a checkpoint tensor,
or its transpose, or (fused attention) a concatenation of them, can point into the safetensors file. The
graph gets a few Cast / Transpose / Concat nodes on those initializers, which ONNX Runtime folds once when
the session starts; what runs afterwards is the same fp32 graph. The artefact shrinks from the model's size
in fp32 to a few hundred kB, which lets a packaged model ship its fast ONNX form at no extra size.

Needs `onnx` and numpy only (export time); ONNX Runtime reads the result with no extra code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from textclass.checkpoint.weights import read_sources

if TYPE_CHECKING:
    import onnx

# Tensors smaller than this stay inside the graph: linking them saves nothing worth a node.
MIN_LINK_BYTES = 4096


def _key(values: np.ndarray) -> tuple[tuple[int, ...], str]:
    return values.shape, hashlib.sha1(np.ascontiguousarray(values, dtype=np.float32).tobytes()).hexdigest()


def link_weights(model: onnx.ModelProto, weight_files: list[Path], min_bytes: int = MIN_LINK_BYTES) -> dict[str, int]:
    """Rewrite `model` in place so its large initializers read from `weight_files` (same folder as the model).

    Returns counts: linked initializers, bytes left inside the graph. Initializers that match nothing stay.
    """
    from onnx import TensorProto, helper, numpy_helper

    sources = read_sources(weight_files)
    # value -> (checkpoint tensor, transposed?): exported MatMul weights are the transposed Linear weights.
    by_value: dict[tuple[tuple[int, ...], str], tuple[str, bool]] = {}
    for name, (_, values) in sources.items():
        by_value.setdefault(_key(values), (name, False))
        if values.ndim == 2:
            by_value.setdefault(_key(values.T), (name, True))

    def find(values: np.ndarray) -> list[tuple[str, bool]] | None:
        """The checkpoint tensors whose (transposed) values, concatenated on the last axis, are `values`."""
        if (hit := by_value.get(_key(values))) is not None:
            return [hit]
        for parts in (3, 2):  # fused q|k|v projections, or k|v
            if values.shape[-1] % parts == 0:
                hits = [by_value.get(_key(p)) for p in np.split(values, parts, axis=-1)]
                if all(h is not None for h in hits):
                    return hits  # type: ignore[return-value]
        return None

    graph = model.graph
    new_nodes: list[onnx.NodeProto] = []
    kept: list[onnx.TensorProto] = []
    linked_tensors: dict[str, str] = {}  # checkpoint tensor -> its external initializer's name
    stats = {"linked": 0, "embedded_bytes": 0}
    elem = {"F32": TensorProto.FLOAT, "F16": TensorProto.FLOAT16, "BF16": TensorProto.BFLOAT16}
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if values.nbytes < min_bytes or values.dtype != np.float32 or (hits := find(values)) is None:
            kept.append(init)
            stats["embedded_bytes"] += values.nbytes
            continue
        pieces = []
        for index, (source_name, transposed) in enumerate(hits):
            if source_name not in linked_tensors:
                source = sources[source_name][0]
                external = f"ckpt::{source_name}"
                tensor = TensorProto(name=external, data_type=elem[source.dtype], dims=list(source.shape))
                tensor.data_location = TensorProto.EXTERNAL
                for key, value in (("location", source.file), ("offset", source.offset), ("length", source.length)):
                    tensor.external_data.add(key=key, value=str(value))
                kept.append(tensor)
                linked_tensors[source_name] = external
                if source.dtype != "F32":
                    new_nodes.append(helper.make_node("Cast", [external], [external + "::f32"], to=TensorProto.FLOAT))
                    linked_tensors[source_name] = external + "::f32"
            piece = linked_tensors[source_name]
            if transposed:
                new_nodes.append(helper.make_node("Transpose", [piece], [f"{init.name}::t{index}"], perm=[1, 0]))
                piece = f"{init.name}::t{index}"
            pieces.append(piece)
        if len(pieces) == 1:
            new_nodes.append(helper.make_node("Identity", pieces, [init.name]))
        else:
            new_nodes.append(helper.make_node("Concat", pieces, [init.name], axis=values.ndim - 1))
        stats["linked"] += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)  # the new nodes read only initializers: first is topological order
    return stats
