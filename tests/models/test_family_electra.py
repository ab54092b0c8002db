"""ELECTRA: logits, gradients, pipeline, tokenizer, ONNX, bare encoders and training agree with transformers.

The `check_*` helpers take any family's folder and transformers model; test_family_albert.py uses them too.
Parity checkpoints use initializer_range 0.3 so texts get logits far more than the 1e-4 tolerance apart (at
0.02 a tiny random model gives every text nearly the same logits, and a match would prove little).
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_MAX_TOKENS
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

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=TINY_MAX_TOKENS, initializer_range=0.3)  # fmt: skip
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


@pytest.mark.slow
def test_training_round_trip(tmp_path, wordpiece):
    base = electra_model(len(wordpiece), head="base", initializer_range=0.02,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    check_round_trip(save(tmp_path / "base", base, wordpiece), tmp_path)


@needs_gpu
def test_gpu_matches_transformers(electra):
    check_gpu(*electra)
