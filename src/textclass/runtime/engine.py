"""The engine interface: what every engine that runs batches offers its callers, declared in one place.

An engine turns a Batch into (rows, num_labels) float32 numpy logits, one batch (`__call__`) or many (`map`: ONNX
Runtime runs them side by side on the CPUs, or with `one_thread` on the caller's thread alone, so that `lanes`
calls can run at once, one per CPU: the server's batcher does that under load), and says what it is (`backend`,
`dtype`) and why it was chosen (`reason`, decided once at load by precision.py). Three engines (load.py builds them):
- torch_engine.TorchEngine: the family's nn.Module in fp32 (exact), bf16, fp16 (GPU) or dynamic int8, any device;
- onnx_engine.OnnxEngine: ONNX Runtime on CPU, fp32 or per-row int8 (onnx/quantize.py), no torch at run time;
- rescore.RescoringEngine: per-row int8 whose near ties are scored again in exact fp32, the CPU default on x86
  with AVX2 or VNNI (runtime/cpu.py) because it keeps the accuracy contract (accuracy/contract.py).
docs/performance.md has the figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from textclass.runtime.batching import Batch


@dataclass
class Rescored:
    """What a rescoring engine did so far: texts it scored, and how many of those fp32 scored again."""

    texts: int = 0
    again: int = 0


class Engine(Protocol):
    backend: str  # "torch" or "onnx"
    reason: str  # why this mode runs here, e.g. "CPU default (avx2, fma, ...): per-row int8 ...": inspect, /info, -v
    uses_token_types: bool  # whether batches must carry token_type_ids
    model: nn.Module | None  # the torch module it runs (explain's gradients reuse an fp32 one); None on ONNX Runtime
    rescored: Rescored | None  # near ties scored again (rescore.py: `textclass check` reports it); None elsewhere
    lanes: int  # how many `map(..., one_thread=True)` calls may run at once, one per CPU (1: one call at a time)

    @property
    def dtype(self) -> str: ...  # "float32", "bfloat16", "float16" or "int8"

    def __call__(self, batch: Batch) -> np.ndarray: ...  # (rows, num_labels) float32 logits

    def map(self, batches: Sequence[Batch], one_thread: bool = False) -> Iterator[np.ndarray]: ...  # in order
