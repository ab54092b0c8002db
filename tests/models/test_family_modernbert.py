"""ModernBERT: logits, tokenizer, ONNX export and training round trip against transformers.

Tiny random checkpoints with a short local window (8 tokens: a token sees 4 on each side) so that local
and global layers differ on most texts, and a byte-level BPE tokenizer trained on the spot and wrapped
as ModernBERT ships its own (tokenizer.json with [CLS] $A [SEP] templates).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import CORPUS, TINY_MAX_TOKENS
from familykit import (
    check_batch_equals_single,
    check_first_only,
    check_gpu,
    check_onnx_at_every_length,
    check_pipeline,
    edit_config,
    needs_gpu,
    reference_logits,
)
from textclass import Classifier
from textclass.errors import CheckpointError, InputError
from trainkit import FAST, sentiment_rows, write_jsonl

TEXTS = CORPUS + ["", "word " * 300]  # the last one is far past the 64-token limit
LOCAL_WINDOW = 8
# Two variants between them cover both poolings, each bias switch on and off, both ways of declaring which
# layers are global, and the first layer being global or local.
VARIANTS = {
    "cls": dict(classifier_pooling="cls", norm_bias=False, attention_bias=True, global_attn_every_n_layers=2),
    "mean": dict(classifier_pooling="mean", norm_bias=True, attention_bias=False, mlp_bias=True, classifier_bias=True,
                 classifier_activation="silu", layer_types=["sliding_attention", "full_attention"]),
}  # fmt: skip


def make_tokenizer():
    """A byte-level BPE like ModernBERT's (OLMo style), special tokens appended after the vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=["<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator(CORPUS * 3, trainer)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
    bpe.add_special_tokens([AddedToken(t, special=True) for t in specials] +
                           [AddedToken("[MASK]", special=True, lstrip=True)])  # fmt: skip
    cls, sep = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
    bpe.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )  # fmt: skip
    names = dict(unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")
    return PreTrainedTokenizerFast(tokenizer_object=bpe, model_max_length=TINY_MAX_TOKENS, **names)


def make_model(tokenizer, kind: str = "classifier", num_labels: int = 3, seed: int = 0, **overrides):
    from transformers import (
        ModernBertConfig,
        ModernBertForMaskedLM,
        ModernBertForSequenceClassification,
        ModernBertModel,
    )

    torch.manual_seed(seed)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    settings = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=TINY_MAX_TOKENS, local_attention=LOCAL_WINDOW, global_rope_theta=1000.0,
        local_rope_theta=100.0, pad_token_id=tokenizer.pad_token_id, bos_token_id=cls, eos_token_id=sep,
        cls_token_id=cls, sep_token_id=sep, num_labels=num_labels, attn_implementation="eager",
        # Ten times the usual spread: with 0.02 a tiny model's attention is so flat that a wrong window or
        # rotary base moves the logits by less than the 1e-4 parity tolerance; with 0.2 by 0.2 or more.
        initializer_range=0.2,
    )  # fmt: skip
    config = ModernBertConfig(**{**settings, **overrides})
    cls_ = {"classifier": ModernBertForSequenceClassification, "mlm": ModernBertForMaskedLM, "base": ModernBertModel}
    model = cls_[kind](config).eval()
    # Random init leaves norms at identity and biases at zero; perturb them so parity sees them.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def save(folder: Path, model, tokenizer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    """variant -> (folder, transformers classifier)."""
    built = {}
    for variant, overrides in VARIANTS.items():
        model = make_model(tokenizer, **overrides)
        built[variant] = (save(tmp_path_factory.mktemp(f"modernbert-{variant}"), model, tokenizer), model)
    return built


# ---- parity with transformers ---------------------------------------------------------------------
def test_last_layer_first_token_alone_with_first_token_pooling(tiny):
    """First-token pooling prunes the last layer (a local one here: its first row's window); mean pooling cannot."""
    assert check_first_only(tiny["cls"][0])
    assert not check_first_only(tiny["mean"][0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_transformers(tiny, tokenizer, variant, copy_checkpoint):
    folder, model = tiny[variant]
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)
    reference = reference_logits(model, tokenizer, TEXTS)
    assert ours.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    # The window is real: letting every layer see the whole text changes the logits of long texts.
    wide = copy_checkpoint(folder)
    edit_config(wide, local_attention=4 * TINY_MAX_TOKENS)
    widened = Classifier.from_pretrained(wide, dtype="fp32").logits(TEXTS)
    assert np.abs(widened - reference).max() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_pairs_match_transformers(tiny, tokenizer, variant):
    folder, model = tiny[variant]
    firsts, seconds = CORPUS[:7], CORPUS[7:14]
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits(list(zip(firsts, seconds)))
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, firsts, seconds), atol=1e-4, rtol=0)


def test_pipeline_output_equal(tiny, tokenizer):
    folder, model = tiny["mean"]
    check_pipeline(folder, model, tokenizer)


def test_old_config_keys_read_the_same(tiny, tokenizer, copy_checkpoint):
    """Hub configs written before transformers 5 name the rotary bases and the global interval directly."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = copy_checkpoint(tiny["cls"][0])
    config = json.loads((folder / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        del config[key]
    config.update(global_rope_theta=1000.0, local_rope_theta=100.0, global_attn_every_n_layers=2)
    (folder / "config.json").write_text(json.dumps(config))
    hf = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    reference = reference_logits(hf, AutoTokenizer.from_pretrained(folder), TEXTS)
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours, reference_logits(tiny["cls"][1], tokenizer, TEXTS), atol=1e-4, rtol=0)
    # The old keys matter: another local base gives other logits.
    edit_config(folder, local_rope_theta=7.0)
    assert np.abs(Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS) - reference).max() > 1e-3


def test_batch_equals_single(tiny):
    check_batch_equals_single(tiny["mean"][0])  # mean pooling is where padding could leak in


# ---- ONNX and other precisions --------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_matches_torch_at_every_length(tiny, variant):
    check_onnx_at_every_length(tiny[variant][0])  # most texts run past the 8-token window


# ---- checkpoints: bases, damage, unsupported values -----------------------------------------------
@pytest.mark.parametrize("kind", ["base", "mlm"])
def test_base_checkpoint_loads_but_does_not_classify(tmp_path, tokenizer, kind):
    from textclass.checkpoint import build_model, open_checkpoint

    model = make_model(tokenizer, kind=kind, **VARIANTS["cls"])
    folder = save(tmp_path / kind, model, tokenizer)
    built, new_head = build_model(open_checkpoint(folder))
    # A masked-LM checkpoint's head.dense and head.norm are the classifier's too, as transformers reuses them.
    expected = ["head.out.bias", "head.out.weight"]
    if kind == "base":
        expected = ["head.dense.weight", "head.norm.weight", *expected]
    else:
        torch.testing.assert_close(built.head.dense.weight, model.head.dense.weight)
    assert sorted(new_head) == expected
    clf = Classifier.from_pretrained(folder)
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])


def test_missing_body_tensor_is_named(tiny, copy_checkpoint):
    folder = copy_checkpoint(tiny["cls"][0])
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["model.layers.1.attn.Wqkv.bias"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lacks tensors: model\.layers\.1\.attn\.Wqkv\.bias"):
        Classifier.from_pretrained(folder, dtype="fp32")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classifier_pooling": "max"}, "classifier_pooling 'max' is not supported; expected one of cls, mean"),
        ({"layer_types": ["full_attention", "chunked_attention"]}, "layer_types .* is not supported"),
        ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10.0}}},
         "rope_type 'linear' is not supported"),
        ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope_scaling .* is not supported"),
        ({"hidden_activation": "mish"}, "hidden_activation: activation 'mish' is not supported"),
        ({"num_attention_heads": 5}, "hidden_size 32 is not a multiple of num_attention_heads 5"),
        ({"num_attention_heads": 32}, "head size 1 .* is odd"),
    ],
)  # fmt: skip
def test_unsupported_config_value_is_explained(tiny, copy_checkpoint, changes, message):
    folder = copy_checkpoint(tiny["cls"][0])
    edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        Classifier.from_pretrained(folder, dtype="fp32")


# ---- tokenizer and inspect ------------------------------------------------------------------------
def test_tokenizer_ids_match_transformers(tiny):
    from transformers import AutoTokenizer

    folder, _ = tiny["cls"]
    ours, theirs = Classifier.from_pretrained(folder, dtype="fp32").tokenizer, AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours(text, truncation=True)["input_ids"] == theirs(text, truncation=True)["input_ids"], text
    pairs = (CORPUS[:7], CORPUS[7:14])
    assert ours(*pairs)["input_ids"] == theirs(*pairs)["input_ids"]
    assert "token_type_ids" not in ours("x") and ours("x")["input_ids"][0] == theirs.cls_token_id
    assert len(ours(TEXTS[-1], truncation=True)["input_ids"]) == TINY_MAX_TOKENS
    assert ours.pad_token_id == theirs.pad_token_id


def test_describe(tiny):
    from textclass.checkpoint import open_checkpoint
    from textclass.checkpoint.describe import describe

    folder, _ = tiny["mean"]
    info = describe(folder)
    assert info["family"] == "modernbert" and info["model_type"] == "modernbert"
    assert info["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"] and info["has_classification_head"]
    assert info["layers"] == 2 and info["max_length"] == TINY_MAX_TOKENS
    config = open_checkpoint(folder).config
    assert config.global_layers == (False, True) and config.classifier_pooling == "mean"
    assert (config.global_rope_theta, config.local_rope_theta, config.local_attention) == (1000.0, 100.0, 8)


# ---- training -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_round_trip(tmp_path, tokenizer):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textclass.train.run import train
    from textclass.train.setup import TrainArgs

    base = save(tmp_path / "base", make_model(tokenizer, kind="mlm", **VARIANTS["mean"]), tokenizer)
    train_file = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(400, 1))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(100, 2))
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), **FAST))
    assert summary["new_parameters"] == ["head.out.bias", "head.out.weight"]
    assert summary["eval_metrics"]["accuracy"] >= 0.9
    texts = ["a superb film", "the plot was boring and the actor awful", "x", "thing " * 80]
    hf = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    reference = reference_logits(hf, AutoTokenizer.from_pretrained(out), texts)
    np.testing.assert_allclose(Classifier.from_pretrained(out, dtype="fp32").logits(texts), reference, atol=1e-4)
    assert [r["label"] for r in Classifier.from_pretrained(out)(["a superb film", "an awful film"])] == ["pos", "neg"]


@needs_gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_matches_transformers(tiny, tokenizer, variant):
    check_gpu(tiny[variant][0], tiny[variant][1], tokenizer)
