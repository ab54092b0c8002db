"""Running batches through a model: the one place that knows about torch, devices and dtypes.

Device, dtype and threads are chosen once, when the engine is built; `__call__` only runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from textclass.errors import InputError

if TYPE_CHECKING:
    import torch

    from textclass.batching import Batch
    from textclass.models.encoder import SequenceClassifier

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}  # fmt: skip


def pick_device(device: str | None) -> str:
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return device


def pick_dtype(dtype: str | None, device: str) -> torch.dtype:
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(sorted(DTYPES))}; got {dtype!r}")
    return getattr(torch, DTYPES[dtype])


class TorchEngine:
    def __init__(self, model: SequenceClassifier, device: str):
        self.model = model
        self.device = device
        self.uses_token_types = model.config.type_vocab_size > 0

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

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
