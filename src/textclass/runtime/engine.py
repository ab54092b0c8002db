"""Choosing and building the engine that runs batches: backend, device and dtype, decided once at load.

An engine is a callable Batch -> (rows, num_labels) float32 numpy logits with `uses_token_types`,
`backend` and `dtype`. Two backends:
- torch: fp32 (exact), bf16, fp16 (GPU), int8 (dynamic quantization of the Linear layers); any device.
- onnx: ONNX Runtime on CPU, fp32 or int8 (fused graph; int8 with per-row activation scales, quantize.py);
  needs no torch at run time.
The CPU default is chosen by the CPU's instruction set (cpu.py): the fastest mode that keeps the accuracy
contract against exact fp32 (contract.py): per-row int8 on x86 with AVX2 or VNNI, its near ties scored again in
fp32 (rescore.py), ONNX Runtime fp32 elsewhere. An engine may also `map` many batches at once (run_batches).
A GPU defaults to torch bf16. Every engine carries `reason`: why that mode runs, decided once at load.
See docs/performance.md for the figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from textclass.runtime.batching import Batch

log = logging.getLogger("textclass")


class Engine(Protocol):
    backend: str
    uses_token_types: bool

    @property
    def dtype(self) -> str: ...

    def __call__(self, batch: Batch) -> np.ndarray: ...


def run_batches(engine: Engine, batches: Sequence[Batch]) -> Iterator[np.ndarray]:
    """Each batch's (rows, num_labels) logits, in order; an engine with a `map` of its own (ONNX Runtime: batches
    side by side on the CPUs) runs several batches that way."""
    side_by_side = getattr(engine, "map", None)
    if side_by_side is None or len(batches) < 2:
        return map(engine, batches)
    return side_by_side(batches)


