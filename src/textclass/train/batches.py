"""Training batches: shuffled, then length-bucketed so a batch's rows have similar lengths (little padding).

Each epoch's plan is a pure function of (seed, epoch), so a resumed run rebuilds the same plan and
skips to the saved position instead of storing the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from textclass.checkpoint.tokenizer import Encoded
from textclass.runtime.batching import collate

# Batches per bucket: larger buckets pad less, smaller ones keep batches more random.
BUCKET_BATCHES = 50


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices of each batch of one epoch, in training order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        bucket = order[start : start + chunk]
        bucket = bucket[np.argsort(-lengths[bucket], kind="stable")]
        batches.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
    # Shuffle the batches too, so long and short batches interleave instead of running bucket by bucket.
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class TensorBatch:
    input_ids: torch.Tensor  # (rows, width)
    attention_mask: torch.Tensor  # (rows, width)
    token_type_ids: torch.Tensor | None  # (rows, width)
    targets: torch.Tensor  # (rows,) class ids / values, or (rows, labels) multi-hot
    teacher_logits: torch.Tensor | None = None  # (rows, labels) when distilling


def tensor_batch(
    encoded: Sequence[Encoded],
    targets: np.ndarray,
    indices: np.ndarray,
    pad_token_id: int,
    token_types: bool,
    device: str = "cpu",
    teacher_logits: np.ndarray | None = None,
) -> TensorBatch:
    batch = collate(encoded, [int(i) for i in indices], pad_token_id, token_types)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    return TensorBatch(
        tensor(batch.input_ids),
        tensor(batch.attention_mask),
        None if batch.token_type_ids is None else tensor(batch.token_type_ids),
        tensor(np.ascontiguousarray(targets[indices])),
        None if teacher_logits is None else tensor(np.ascontiguousarray(teacher_logits[indices])),
    )


def loss_sum(logits: torch.Tensor, targets: torch.Tensor, task: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed loss over the rows, so accumulated micro-batches can be divided by the rows of the whole step.

    Single-label: cross-entropy on logits (softmax inside; never on probabilities).
    Multi-label: BCE-with-logits, averaged over labels. Regression: squared error.
    """
    logits = logits.float()
    if task == "multi_label":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=-1).sum()
    if task == "regression":
        return F.mse_loss(logits.squeeze(-1), targets, reduction="sum")
    return F.cross_entropy(logits, targets, reduction="sum", label_smoothing=label_smoothing)
