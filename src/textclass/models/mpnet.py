"""MPNet (all-mpnet-base-v2 and kin): the post-LN BERT layer plus a relative-position bias shared by all layers.

What MPNet adds to encoder.py's modules: every layer's attention scores get a learned bias per head that
depends on the query-key distance, looked up in one (buckets, heads) table through T5's bidirectional log
buckets. Absolute positions count from pad_token_id + 1 as in RoBERTa; there are no token types; the
head is RoBERTa's (dropout, dense, tanh, dropout, out_proj on the first token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from textclass.errors import CheckpointError
from textclass.models.config import EncoderConfig, activation_name, encoder_sizes, read_labels, require
from textclass.models.encoder import Embeddings, Layer, SequenceClassifier
from textclass.models.family import Family, layer_modules, module_table

# transformers' MPNetEncoder.compute_position_bias always buckets with these, whatever config.json says.
NUM_BUCKETS = 32
MAX_DISTANCE = 128
# transformers' MPNetEmbeddings hard-codes padding_idx 1 for position numbering (not config.pad_token_id).
PADDING_IDX = 1


@dataclass(frozen=True, kw_only=True)
class MPNetConfig(EncoderConfig):
    relative_attention_num_buckets: int = NUM_BUCKETS


def relative_position_bucket(relative: torch.Tensor, num_buckets: int = NUM_BUCKETS,
                             max_distance: int = MAX_DISTANCE) -> torch.Tensor:  # fmt: skip
    """T5's bidirectional buckets of key - query distances, with transformers' MPNet float maths.

    Half the buckets per direction; in each half, distances below a quarter of the buckets get one bucket
    each, longer ones share log-spaced buckets up to max_distance, and anything further shares the last.
    """
    half = num_buckets // 2
    exact = half // 2
    distance = -relative  # transformers buckets query - key
    bucket = (distance < 0).long() * half  # (query, key): keys after the query use the upper half
    distance = distance.abs()
    # Clamped before the log (log 0 = -inf); the exact branch below covers the short distances anyway.
    log_ratio = torch.log(distance.clamp(min=exact).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(distance < exact, distance, far)


class MPNetEmbeddings(Embeddings):
    """encoder.py's embeddings (word + RoBERTa-style positions, LayerNorm) and the relative-position table.

    The table is a position embedding too, so it lives here: layer-wise lr decay treats it as one.
    """

    def __init__(self, config: MPNetConfig):
        super().__init__(config)
        self.relative = nn.Embedding(config.relative_attention_num_buckets, config.num_heads)

    def relative_bias(self, input_ids: torch.Tensor) -> torch.Tensor:  # (batch, seq) -> (1, heads, seq, seq)
        # Positions from the input itself (not its Python length) so an ONNX trace stays shape-generic.
        positions = torch.ones_like(input_ids[0]).cumsum(0)  # (seq,)
        relative = positions[None, :] - positions[:, None]  # (query, key): key - query
        return self.relative(relative_position_bucket(relative)).permute(2, 0, 1).unsqueeze(0)


class MPNetEncoder(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.embeddings = MPNetEmbeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_layers))

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq)
        attention_mask: torch.Tensor | None = None,  # (batch, seq), 1 for tokens, 0 for padding
        token_type_ids: torch.Tensor | None = None,  # MPNet has none; accepted for the common signature
        first_only: bool = False,
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only
        x = self.embeddings(input_ids, None)
        bias = self.embeddings.relative_bias(input_ids)  # (1, heads, seq, seq)
        if attention_mask is not None:
            # Padded keys get the dtype's minimum, as transformers' additive mask. (batch, heads, seq, seq)
            bias = bias.masked_fill(attention_mask[:, None, None, :].eq(0), torch.finfo(x.dtype).min)
        for depth, layer in enumerate(self.layers):
            # A float attn_mask is added to the scores (SDPA), which is exactly where MPNet adds its bias.
            if first_only and depth == len(self.layers) - 1:  # as encoder.last_layer_first_only: the first query
                return layer(x, bias[:, :, :1], first_only=True)
            x = layer(x, bias)
        return x


class MPNetClassifier(SequenceClassifier):
    encoder_type = MPNetEncoder


def _read(raw: dict[str, Any], model_type: str) -> MPNetConfig:
    get = lambda key: require(raw, key, model_type)  # noqa: E731
    sizes = encoder_sizes(raw, model_type)
    buckets = int(raw.get("relative_attention_num_buckets", NUM_BUCKETS))
    if buckets != NUM_BUCKETS:
        raise CheckpointError(
            f"config.json relative_attention_num_buckets {buckets} is not supported; only {NUM_BUCKETS} is "
            f"(transformers' MPNet always computes {NUM_BUCKETS} buckets, so other tables would not match it)"
        )
    pad = int(raw.get("pad_token_id", PADDING_IDX))
    if pad != PADDING_IDX:
        raise CheckpointError(
            f"config.json pad_token_id {pad} is not supported; only {PADDING_IDX} is "
            f"(transformers' MPNet numbers positions after token id {PADDING_IDX} whatever pad_token_id says)"
        )
    hidden_dropout = float(raw.get("hidden_dropout_prob", 0.1))
    return MPNetConfig(
        family="mpnet",
        model_type=model_type,
        **sizes,
        activation=activation_name(raw.get("hidden_act", "gelu"), "config.json hidden_act"),
        max_position_embeddings=int(get("max_position_embeddings")),
        type_vocab_size=0,
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=pad,
        position_offset=pad + 1,
        head_activation="tanh",
        head_dropout_first=True,
        hidden_dropout=hidden_dropout,
        attention_dropout=float(raw.get("attention_probs_dropout_prob", 0.1)),
        classifier_dropout=hidden_dropout,  # MPNetClassificationHead uses hidden_dropout_prob
        initializer_range=float(raw.get("initializer_range", 0.02)),
        id2label=read_labels(raw),
        problem_type=raw.get("problem_type"),
        torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        raw=raw,
        relative_attention_num_buckets=buckets,
    )


_EMBEDDINGS = {
    "embeddings.word_embeddings": "encoder.embeddings.word",
    "embeddings.position_embeddings": "encoder.embeddings.position",
    "encoder.relative_attention_bias": "encoder.embeddings.relative",
}
_LAYER = {
    "encoder.layer.{i}.attention.attn.q": "attention.query",
    "encoder.layer.{i}.attention.attn.k": "attention.key",
    "encoder.layer.{i}.attention.attn.v": "attention.value",
    "encoder.layer.{i}.attention.attn.o": "attention.out",
    "encoder.layer.{i}.attention.LayerNorm": "attention_norm",
    "encoder.layer.{i}.intermediate.dense": "ffn_in",
    "encoder.layer.{i}.output.dense": "ffn_out",
    "encoder.layer.{i}.output.LayerNorm": "ffn_norm",
}
_HEAD = {"classifier.dense": "head.dense", "classifier.out_proj": "head.out"}


def _weights(config: EncoderConfig) -> dict[str, str]:
    modules = {**_EMBEDDINGS, "embeddings.LayerNorm": "encoder.embeddings.norm"}
    modules.update(layer_modules(_LAYER, config.num_layers))
    modules.update(_HEAD)
    return module_table(modules, without_bias=frozenset(_EMBEDDINGS.values()))


MPNET = Family(
    name="mpnet",
    model_types=("mpnet",),
    base_prefix="mpnet",
    read_config=_read,
    weights=_weights,
    model="textclass.models.mpnet:MPNetClassifier",
    architectures={"mpnet": "MPNetForSequenceClassification"},
    # MPNetModel carries a pooler and MPNetForMaskedLM an LM head, neither used by the classifier.
    ignored_prefixes=("embeddings.position_ids", "pooler.", "lm_head."),
    top_level_head=("classifier.",),
)

FAMILIES = (MPNET,)
