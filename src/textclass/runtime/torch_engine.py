"""The torch engine: the family's nn.Module in fp32, bf16, fp16 or dynamic int8, on any device."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from textclass.runtime.batching import Batch
    from textclass.runtime.engine import Rescored

# Batches a GPU holds queued ahead of the one whose logits are being fetched: enough to hide Python's time between
# batches; the logits themselves are a few numbers a row.
QUEUED_BATCHES = 3


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
        return self._launch(batch).cpu().numpy()

    def _launch(self, batch: Batch) -> torch.Tensor:
        """Queue one batch's forward pass; its float32 logits, still on the device (on a GPU, perhaps not computed
        yet: fetching them waits)."""
        import torch

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, non_blocking=True)

        with torch.inference_mode():
            logits = self.model(
                tensor(batch.input_ids),
                tensor(batch.attention_mask),
                tensor(batch.token_type_ids) if self.uses_token_types and batch.token_type_ids is not None else None,
            )
        return logits.float()

    def map(self, batches: Sequence[Batch], one_thread: bool = False) -> Iterator[np.ndarray]:
        # torch splits each batch over the CPUs (or the GPU) itself: one batch at a time. On a GPU the next batches
        # are queued before a batch's logits are fetched, so the GPU never waits for Python between batches.
        if not self.device.startswith("cuda"):
            return map(self, batches)
        return self._queued(batches)

    def _queued(self, batches: Sequence[Batch]) -> Iterator[np.ndarray]:
        pending: deque[torch.Tensor] = deque()
        for batch in batches:
            pending.append(self._launch(batch))
            if len(pending) > QUEUED_BATCHES:
                yield pending.popleft().cpu().numpy()
        while pending:
            yield pending.popleft().cpu().numpy()
