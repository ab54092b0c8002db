"""BERT (MiniLM included) and RoBERTa / XLM-RoBERTa: config readers and weight tables.

They share the module layout; RoBERTa adds a position offset (pad_token_id + 1) and its own head names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textclass.errors import CheckpointError
from textclass.models.config import EncoderConfig, activation_name, encoder_sizes, read_labels, require
from textclass.models.family import TOKENIZER_FILES, Family, layer_modules, module_table

# The shared post-LN encoder (models/encoder.py) that the BERT lineage runs on, and its ONNX graph built without
# torch (onnx_graph.py mirrors encoder.py's explicit-attention export).
ENCODER_MODEL = "textclass.models.encoder:SequenceClassifier"
ENCODER_ONNX = "textclass.onnx.graph:build_graph"

_EMBEDDINGS = {
    "embeddings.word_embeddings": "encoder.embeddings.word",
    "embeddings.position_embeddings": "encoder.embeddings.position",
    "embeddings.token_type_embeddings": "encoder.embeddings.token_type",
    "embeddings.LayerNorm": "encoder.embeddings.norm",
}
_EMBEDDING_TABLES = frozenset(f"encoder.embeddings.{table}" for table in ("word", "position", "token_type"))
_LAYER = {
    "encoder.layer.{i}.attention.self.query": "attention.query",
    "encoder.layer.{i}.attention.self.key": "attention.key",
    "encoder.layer.{i}.attention.self.value": "attention.value",
    "encoder.layer.{i}.attention.output.dense": "attention.out",
    "encoder.layer.{i}.attention.output.LayerNorm": "attention_norm",
    "encoder.layer.{i}.intermediate.dense": "ffn_in",
    "encoder.layer.{i}.output.dense": "ffn_out",
    "encoder.layer.{i}.output.LayerNorm": "ffn_norm",
}


def bert_lineage_table(
    embeddings: dict[str, str], layer: dict[str, str], head: dict[str, str]
) -> Callable[[EncoderConfig], dict[str, str]]:
    """The weight table of a post-LN BERT-shaped model (the shared encoder.py), from its three module tables."""

    def table(config: EncoderConfig) -> dict[str, str]:
        modules = {hf: ours for hf, ours in embeddings.items()
                   if ours != "encoder.embeddings.token_type" or config.type_vocab_size > 0}  # fmt: skip
        modules.update(layer_modules(layer, config.num_layers))
        modules.update(head)
        return module_table(modules, without_bias=_EMBEDDING_TABLES)

    return table


def _read(raw: dict[str, Any], model_type: str, *, roberta: bool) -> EncoderConfig:
    get = lambda key: require(raw, key, model_type)  # noqa: E731
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(f"position_embedding_type {position_type!r} is not supported; only 'absolute' is")
    hidden_dropout = float(raw.get("hidden_dropout_prob", 0.1))
    classifier_dropout = raw.get("classifier_dropout")
    pad = int(raw.get("pad_token_id", 1 if roberta else 0))
    sizes = encoder_sizes(raw, model_type)
    return EncoderConfig(
        family="roberta" if roberta else "bert",
        model_type=model_type,
        **sizes,
        activation=activation_name(raw.get("hidden_act", "gelu"), "config.json hidden_act"),
        max_position_embeddings=int(get("max_position_embeddings")),
        type_vocab_size=int(raw.get("type_vocab_size", 2)),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=pad,
        position_offset=pad + 1 if roberta else None,
        head_activation="tanh",
        head_dropout_first=roberta,
        hidden_dropout=hidden_dropout,
        attention_dropout=float(raw.get("attention_probs_dropout_prob", 0.1)),
        classifier_dropout=hidden_dropout if classifier_dropout is None else float(classifier_dropout),
        initializer_range=float(raw.get("initializer_range", 0.02)),
        id2label=read_labels(raw),
        problem_type=raw.get("problem_type"),
        torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        raw=raw,
    )


BERT = Family(
    name="bert",
    model_types=("bert",),
    base_prefix="bert",
    read_config=lambda raw, model_type: _read(raw, model_type, roberta=False),
    weights=bert_lineage_table(_EMBEDDINGS, _LAYER, {"pooler.dense": "head.dense", "classifier": "head.out"}),
    model=ENCODER_MODEL,
    architectures={"bert": "BertForSequenceClassification"},
    ignored_prefixes=("embeddings.position_ids", "cls.", "lm_head."),
    token_types=True,
    onnx_fusion="bert",
    onnx_builder=ENCODER_ONNX,
)

ROBERTA = Family(
    name="roberta",
    model_types=("roberta", "xlm-roberta", "camembert"),
    base_prefix="roberta",
    read_config=lambda raw, model_type: _read(raw, model_type, roberta=True),
    weights=bert_lineage_table(
        _EMBEDDINGS, _LAYER, {"classifier.dense": "head.dense", "classifier.out_proj": "head.out"}
    ),
    model=ENCODER_MODEL,
    architectures={
        "roberta": "RobertaForSequenceClassification",
        "xlm-roberta": "XLMRobertaForSequenceClassification",
        "camembert": "CamembertForSequenceClassification",
    },
    onnx_fusion="bert",
    onnx_builder=ENCODER_ONNX,
    tokenizer_files=(*TOKENIZER_FILES, "sentencepiece.bpe.model"),
    # A RoBERTa classifier has no pooler; base checkpoints carry one (and an LM head) that we leave unused.
    ignored_prefixes=("embeddings.position_ids", "pooler.", "lm_head."),
)

FAMILIES = (BERT, ROBERTA)
