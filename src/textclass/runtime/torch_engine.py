"""The torch engine: the family's nn.Module in fp32, bf16, fp16 or dynamic int8, on any device."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from textclass.runtime.batching import Batch
    from textclass.runtime.engine import Rescored


class TorchEngine:
    backend = "torch"
    rescored: Rescored | None = None  # scores every text once
    lanes = 1  # torch splits each batch over the CPUs itself: one call at a time

    def __init__(self, model: nn.Module, device: str, dtype: str = "float32", reason: str = ""):
        self.model = model
        self.device = device
        self.reason = reason
        self.uses_token_types = model.config.type_vocab_size > 0
        self._dtype = dtype

    @property
    def dtype(self) -> str:
        return self._dtype

    def __call__(self, batch: Batch) -> np.ndarray:  # (rows, num_labels) float32 logits
        import torch

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, non_blocking=True)

        with torch.inference_mode():
            logits = self.model(
                tensor(batch.input_ids),
                tensor(batch.attention_mask),
                tensor(batch.token_type_ids) if self.uses_token_types and batch.token_type_ids is not None else None,
            )
        return logits.float().cpu().numpy()

    def map(self, batches: Sequence[Batch], one_thread: bool = False) -> Iterator[np.ndarray]:
        return map(self, batches)  # one after another: torch splits each batch over the CPUs (or the GPU) itself
