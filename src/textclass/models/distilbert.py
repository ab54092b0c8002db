"""DistilBERT: config reader and weight table (no token types, ReLU pre_classifier head)."""

from __future__ import annotations

from typing import Any

from textclass.errors import CheckpointError
from textclass.models.bert import ENCODER_MODEL, ENCODER_ONNX, bert_lineage_table
from textclass.models.config import EncoderConfig, activation_name, read_labels, require
from textclass.models.family import Family


def _read(raw: dict[str, Any], model_type: str) -> EncoderConfig:
    get = lambda key: require(raw, key, model_type)  # noqa: E731
    hidden, heads = int(get("dim")), int(get("n_heads"))
    if hidden % heads:
        raise CheckpointError(f"dim {hidden} is not a multiple of n_heads {heads}")
    return EncoderConfig(
        family="distilbert",
        model_type=model_type,
        vocab_size=int(get("vocab_size")),
        hidden_size=hidden,
        num_layers=int(get("n_layers")),
        num_heads=heads,
        intermediate_size=int(get("hidden_dim")),
        activation=activation_name(raw.get("activation", "gelu"), "config.json activation"),
        max_position_embeddings=int(get("max_position_embeddings")),
        type_vocab_size=0,
        layer_norm_eps=1e-12,  # hard-coded in transformers' DistilBERT
        pad_token_id=int(raw.get("pad_token_id", 0)),
        position_offset=None,
        head_activation="relu",
        head_dropout_first=False,
        hidden_dropout=float(raw.get("dropout", 0.1)),
        attention_dropout=float(raw.get("attention_dropout", 0.1)),
        classifier_dropout=float(raw.get("seq_classif_dropout", 0.2)),
        initializer_range=float(raw.get("initializer_range", 0.02)),
        id2label=read_labels(raw),
        problem_type=raw.get("problem_type"),
        torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        raw=raw,
    )


DISTILBERT = Family(
    name="distilbert",
    model_types=("distilbert",),
    base_prefix="distilbert",
    read_config=_read,
    weights=bert_lineage_table(
        {
            "embeddings.word_embeddings": "encoder.embeddings.word",
            "embeddings.position_embeddings": "encoder.embeddings.position",
            "embeddings.LayerNorm": "encoder.embeddings.norm",
        },
        {
            "transformer.layer.{i}.attention.q_lin": "attention.query",
            "transformer.layer.{i}.attention.k_lin": "attention.key",
            "transformer.layer.{i}.attention.v_lin": "attention.value",
            "transformer.layer.{i}.attention.out_lin": "attention.out",
            "transformer.layer.{i}.sa_layer_norm": "attention_norm",
            "transformer.layer.{i}.ffn.lin1": "ffn_in",
            "transformer.layer.{i}.ffn.lin2": "ffn_out",
            "transformer.layer.{i}.output_layer_norm": "ffn_norm",
        },
        {"pre_classifier": "head.dense", "classifier": "head.out"},
    ),
    model=ENCODER_MODEL,
    architectures={"distilbert": "DistilBertForSequenceClassification"},
    ignored_prefixes=("embeddings.position_ids", "vocab_transform.", "vocab_layer_norm.", "vocab_projector."),
    onnx_fusion="bert",
    onnx_builder=ENCODER_ONNX,
)

FAMILIES = (DISTILBERT,)
