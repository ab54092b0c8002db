"""ALBERT: one shared layer under factorised embeddings; logits, gradients, tokenizer, ONNX and training agree
with transformers. The checks are familykit.py's.
"""

from __future__ import annotations

import json

import pytest
from test_family_electra import SIZES

from conftest import CORPUS, TINY_MAX_TOKENS
from familykit import (
    check_bare_encoder,
    check_batch_equals_single,
    check_gpu,
    check_gradients,
    check_logits,
    check_missing_tensor,
    check_onnx_and_bf16,
    check_round_trip,
    check_tokenizer,
    needs_gpu,
    perturb,
    save,
)
from textclass import Classifier
from textclass.checkpoint import build_model, open_checkpoint
from textclass.checkpoint.describe import describe
from textclass.errors import CheckpointError

SHARED = "albert.encoder.albert_layer_groups.0.albert_layers.0"


def albert_model(vocab_size: int, head: str = "classifier", **config):
    import torch
    from transformers import (
        AlbertConfig,
        AlbertForMaskedLM,
        AlbertForPreTraining,
        AlbertForSequenceClassification,
        AlbertModel,
    )

    torch.manual_seed(0)
    # 3 layers that are one: the shared weights run three times. hidden_act is ALBERT's default, gelu_new.
    config = AlbertConfig(vocab_size=vocab_size, embedding_size=16, num_labels=3, attn_implementation="eager",
                          **{**SIZES, "num_hidden_layers": 3, **config})  # fmt: skip
    cls = {"classifier": AlbertForSequenceClassification, "base": AlbertModel, "pretraining": AlbertForPreTraining,
           "masked_lm": AlbertForMaskedLM}[head]  # fmt: skip
    return perturb(cls(config))


@pytest.fixture(scope="module")
def unigram():
    """ALBERT's SentencePiece (Unigram) tokenizer, trained on the corpus, as transformers' AlbertTokenizer."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import AlbertTokenizer

    spm = SentencePieceUnigramTokenizer()
    # ALBERT's special tokens at ALBERT's ids: <pad> 0, <unk> 1, [CLS] 2, [SEP] 3, [MASK] 4.
    spm.train_from_iterator(CORPUS * 3, vocab_size=300, special_tokens=["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
                            unk_token="<unk>")  # fmt: skip
    vocab = [tuple(piece) for piece in json.loads(spm._tokenizer.to_str())["model"]["vocab"]]
    # transformers 5's AlbertTokenizer leaves token_type_ids out of its outputs (huggingface/transformers#48128);
    # ALBERT was pretrained with segment ids and 4.x returned them, as textclass does: declare them, as 4.x did.
    return AlbertTokenizer(vocab=vocab, model_max_length=TINY_MAX_TOKENS,
                           model_input_names=["input_ids", "token_type_ids", "attention_mask"])  # fmt: skip


@pytest.fixture(scope="module")
def albert(tmp_path_factory, unigram):
    model = albert_model(len(unigram))
    return save(tmp_path_factory.mktemp("albert"), model, unigram), model, unigram


def test_logits_pairs_and_pipeline_match_transformers(albert):
    check_logits(*albert)


def test_one_layer_is_shared_by_every_depth(albert):
    folder, model, _ = albert
    ours = build_model(open_checkpoint(folder))[0]
    assert ours.config.activation == "gelu_tanh" and ours.encoder.num_layers == 3
    assert not any(name.startswith("encoder.layers.") for name, _ in ours.named_parameters())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in model.parameters())


def test_gradients_match_transformers(albert):
    check_gradients(*albert)  # the shared layer's gradient sums its three uses, in both


def test_batch_equals_single(albert):
    check_batch_equals_single(albert[0])


def test_onnx_default_matches_torch_and_bf16_is_close(albert, monkeypatch, tmp_path):
    check_onnx_and_bf16(albert[0], monkeypatch, tmp_path)


def test_tokenizer_ids_match_transformers(albert):
    check_tokenizer(albert[0], albert[2])


def test_describe(albert):
    info = describe(albert[0])
    assert info["family"] == "albert" and info["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert info["has_classification_head"] is True and info["layers"] == 3 and info["hidden_size"] == 32


# The pooler sits inside AlbertModel, so bases that have one keep it; pretraining heads are ignored.
@pytest.mark.parametrize(("kind", "new_head"), [
    ("base", ["head.out.bias", "head.out.weight"]),
    ("pretraining", ["head.out.bias", "head.out.weight"]),
    ("masked_lm", ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"]),  # no pooler
])  # fmt: skip
def test_bare_encoder_loads_and_refuses_to_classify(tmp_path, unigram, kind, new_head):
    check_bare_encoder(save(tmp_path / kind, albert_model(len(unigram), head=kind), unigram), "albert", new_head)


@pytest.mark.parametrize("name", [f"{SHARED}.ffn.weight", "albert.encoder.embedding_hidden_mapping_in.bias"])
def test_missing_body_tensor_is_named(albert, copy_checkpoint, name):
    check_missing_tensor(albert[0], copy_checkpoint, name)


@pytest.mark.parametrize("key", ["num_hidden_groups", "inner_group_num"])
def test_layer_groups_other_than_one_are_refused(albert, copy_checkpoint, key):
    folder = copy_checkpoint(albert[0])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: 2}))
    with pytest.raises(CheckpointError, match=f"{key} 2 is not supported for albert; only 1 is"):
        Classifier.from_pretrained(folder, dtype="fp32")


@pytest.mark.slow
def test_training_round_trip(tmp_path, unigram):
    base = albert_model(len(unigram), head="base", initializer_range=0.02)  # ALBERT's dropouts default to 0
    check_round_trip(save(tmp_path / "base", base, unigram), tmp_path)


@needs_gpu
def test_gpu_matches_transformers(albert):
    check_gpu(*albert)
