"""ALBERT: factorised embeddings and ONE post-LN layer whose weights every depth shares, under BERT's pooler.

The embeddings are ELECTRA's (models/electra.py), always projected to hidden_size by
`encoder.embedding_hidden_mapping_in`. transformers groups layers (num_hidden_groups, inner_group_num); every
released ALBERT has one group of one layer, which is what we run: that layer, num_hidden_layers times. Its maths
is BERT's Layer (models/encoder.py). One difference, in training only: transformers' AlbertLayer defines but never
applies the dropout before the feed-forward residual, BERT's Layer applies it (v2 configs set it to 0 anyway).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from textclass.errors import CheckpointError
from textclass.models.bert import _EMBEDDINGS, bert_lineage_table
from textclass.models.config import activation_name
from textclass.models.electra import FactorisedConfig, FactorisedEmbeddings
from textclass.models.electra import _read as read_electra
from textclass.models.encoder import Layer, SequenceClassifier, last_layer_first_only, padding_mask
from textclass.models.family import TOKENIZER_FILES, Family


def _read(raw: dict[str, Any], model_type: str) -> FactorisedConfig:
    for key in ("num_hidden_groups", "inner_group_num"):
        if int(raw.get(key, 1)) != 1:
            raise CheckpointError(
                f"config.json {key} {raw[key]!r} is not supported for albert; only 1 is (one layer's weights "
                "shared by every depth, as in all released ALBERT checkpoints)"
            )
    # Same keys as ELECTRA's config.json; ALBERT differs in its defaults and its head (BERT's tanh pooler).
    return dataclasses.replace(
        read_electra(raw, model_type),
        family="albert",
        embedding_projection=True,
        activation=activation_name(raw.get("hidden_act", "gelu_new"), "config.json hidden_act"),
        hidden_dropout=float(raw.get("hidden_dropout_prob", 0.0)),
        attention_dropout=float(raw.get("attention_probs_dropout_prob", 0.0)),
        classifier_dropout=float(raw.get("classifier_dropout_prob", 0.1)),
        head_activation="tanh",
        head_dropout_first=False,
    )


class AlbertEncoder(nn.Module):
    def __init__(self, config: FactorisedConfig):
        super().__init__()
        self.embeddings = FactorisedEmbeddings(config)
        self.layer = Layer(config)  # applied num_layers times: ALBERT's cross-layer parameter sharing
        self.num_layers = config.num_layers

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq)
        attention_mask: torch.Tensor | None = None,  # (batch, seq), 1 for tokens, 0 for padding
        token_type_ids: torch.Tensor | None = None,
        first_only: bool = False,
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only
        x = self.embeddings(input_ids, token_type_ids)
        mask = padding_mask(attention_mask)
        return last_layer_first_only([self.layer] * self.num_layers, x, mask, first_only)


class AlbertClassifier(SequenceClassifier):
    """The shared-layer encoder; the config gives encoder.py's head BERT's pooler settings (tanh, no dropout first)."""

    encoder_type = AlbertEncoder


_SHARED = "encoder.albert_layer_groups.0.albert_layers.0"
_weights = bert_lineage_table(
    _EMBEDDINGS,
    {},  # no per-depth layers: the one shared layer is listed below
    {
        "encoder.embedding_hidden_mapping_in": "encoder.embeddings.project",
        f"{_SHARED}.attention.query": "encoder.layer.attention.query",
        f"{_SHARED}.attention.key": "encoder.layer.attention.key",
        f"{_SHARED}.attention.value": "encoder.layer.attention.value",
        f"{_SHARED}.attention.dense": "encoder.layer.attention.out",
        f"{_SHARED}.attention.LayerNorm": "encoder.layer.attention_norm",
        f"{_SHARED}.ffn": "encoder.layer.ffn_in",
        f"{_SHARED}.ffn_output": "encoder.layer.ffn_out",
        f"{_SHARED}.full_layer_layer_norm": "encoder.layer.ffn_norm",
        # The pooler (dense + tanh) sits inside AlbertModel, so base checkpoints carry it; the classifier outside.
        "pooler": "head.dense",
        "classifier": "head.out",
    },
)

ALBERT = Family(
    name="albert",
    model_types=("albert",),
    base_prefix="albert",
    read_config=_read,
    weights=_weights,
    model="textclass.models.albert:AlbertClassifier",
    architectures={"albert": "AlbertForSequenceClassification"},
    # Pretraining heads: masked-LM predictions and sentence-order prediction.
    ignored_prefixes=("embeddings.position_ids", "predictions.", "sop_classifier."),
    token_types=True,
    tokenizer_files=(*TOKENIZER_FILES, "spiece.model"),
)

FAMILIES = (ALBERT,)
