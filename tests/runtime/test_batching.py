"""Batch planning: every input once, within the token budget, and no batch that is mostly padding."""

from __future__ import annotations

import random

from textclass.runtime.batching import plan


def test_every_input_once_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)] + [5000]  # one longer than the whole budget
    batches = plan(lengths, 2048, max_batch_size=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 64
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 2048


def test_short_rows_start_a_batch_when_their_padding_outweighs_another_pass():
    lengths = [40] * 8 + [10] * 30  # all fit one 2048-token batch, padded to 40 (75% of it padding for the 10s)
    batches = plan(lengths, 2048)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[40] * 8, [10] * 30]
    # Padding worth less than another forward pass (PASS_TOKENS) is kept; more starts a new batch.
    assert len(plan([12, 11, 11], 2048)) == 1  # 2 rows x 1 token of padding
    assert plan([40, 10, 10], 2048) == [[0], [1, 2]]  # 2 rows x 30 tokens: two passes cost less
    assert len(plan([30, 25], 2048)) == 1  # the last row: 5 tokens of padding, less than a pass
    assert len(plan([30, 10], 2048)) == 2  # 20 tokens of padding, more than a pass
