"""ELECTRA: logits, gradients, pipeline, tokenizer, ONNX, bare encoders and training agree with transformers.

The `check_*` helpers take any family's folder and transformers model; test_family_albert.py uses them too.
Parity checkpoints use initializer_range 0.3 so texts get logits far more than the 1e-4 tolerance apart (at
0.02 a tiny random model gives every text nearly the same logits, and a match would prove little).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import CORPUS, TINY_MAX_TOKENS
from test_parity import TEXTS, assert_same_shape_and_values, reference_logits
from textclass import Classifier
from textclass.checkpoint import build_model, open_checkpoint
from textclass.errors import CheckpointError, InputError
from textclass.inspect import describe
from textclass.train.run import train
from textclass.train.setup import TrainArgs
from trainkit import FAST, sentiment_rows, write_jsonl

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=TINY_MAX_TOKENS, initializer_range=0.3)  # fmt: skip
PAIRS = list(zip(CORPUS[:7], CORPUS[7:14]))
PIPELINE_CASES = [
    (TEXTS[0], {}),
    (TEXTS, {}),
    (TEXTS[0], {"top_k": None}),
    (TEXTS, {"top_k": None}),
    (TEXTS[:3], {"top_k": 1}),
    (TEXTS[:3], {"function_to_apply": "sigmoid"}),
    ({"text": TEXTS[0], "text_pair": TEXTS[1]}, {}),
    ([{"text": TEXTS[2], "text_pair": TEXTS[3]}], {"top_k": None}),
]


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Random init leaves LayerNorms at identity and biases at zero; move them so parity sees them."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def save(folder, model, tokenizer):
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---- checks any family's tiny checkpoint must pass ------------------------------------------------------
def check_logits(folder, model, tokenizer, pipeline_cases=PIPELINE_CASES) -> float:
    """Logits of texts and pairs, and the pipeline's output, equal transformers'; returns the largest |Δlogit|."""
    from transformers import pipeline

    clf = Classifier.from_pretrained(folder, dtype="fp32")
    ours, ref = clf.logits(TEXTS), reference_logits(model, tokenizer, TEXTS)
    assert ours.shape == (len(TEXTS), 3) and ours.dtype == np.float32
    assert np.ptp(ref, axis=0).min() > 0.1  # texts are told apart: a 1e-4 match means something
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    firsts, seconds = map(list, zip(*PAIRS))
    ours_pairs, ref_pairs = clf.logits(PAIRS), reference_logits(model, tokenizer, firsts, seconds)
    np.testing.assert_allclose(ours_pairs, ref_pairs, atol=1e-4, rtol=0)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    for inputs, kwargs in pipeline_cases:
        assert_same_shape_and_values(clf(inputs, **kwargs), pipe(inputs, truncation=True, **kwargs))
    return float(max(np.abs(ours - ref).max(), np.abs(ours_pairs - ref_pairs).max()))


def check_gradients(folder, model, tokenizer) -> None:
    """Training differentiates what transformers does: each tensor's gradient of one loss agrees (dropout off)."""
    ours, _ = build_model(open_checkpoint(folder))
    family = open_checkpoint(folder).family
    encoded = tokenizer(CORPUS, padding=True, return_tensors="pt", return_token_type_ids=True)
    targets = torch.arange(len(CORPUS)) % 3
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(**encoded).logits, targets).backward()
    args = [encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")]
    torch.nn.functional.cross_entropy(ours(*args), targets).backward()
    theirs, params = dict(model.named_parameters()), dict(ours.named_parameters())
    table = family.weight_table(ours.config)
    assert set(table.values()) == set(params)  # every parameter is checked, and named in the table once
    for hf_name, name in table.items():
        expected = theirs[family.hf_name(hf_name)].grad
        torch.testing.assert_close(params[name].grad, expected, atol=1e-6, rtol=1e-4, msg=name)
    model.zero_grad()


def check_batch_equals_single(folder) -> None:
    clf = Classifier.from_pretrained(folder, dtype="fp32", max_batch_tokens=96)  # several batches
    together = clf.logits(TEXTS)
    np.testing.assert_allclose(together, np.concatenate([clf.logits([t]) for t in TEXTS]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(clf.logits(TEXTS[::-1])[::-1], together, atol=1e-5, rtol=0)


def check_onnx_and_bf16(folder, monkeypatch, tmp_path) -> None:
    """The default (ONNX Runtime fp32, traced at (2, 8)) equals torch fp32 at other lengths and paddings."""
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))
    reference = Classifier.from_pretrained(folder, dtype="fp32")
    onnx = Classifier.from_pretrained(folder, max_batch_tokens=200)  # several padded batches of mixed widths
    assert onnx.precision == "onnx-float32"  # not a silent fallback to torch
    for texts in (TEXTS, TEXTS[:1], ["ok"], ["word " * 30], PAIRS):
        np.testing.assert_allclose(onnx.logits(texts), reference.logits(texts), atol=1e-4, rtol=0)
    bf16 = Classifier.from_pretrained(folder, dtype="bf16")
    assert bf16.precision == "torch-bfloat16"
    expected = reference.logits(TEXTS)
    np.testing.assert_allclose(bf16.logits(TEXTS), expected, atol=0.05 * np.abs(expected).max(), rtol=0)


def check_tokenizer(folder, tokenizer) -> None:
    ours = Classifier.from_pretrained(folder, dtype="fp32").tokenizer
    for text in CORPUS + ["", "word " * 300]:
        assert ours(text, truncation=True) == dict(tokenizer(text, truncation=True)), text
    firsts, seconds = map(list, zip(*PAIRS))
    expected = tokenizer(firsts, seconds, truncation=True, return_token_type_ids=True)
    got = ours(firsts, seconds, truncation=True)
    assert got["input_ids"] == expected["input_ids"] and got["token_type_ids"] == expected["token_type_ids"]
    assert all(1 in row for row in got["token_type_ids"])  # the second segment is marked


def check_missing_tensor(folder, copy_checkpoint, name) -> None:
    folder = copy_checkpoint(folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors[name]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="lacks tensors: " + re.escape(name)):
        Classifier.from_pretrained(folder, dtype="fp32")


def check_bare_encoder(folder, family, new_head) -> None:
    assert sorted(build_model(open_checkpoint(folder))[1]) == new_head
    clf = Classifier.from_pretrained(folder)
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])
    info = describe(folder)
    assert info["family"] == family and info["has_classification_head"] is False


def check_round_trip(base, tmp_path) -> None:
    """Fine-tune the bare base on a separable task; transformers loads the result with the same logits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train_file = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(400, 1))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(100, 2))
    out = tmp_path / "out"
    # Tiny random ELECTRA and ALBERT sit at chance for the first epoch and separate in the second; FAST has 4.
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), **FAST))
    assert summary["eval_metrics"]["accuracy"] >= 0.95
    texts = ["a superb film", "the plot was boring and the actor awful", "x", "thing " * 80]
    ours = Classifier.from_pretrained(out, dtype="fp32").logits(texts)
    hf = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    encoded = AutoTokenizer.from_pretrained(out)(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(ours, hf(**encoded).logits.numpy(), atol=1e-4, rtol=0)
    assert [r["label"] for r in Classifier.from_pretrained(out)(texts[:2])] == ["pos", "neg"]


# ---- ELECTRA ------------------------------------------------------------------------------------------
def electra_model(vocab_size: int, head: str = "classifier", embedding_size: int = 16, **config):
    from transformers import (
        ElectraConfig,
        ElectraForMaskedLM,
        ElectraForPreTraining,
        ElectraForSequenceClassification,
        ElectraModel,
    )

    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=vocab_size, embedding_size=embedding_size, num_labels=3,
                           attn_implementation="eager", **{**SIZES, **config})  # fmt: skip
    cls = {"classifier": ElectraForSequenceClassification, "base": ElectraModel, "discriminator": ElectraForPreTraining,
           "generator": ElectraForMaskedLM}[head]  # fmt: skip
    return perturb(cls(config))


@pytest.fixture(scope="module")
def wordpiece(vocab_txt):
    from transformers import BertTokenizerFast

    # ELECTRA's tokenizer is BERT's WordPiece (AutoTokenizer maps electra to BertTokenizer).
    return BertTokenizerFast(vocab=str(vocab_txt), model_max_length=TINY_MAX_TOKENS)


@pytest.fixture(scope="module")
def electra(tmp_path_factory, wordpiece):
    """Embeddings 16 wide under a 32-wide encoder: the embeddings_project path."""
    model = electra_model(len(wordpiece))
    return save(tmp_path_factory.mktemp("electra"), model, wordpiece), model, wordpiece


def test_logits_pairs_and_pipeline_match_transformers(electra):
    assert hasattr(electra[1].electra, "embeddings_project")
    check_logits(*electra)


def test_embeddings_as_wide_as_hidden_have_no_projection(tmp_path, wordpiece):
    model = electra_model(len(wordpiece), embedding_size=32)
    assert not hasattr(model.electra, "embeddings_project")  # transformers has none, nor do we
    folder = save(tmp_path / "unprojected", model, wordpiece)
    assert build_model(open_checkpoint(folder))[0].encoder.embeddings.project is None
    check_logits(folder, model, wordpiece, pipeline_cases=[])


def test_gradients_match_transformers(electra):
    check_gradients(*electra)


def test_batch_equals_single(electra):
    check_batch_equals_single(electra[0])


def test_onnx_default_matches_torch_and_bf16_is_close(electra, monkeypatch, tmp_path):
    check_onnx_and_bf16(electra[0], monkeypatch, tmp_path)


def test_tokenizer_ids_match_transformers(electra):
    check_tokenizer(electra[0], electra[2])


def test_describe(electra):
    info = describe(electra[0])
    assert info["family"] == "electra" and info["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert info["has_classification_head"] is True and info["layers"] == 2 and info["hidden_size"] == 32


# Pretraining heads (the discriminator's replaced-token detection, the generator's MLM) are ignored, not unexpected.
@pytest.mark.parametrize("kind", ["base", "discriminator", "generator"])
def test_bare_encoder_loads_and_refuses_to_classify(tmp_path, wordpiece, kind):
    folder = save(tmp_path / kind, electra_model(len(wordpiece), head=kind), wordpiece)
    check_bare_encoder(folder, "electra", ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"])


@pytest.mark.parametrize("name", ["electra.encoder.layer.1.attention.self.key.weight",
                                  "electra.embeddings_project.weight"])  # fmt: skip
def test_missing_body_tensor_is_named(electra, copy_checkpoint, name):
    check_missing_tensor(electra[0], copy_checkpoint, name)


def test_unsupported_config_is_explained(electra, copy_checkpoint):
    folder = copy_checkpoint(electra[0])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    with pytest.raises(CheckpointError, match="position_embedding_type 'relative_key' is not supported; only 'abso"):
        Classifier.from_pretrained(folder, dtype="fp32")


def test_training_round_trip(tmp_path, wordpiece):
    base = electra_model(len(wordpiece), head="base", initializer_range=0.02,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    check_round_trip(save(tmp_path / "base", base, wordpiece), tmp_path)
