"""Group tokenized inputs into padded batches: sorted by length, capped by a token budget.

Sorting keeps padding small (neighbours have similar lengths); the budget caps rows × padded width,
so a batch of short texts holds many rows and a batch of long ones few. Batches carry the caller's
indices so results can be put back in input order.

A batch also closes early when the padding it would carry outweighs what another forward pass costs: before a
row shorter than the batch's width, the rows the batch could still take (each no longer than that row: they
come sorted) would each be padded by the difference, and when that padding exceeds PASS_TOKENS the next
row starts a batch of its own. This matters when few texts of mixed lengths arrive together (a server's
round), hardly after a global sort of many texts, whose neighbours have nearly equal lengths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from textclass.checkpoint.tokenizer import Encoded

# A forward pass's fixed cost in tokens of work (reading every weight once, dispatching every operator): on a 2-core
# Xeon with AMX, a 1-row pass of the bundled model took 0.35 ms more than its 25 tokens' share of a 10-row pass
# (~5 tokens) on one thread, more with both cores busy. Rounds of 16-24 SST-5 train sentences on two lanes,
# as the server runs them, ran fastest at 10-15 (+3-5% over closing at 75% fill; 25 gained nothing).
PASS_TOKENS = 12


@dataclass(frozen=True)
class Batch:
    indices: np.ndarray  # (rows,) positions of these rows in the caller's input
    input_ids: np.ndarray  # (rows, width) int64, right-padded
    attention_mask: np.ndarray  # (rows, width) int64, 1 for tokens
    token_type_ids: np.ndarray | None  # (rows, width) int64, or None when the model has no token types


def plan(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int | None = None) -> list[list[int]]:
    """Split indices into batches, longest first, so that rows × longest length ≤ max_batch_tokens.

    An input longer than the whole budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for position, index in enumerate(order):
        if current:
            width = lengths[current[0]]  # the first row is the longest: it sets the padded width
            full = (len(current) + 1) * width > max_batch_tokens
            # Rows this batch could still take, the next one included, each padded by at least width - its length.
            room = min(max_batch_tokens // max(width, 1) - len(current), len(order) - position)
            if max_batch_size is not None:
                room = min(room, max_batch_size - len(current))
            padding = (width - lengths[index]) * room > PASS_TOKENS
            if full or padding or (max_batch_size is not None and len(current) >= max_batch_size):
                batches.append(current)
                current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def collate(encoded: Sequence[Encoded], indices: Sequence[int], pad_token_id: int, token_types: bool) -> Batch:
    width = max(len(encoded[i]) for i in indices)
    rows = len(indices)
    input_ids = np.full((rows, width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((rows, width), dtype=np.int64)
    token_type_ids = np.zeros((rows, width), dtype=np.int64) if token_types else None
    for row, index in enumerate(indices):
        item = encoded[index]
        input_ids[row, : len(item)] = item.ids
        attention_mask[row, : len(item)] = 1
        if token_type_ids is not None:
            token_type_ids[row, : len(item)] = item.type_ids
    return Batch(np.asarray(indices, dtype=np.int64), input_ids, attention_mask, token_type_ids)


def make_batches(
    encoded: Sequence[Encoded],
    max_batch_tokens: int,
    pad_token_id: int,
    token_types: bool,
    max_batch_size: int | None = None,
) -> Iterator[Batch]:
    for indices in plan([len(e) for e in encoded], max_batch_tokens, max_batch_size):
        yield collate(encoded, indices, pad_token_id, token_types)


def regroup(
    batches: Sequence[Batch], picks: Sequence[tuple[int, int]], max_batch_tokens: int, pad_token_id: int
) -> Iterator[tuple[list[int], Batch]]:
    """Rows picked from several batches, as (batch, row), put into new length-sorted batches under the budget:
    yields the positions in `picks` each new batch holds, and the batch (its indices are the rows' own)."""
    lengths = [int(batches[b].attention_mask[r].sum()) for b, r in picks]
    for group in plan(lengths, max_batch_tokens):
        rows = [(*picks[g], lengths[g]) for g in group]
        has_types = batches[rows[0][0]].token_type_ids is not None
        yield group, Batch(
            np.array([batches[b].indices[r] for b, r, _ in rows], dtype=np.int64),
            _stack(batches, rows, "input_ids", pad_token_id),
            _stack(batches, rows, "attention_mask", 0),
            _stack(batches, rows, "token_type_ids", 0) if has_types else None,
        )


def _stack(batches: Sequence[Batch], rows: list[tuple[int, int, int]], name: str, fill: int) -> np.ndarray:
    """One field of those (batch, row, length) rows: their real tokens, right-padded with `fill`."""
    out = np.full((len(rows), max(n for _, _, n in rows)), fill, dtype=np.int64)
    for row, (b, r, n) in enumerate(rows):
        out[row, :n] = getattr(batches[b], name)[r, :n]
    return out
