"""DeBERTa-v2, DeBERTa-v3 and mDeBERTa: disentangled relative attention.

Attention adds to the content-to-content scores two relative-position terms: content-to-position (c2p: the
query against an embedding of the key's distance) and position-to-content (p2c: the key against an embedding
of the query's distance). Distances beyond `position_buckets / 2` share log-spaced buckets. Absolute
positions are optional (`position_biased_input`; off in v3), token types too (`type_vocab_size` 0 in v3).
The classifier pools the first token through a dense layer with its own activation (`pooler_hidden_act`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from textclass.errors import CheckpointError
from textclass.models.config import EncoderConfig, activation_name, encoder_sizes, read_labels, require
from textclass.models.encoder import SequenceClassifier, activate
from textclass.models.family import TOKENIZER_FILES, Family, layer_modules, module_table


@dataclass(frozen=True, kw_only=True)
class DebertaConfig(EncoderConfig):
    embedding_size: int = 0  # width of the embedding tables; projected to hidden_size when it differs
    position_biased_input: bool = True  # absolute position embeddings added to the input (v2: yes, v3: no)
    relative_attention: bool = False
    content_to_position: bool = False  # "c2p" in pos_att_type
    position_to_content: bool = False  # "p2c" in pos_att_type
    # Relative distances are clipped to +-relative_span (rows of the relative table: 2 * relative_span).
    relative_span: int = 0
    position_buckets: int = 0  # 0: exact distances; else log buckets past position_buckets / 2
    max_relative_positions: int = 0  # the distance the last log bucket reaches
    share_att_key: bool = False  # relative embeddings projected by the content query/key layers
    norm_relative: bool = False  # norm_rel_ebd "layer_norm": LayerNorm on the relative table
    conv_kernel_size: int = 0  # 0: none; else DeBERTa-v2 xlarge's convolution beside the first layer
    conv_groups: int = 1
    conv_activation: str = "tanh"
    pooler_dropout: float = 0.0


def _activation(value: str, where: str) -> str:
    return "tanh" if value == "tanh" else activation_name(value, where)


def _read(raw: dict[str, Any], model_type: str) -> DebertaConfig:
    get = lambda key: require(raw, key, model_type)  # noqa: E731
    sizes = encoder_sizes(raw, model_type)
    hidden, heads = sizes["hidden_size"], sizes["num_heads"]
    if raw.get("attention_head_size") not in (None, hidden // heads):
        raise CheckpointError(f"attention_head_size {raw['attention_head_size']} is not supported; only "
                              f"hidden_size / num_attention_heads ({hidden // heads}) is")  # fmt: skip
    if raw.get("pooler_hidden_size") not in (None, hidden):
        raise CheckpointError(f"pooler_hidden_size {raw['pooler_hidden_size']} is not supported; only "
                              f"hidden_size ({hidden}) is")  # fmt: skip
    pos_att_type = raw.get("pos_att_type") or []
    if isinstance(pos_att_type, str):
        pos_att_type = pos_att_type.lower().split("|")
    pos_att_type = [kind.strip() for kind in pos_att_type]
    if set(pos_att_type) - {"c2p", "p2c"}:
        raise CheckpointError(f"pos_att_type {raw.get('pos_att_type')!r} is not supported; expected c2p and/or p2c")
    norm_rel = [part.strip() for part in str(raw.get("norm_rel_ebd") or "none").lower().split("|")]
    if set(norm_rel) - {"none", "layer_norm"}:
        raise CheckpointError(f"norm_rel_ebd {raw['norm_rel_ebd']!r} is not supported; expected 'none' or 'layer_norm'")
    max_position = int(get("max_position_embeddings"))
    max_relative = int(raw.get("max_relative_positions") or -1)
    max_relative = max_position if max_relative < 1 else max_relative
    buckets = max(int(raw.get("position_buckets") or -1), 0)
    relative = bool(raw.get("relative_attention", False))
    if relative and buckets and (buckets < 4 or max_relative <= buckets // 2 + 1):
        raise CheckpointError(
            f"position_buckets {buckets} with max_relative_positions {max_relative} is not supported; "
            "expected at least 4 buckets and max_relative_positions > position_buckets / 2 + 1"
        )
    embedding_size = int(raw.get("embedding_size") or hidden)
    hidden_dropout = float(raw.get("hidden_dropout_prob", 0.1))
    cls_dropout = raw.get("cls_dropout")
    return DebertaConfig(
        family="deberta-v2",
        model_type=model_type,
        **sizes,
        activation=activation_name(raw.get("hidden_act", "gelu"), "config.json hidden_act"),
        max_position_embeddings=max_position,
        type_vocab_size=int(raw.get("type_vocab_size", 0)),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-7)),
        pad_token_id=int(raw.get("pad_token_id") or 0),
        head_activation=_activation(raw.get("pooler_hidden_act", "gelu"), "config.json pooler_hidden_act"),
        hidden_dropout=hidden_dropout,
        attention_dropout=float(raw.get("attention_probs_dropout_prob", 0.1)),
        classifier_dropout=hidden_dropout if cls_dropout is None else float(cls_dropout),
        pooler_dropout=float(raw.get("pooler_dropout", 0.0)),
        initializer_range=float(raw.get("initializer_range", 0.02)),
        id2label=read_labels(raw),
        problem_type=raw.get("problem_type"),
        torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        raw=raw,
        embedding_size=embedding_size,
        position_biased_input=bool(raw.get("position_biased_input", True)),
        relative_attention=relative,
        content_to_position="c2p" in pos_att_type,
        position_to_content="p2c" in pos_att_type,
        relative_span=buckets or max_relative,
        position_buckets=buckets,
        max_relative_positions=max_relative,
        share_att_key=bool(raw.get("share_att_key", False)),
        norm_relative="layer_norm" in norm_rel,
        conv_kernel_size=max(int(raw.get("conv_kernel_size") or 0), 0),
        conv_groups=int(raw.get("conv_groups", 1)),
        conv_activation=_activation(raw.get("conv_act", "tanh"), "config.json conv_act"),
    )


def _weights(config: DebertaConfig) -> dict[str, str]:
    modules = {"embeddings.word_embeddings": "encoder.embeddings.word",
               "embeddings.LayerNorm": "encoder.embeddings.norm"}  # fmt: skip
    tables = {"encoder.embeddings.word", "encoder.embeddings.position", "encoder.embeddings.token_type",
              "encoder.embeddings.relative", "encoder.embeddings.project"}  # fmt: skip
    if config.position_biased_input:
        modules["embeddings.position_embeddings"] = "encoder.embeddings.position"
    if config.type_vocab_size > 0:
        modules["embeddings.token_type_embeddings"] = "encoder.embeddings.token_type"
    if config.embedding_size != config.hidden_size:
        modules["embeddings.embed_proj"] = "encoder.embeddings.project"
    if config.relative_attention:
        modules["encoder.rel_embeddings"] = "encoder.embeddings.relative"
    if config.norm_relative:
        modules["encoder.LayerNorm"] = "encoder.embeddings.relative_norm"
    layer = {
        "encoder.layer.{i}.attention.self.query_proj": "attention.query",
        "encoder.layer.{i}.attention.self.key_proj": "attention.key",
        "encoder.layer.{i}.attention.self.value_proj": "attention.value",
        "encoder.layer.{i}.attention.output.dense": "attention.out",
        "encoder.layer.{i}.attention.output.LayerNorm": "attention_norm",
        "encoder.layer.{i}.intermediate.dense": "ffn_in",
        "encoder.layer.{i}.output.dense": "ffn_out",
        "encoder.layer.{i}.output.LayerNorm": "ffn_norm",
    }
    if config.relative_attention and not config.share_att_key:
        if config.content_to_position:
            layer["encoder.layer.{i}.attention.self.pos_key_proj"] = "attention.position_key"
        if config.position_to_content:
            layer["encoder.layer.{i}.attention.self.pos_query_proj"] = "attention.position_query"
    modules.update(layer_modules(layer, config.num_layers))
    if config.conv_kernel_size:  # HF keeps it beside the layers; it belongs to the first one (see Layer)
        modules.update({"encoder.conv.conv": "encoder.layers.0.conv",
                        "encoder.conv.LayerNorm": "encoder.layers.0.conv_norm"})  # fmt: skip
    modules.update({"pooler.dense": "head.dense", "classifier": "head.out"})
    return module_table(modules, without_bias=frozenset(tables))


def log_bucket(distance: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """Relative distances kept exact up to buckets / 2, then log-spaced so that max_distance - 1 lands in the last
    bucket; same float32 ops in the same order as the reference, since ceil() amplifies any rounding change."""
    mid = buckets // 2
    sign = torch.sign(distance)
    # Near distances get a placeholder (mid - 1) that only keeps log() finite; the where() below discards it.
    magnitude = torch.where(distance.abs() < mid, torch.full_like(distance, mid - 1), distance.abs())
    log_scale = torch.log(torch.tensor((max_distance - 1) / mid, device=distance.device))
    far = torch.ceil(torch.log(magnitude / mid) / log_scale * (mid - 1)) + mid
    return torch.where(magnitude <= mid, distance.to(far.dtype), far * sign).long()


class Embeddings(nn.Module):
    """Token, optional absolute position and token type embeddings; also the relative-distance table the
    attention layers share (kept here so that layer-wise learning rates treat it as an embedding)."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        width = config.embedding_size
        self.word = nn.Embedding(config.vocab_size, width)
        self.position = nn.Embedding(config.max_position_embeddings, width) if config.position_biased_input else None
        self.token_type = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size > 0 else None
        self.project = nn.Linear(width, config.hidden_size, bias=False) if width != config.hidden_size else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        relative, norm_relative = config.relative_attention, config.relative_attention and config.norm_relative
        self.relative = nn.Embedding(2 * config.relative_span, config.hidden_size) if relative else None
        self.relative_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if norm_relative else None

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, attention_mask: torch.Tensor
    ) -> torch.Tensor:  # (batch, seq, hidden)
        x = self.word(input_ids)  # (batch, seq, embedding_size)
        if self.position is not None:
            x = x + self.position(torch.arange(input_ids.shape[1], device=input_ids.device))
        if self.token_type is not None:
            x = x + self.token_type(torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        if self.project is not None:
            x = self.project(x)
        x = self.norm(x)
        # Padding is zeroed: the first layer's convolution (when there is one) must see zeros past the text.
        return self.dropout(x * attention_mask[:, :, None].to(x.dtype))

    def relative_table(self) -> torch.Tensor:  # (2 * relative_span, hidden)
        table = self.relative.weight
        return table if self.relative_norm is None else self.relative_norm(table)


class DisentangledAttention(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        relative = config.relative_attention
        self.c2p = relative and config.content_to_position
        self.p2c = relative and config.position_to_content
        own = relative and not config.share_att_key  # own projections of the relative table, or the content ones
        self.position_key = nn.Linear(hidden, hidden) if own and self.c2p else None
        self.position_query = nn.Linear(hidden, hidden) if own and self.p2c else None
        # Each score term is scaled as if it were one of (1 + #terms) equal parts; pos_att_type counts even
        # without relative_attention, as in the reference.
        self.head_dim = hidden // config.num_heads
        terms = 1 + config.content_to_position + config.position_to_content
        self.scale = math.sqrt(self.head_dim * terms)
        self.dropout = nn.Dropout(config.attention_dropout)
        self.relative_dropout = nn.Dropout(config.hidden_dropout)

    def heads(self, t: torch.Tensor) -> torch.Tensor:  # (..., rows, hidden) -> (..., heads, rows, head_dim)
        # Sizes read from the tensor, as in encoder.py: ORT's shape inference (int8 export) follows this pattern.
        return t.view(*t.shape[:-1], self.num_heads, self.head_dim).transpose(-3, -2)

    def forward(
        self,
        x: torch.Tensor,  # (batch, seq, hidden)
        key_mask: torch.Tensor,  # (batch, 1, 1, seq) bool, True for tokens
        relative: torch.Tensor | None,  # (2 * span, hidden) relative-distance table
        relative_index: torch.Tensor | None,  # (seq, seq): row of `relative` for query i and key j
        first_only: bool = False,  # the first token's query alone: (batch, 1, hidden) out (encoder.py's first_only)
    ) -> torch.Tensor:
        rows = x[:, :1] if first_only else x
        q, k, v = self.heads(self.query(rows)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2) / self.scale)  # (batch, heads, queries, seq)
        if self.c2p or self.p2c:
            relative = self.relative_dropout(relative)
            # (batch, heads, queries, seq): the queries' rows of the distance index
            index = (relative_index[:1] if first_only else relative_index).expand_as(scores)
            if self.c2p:  # query i against the embedding of its distance to key j
                project = self.key if self.position_key is None else self.position_key
                position_key = self.heads(project(relative))  # (heads, 2 * span, head_dim)
                by_distance = torch.matmul(q, position_key.transpose(-1, -2))  # (batch, heads, seq, 2 * span)
                scores = scores + torch.gather(by_distance, -1, index) / self.scale
            if self.p2c:  # key j against the embedding of query i's distance to it
                project = self.query if self.position_query is None else self.position_query
                position_query = self.heads(project(relative))  # (heads, 2 * span, head_dim)
                by_distance = torch.matmul(k, position_query.transpose(-1, -2))  # rows are keys
                scores = scores + torch.gather(by_distance, -1, index.transpose(-1, -2)).transpose(-1, -2) / self.scale
        # Padded keys are masked out; padded query rows still attend to the text (finite, and never read).
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
        y = torch.matmul(self.dropout(scores.softmax(dim=-1)), v)  # (batch, heads, queries, head_dim)
        return self.out(y.transpose(1, 2).reshape(rows.shape))


class Layer(nn.Module):
    """Post-LN attention + feed-forward; the first layer may add DeBERTa-v2 xlarge's convolution over its input."""

    def __init__(self, config: DebertaConfig, with_conv: bool):
        super().__init__()
        hidden = config.hidden_size
        self.attention = DisentangledAttention(config)
        self.attention_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(hidden, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.activation = config.activation
        self.conv = self.conv_norm = None
        if with_conv:
            size = config.conv_kernel_size
            self.conv = nn.Conv1d(hidden, hidden, size, padding=(size - 1) // 2, groups=config.conv_groups)
            self.conv_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
            self.conv_activation = config.conv_activation

    def forward(
        self,
        x: torch.Tensor,  # (batch, seq, hidden)
        key_mask: torch.Tensor,  # (batch, 1, 1, seq) bool
        token_mask: torch.Tensor,  # (batch, seq, 1), 1.0 for tokens and 0.0 for padding
        relative: torch.Tensor | None,
        relative_index: torch.Tensor | None,
        first_only: bool = False,
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only
        attended = self.attention(x, key_mask, relative, relative_index, first_only)
        rows = slice(0, 1) if first_only else slice(None)
        h = self.attention_norm(x[:, rows] + self.dropout(attended))
        out = self.ffn_norm(h + self.dropout(self.ffn_out(activate(self.ffn_in(h), self.activation))))
        if self.conv is None:
            return out
        # The convolution reads the layer's input (the embeddings) and joins the layer's output.
        local = self.conv(x.transpose(1, 2)).transpose(1, 2)[:, rows] * token_mask[:, rows]  # (batch, rows, hidden)
        local = activate(self.dropout(local), self.conv_activation)
        return self.conv_norm(out + local) * token_mask[:, rows]


class Encoder(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(
            Layer(config, with_conv=i == 0 and config.conv_kernel_size > 0) for i in range(config.num_layers)
        )

    def relative_index(self, input_ids: torch.Tensor) -> torch.Tensor:  # (seq, seq) rows of the relative table
        # Built with torch ops from the input's length, so an exported graph serves every length.
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        distance = positions[:, None] - positions[None, :]  # query i minus key j
        config = self.config
        if config.position_buckets:
            distance = log_bucket(distance, config.position_buckets, config.max_relative_positions)
        span = config.relative_span
        return torch.clamp(distance + span, 0, 2 * span - 1)

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq)
        attention_mask: torch.Tensor | None = None,  # (batch, seq), 1 for tokens, 0 for padding
        token_type_ids: torch.Tensor | None = None,
        first_only: bool = False,
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, attention_mask)
        token_mask = attention_mask[:, :, None].to(x.dtype)  # (batch, seq, 1)
        key_mask = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq)
        relative = relative_index = None
        if self.config.relative_attention:
            relative, relative_index = self.embeddings.relative_table(), self.relative_index(input_ids)
        for depth, layer in enumerate(self.layers):  # as encoder.last_layer_first_only
            x = layer(x, key_mask, token_mask, relative, relative_index, first_only and depth == len(self.layers) - 1)
        return x


class ClassificationHead(nn.Module):
    """HF's ContextPooler (first token, dropout, dense, activation) and then the classifier."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        self.pooler_dropout = nn.Dropout(config.pooler_dropout)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.activation = config.head_activation

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden) -> (batch, labels)
        x = activate(self.dense(self.pooler_dropout(hidden[:, 0])), self.activation)
        return self.out(self.dropout(x))


class DebertaClassifier(SequenceClassifier):
    encoder_type = Encoder
    head_type = ClassificationHead


DEBERTA_V2 = Family(
    name="deberta-v2",
    model_types=("deberta-v2",),
    base_prefix="deberta",
    read_config=_read,
    weights=_weights,
    model="textclass.models.deberta:DebertaClassifier",
    architectures={"deberta-v2": "DebertaV2ForSequenceClassification"},
    # MLM heads (legacy "cls.", v3 "lm_predictions.", RTD "mask_predictions."); v3 checkpoints may carry an
    # absolute position table they do not use (position_biased_input false), which transformers ignores too.
    ignored_prefixes=(
        "embeddings.position_ids",
        "embeddings.position_embeddings",
        "cls.",
        "lm_predictions.",
        "mask_predictions.",
    ),
    top_level_head=("pooler.", "classifier."),
    token_types=True,
    tokenizer_files=(*TOKENIZER_FILES, "spm.model"),
)

FAMILIES = (DEBERTA_V2,)
