"""Running batches with ONNX Runtime on CPU: the engine that needs neither torch nor transformers.

Importing onnxruntime takes a fraction of torch's import time, which is what makes a sub-second
`textclass classify` possible; the graph itself comes from export.py via the artefacts.py cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from textclass.errors import CheckpointError

if TYPE_CHECKING:
    from textclass.batching import Batch


def cpu_threads() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class OnnxEngine:
    backend = "onnx"

    def __init__(self, path: Path, mode: str, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One intra-op pool sized to the CPUs we have; inter-op parallelism only adds contention for
        # a graph that is one chain of layers.
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise CheckpointError(f"ONNX Runtime cannot load {path}: {exc}; delete it to have it rebuilt") from exc
        self.path = path
        self.mode = mode
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.uses_token_types = "token_type_ids" in self.input_names

    @property
    def dtype(self) -> str:
        return "int8" if self.mode == "int8" else "float32"

    def __call__(self, batch: Batch) -> np.ndarray:  # (rows, num_labels) float32 logits
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.uses_token_types:
            types = batch.token_type_ids
            feeds["token_type_ids"] = np.zeros_like(batch.input_ids) if types is None else types
        (logits,) = self.session.run(["logits"], feeds)
        return np.asarray(logits, dtype=np.float32)
