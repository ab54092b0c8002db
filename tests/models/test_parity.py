"""Logits and pipeline output equal transformers', per family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CORPUS, FAMILIES
from familykit import (
    SCORED,
    TEXTS,
    assert_same_shape_and_values,
    check_first_only,
    check_gpu,
    needs_gpu,
    reference_logits,
)
from textclass import Classifier


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(tiny_checkpoints, family):
    folder, model, tokenizer = tiny_checkpoints[family]
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    ours = clf.logits(TEXTS)
    ref = reference_logits(model, tokenizer, TEXTS)
    assert ours.shape == (len(TEXTS), 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_computes_the_first_token_alone(tiny_checkpoints, family):
    check_first_only(tiny_checkpoints[family][0])


@pytest.mark.parametrize("family", FAMILIES)
def test_pairs_match_transformers(tiny_checkpoints, family):
    folder, model, tokenizer = tiny_checkpoints[family]
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    firsts, seconds = CORPUS[:7], CORPUS[7:14]
    ours = clf.logits(list(zip(firsts, seconds)))
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, firsts, seconds), atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_output_equal(tiny_checkpoints, family):
    from transformers import pipeline

    folder, model, tokenizer = tiny_checkpoints[family]
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    cases = [
        (SCORED[0], {}),
        (SCORED, {}),
        (SCORED[0], {"top_k": None}),
        (SCORED, {"top_k": None}),
        (SCORED, {"top_k": 2}),
        (SCORED[:3], {"top_k": 1}),
        (SCORED[:3], {"function_to_apply": "sigmoid"}),
        (SCORED[:3], {"function_to_apply": "none", "top_k": None}),
        ({"text": SCORED[0], "text_pair": SCORED[1]}, {}),
        ([{"text": SCORED[2], "text_pair": SCORED[3]}], {"top_k": None}),
    ]
    for inputs, kwargs in cases:
        expected = pipe(inputs, truncation=True, **kwargs)
        got = clf(inputs, **kwargs)
        assert_same_shape_and_values(got, expected)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_batch_equals_single_and_keeps_order(tiny_checkpoints, family):
    folder, _, _ = tiny_checkpoints[family]
    # A small budget forces several batches of mixed widths.
    clf = Classifier.from_pretrained(folder, dtype="fp32", max_batch_tokens=96)
    together = clf.logits(TEXTS)
    one_by_one = np.concatenate([clf.logits([t]) for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5, rtol=0)
    reversed_order = clf.logits(TEXTS[::-1])
    np.testing.assert_allclose(reversed_order[::-1], together, atol=1e-5, rtol=0)
    assert not np.allclose(together[0], together[1])  # distinct inputs, distinct rows: order is observable


def test_truncation_off_rejects_long_text(tiny_checkpoints):
    from textclass.errors import InputError

    clf = Classifier.from_pretrained(tiny_checkpoints["bert"][0], dtype="fp32")
    with pytest.raises(InputError, match="at most 64"):
        clf.logits(["word " * 300], truncation=False)
    assert clf.logits(["word " * 300]).shape == (1, 3)


@pytest.mark.slow
def test_minilm_hidden_states_match_transformers(minilm_dir):
    from transformers import AutoModel, AutoTokenizer

    from textclass.checkpoint import build_model, open_checkpoint

    checkpoint = open_checkpoint(minilm_dir)
    ours, new_head = build_model(checkpoint)
    assert sorted(new_head) == ["head.out.bias", "head.out.weight"]  # the pooler is reused as head.dense
    ref = AutoModel.from_pretrained(minilm_dir).eval()
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = ref(**enc).last_hidden_state
        got = ours.encoder(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    mask = enc["attention_mask"].bool()
    assert (got[mask] - expected[mask]).abs().max().item() < 1e-4


@needs_gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_matches_transformers(tiny_checkpoints, family):
    check_gpu(*tiny_checkpoints[family])


def test_gpu_queue_returns_every_batch_in_order(tiny_checkpoints):
    """On a GPU the torch engine launches batches ahead of fetching their logits; that queue yields every batch's
    logits once and in order. Its logic is the same on any device, so it runs here on the CPU too."""
    from textclass.runtime.batching import make_batches
    from textclass.runtime.torch_engine import QUEUED_BATCHES

    clf = Classifier.from_pretrained(tiny_checkpoints["bert"][0], device="cpu", dtype="fp32", max_batch_tokens=96)
    batches = list(make_batches(clf.encode(TEXTS), 96, clf.tokenizer.pad_token_id, clf.engine.uses_token_types))
    assert len(batches) > QUEUED_BATCHES + 1
    for queued, batch in zip(clf.engine._queued(batches), batches, strict=True):
        np.testing.assert_array_equal(queued, clf.engine(batch))
