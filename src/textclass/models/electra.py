"""ELECTRA discriminators: BERT's post-LN layers under factorised embeddings, and a GELU classification head.

ELECTRA's embedding tables may be narrower than the encoder (electra-small: 128 wide under a 256-wide encoder);
a Linear (`embeddings_project`) then lifts them to hidden_size. The layers are BERT's (models/encoder.py), as
is the head's shape: [CLS] -> dropout -> dense -> GELU -> dropout -> out_proj. ALBERT (models/albert.py) reuses
this file's config, embeddings and classifier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from textclass.models.bert import _EMBEDDINGS, _LAYER, bert_lineage_table
from textclass.models.bert import _read as read_bert
from textclass.models.config import EncoderConfig
from textclass.models.encoder import Embeddings, Encoder, SequenceClassifier
from textclass.models.family import Family, module_table


@dataclass(frozen=True, kw_only=True)
class FactorisedConfig(EncoderConfig):
    """ELECTRA's and ALBERT's: embedding tables `embedding_size` wide, projected up to hidden_size."""

    embedding_size: int = 128  # transformers' default for both families
    # Whether a Linear lifts the embeddings to hidden_size: ELECTRA has one only when the widths differ,
    # ALBERT always (its embedding_hidden_mapping_in).
    embedding_projection: bool = True


def _read(raw: dict[str, Any], model_type: str) -> FactorisedConfig:
    # ELECTRA's config.json is BERT's (same keys, same defaults) plus embedding_size; only the head differs.
    bert = read_bert(raw, model_type, roberta=False)
    fields = {field.name: getattr(bert, field.name) for field in dataclasses.fields(bert)}
    # transformers' ElectraClassificationHead: dropout, dense, exact GELU (whatever hidden_act or
    # summary_activation say), dropout, out_proj.
    fields.update(family="electra", head_activation="gelu", head_dropout_first=True)
    width = int(raw.get("embedding_size", 128))
    return FactorisedConfig(**fields, embedding_size=width, embedding_projection=width != bert.hidden_size)


class FactorisedEmbeddings(Embeddings):
    """BERT's embeddings (word + position + token type, LayerNorm) at embedding_size, then lifted to hidden_size."""

    def __init__(self, config: FactorisedConfig):
        # The tables and their LayerNorm are embedding_size wide; everything else in the config holds as it is.
        super().__init__(dataclasses.replace(config, hidden_size=config.embedding_size))
        self.project = nn.Linear(config.embedding_size, config.hidden_size) if config.embedding_projection else None

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        x = super().forward(input_ids, token_type_ids)  # (batch, seq, embedding_size)
        return x if self.project is None else self.project(x)  # (batch, seq, hidden)


class ElectraEncoder(Encoder):
    """BERT's post-LN layers over embeddings of embedding_size, projected up to hidden_size."""

    embeddings_type = FactorisedEmbeddings


class ElectraClassifier(SequenceClassifier):
    # encoder.py's head with ELECTRA's settings from the config: dropout first, GELU.
    encoder_type = ElectraEncoder


_BERT_SHAPED = bert_lineage_table(
    _EMBEDDINGS, _LAYER, {"classifier.dense": "head.dense", "classifier.out_proj": "head.out"}
)


def _weights(config: FactorisedConfig) -> dict[str, str]:
    table = _BERT_SHAPED(config)
    if config.embedding_projection:
        table.update(module_table({"embeddings_project": "encoder.embeddings.project"}))
    return table


ELECTRA = Family(
    name="electra",
    model_types=("electra",),
    base_prefix="electra",
    read_config=_read,
    weights=_weights,
    model="textclass.models.electra:ElectraClassifier",
    architectures={"electra": "ElectraForSequenceClassification"},
    # Discriminator checkpoints carry the replaced-token detection head, generator ones an MLM head.
    ignored_prefixes=("embeddings.position_ids", "discriminator_predictions.", "generator_"),
    token_types=True,
)

FAMILIES = (ELECTRA,)
