"""ModernBERT: pre-LayerNorm encoder with rotary positions and alternating local / global attention.

What differs from BERT: no position table (rotary positions on queries and keys, with one base for
global layers and another for local ones); every `global_attn_every_n_layers`-th layer attends over the
whole text, the others only within `local_attention / 2` tokens on each side; one fused Wqkv projection;
a GeGLU feed-forward; LayerNorms before each block (the first layer's is the embedding norm); and a head
of pooling (first token or masked mean), dense, activation, norm, then the output layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from textclass.errors import CheckpointError
from textclass.models.config import EncoderConfig, activation_name, encoder_sizes, read_labels
from textclass.models.encoder import SequenceClassifier, activate
from textclass.models.family import Family, layer_modules, module_table

POOLINGS = ("cls", "mean")
_LAYER_TYPES = {"full_attention": True, "sliding_attention": False}  # HF layer type -> global attention


@dataclass(frozen=True, kw_only=True)
class ModernBertConfig(EncoderConfig):
    global_layers: tuple[bool, ...] = ()  # per layer: attends over the whole text (True) or a local window
    local_attention: int = 128  # window width; a token sees local_attention // 2 tokens on each side
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    classifier_bias: bool = False  # the head's dense layer; the output layer always has a bias
    classifier_pooling: str = "cls"
    embedding_dropout: float = 0.0


# ---- reading config.json --------------------------------------------------------------------------
def _global_layers(raw: dict[str, Any], num_layers: int) -> tuple[bool, ...]:
    """Which layers attend globally: transformers 5 writes `layer_types`, older configs an interval."""
    layer_types = raw.get("layer_types")
    if layer_types is not None:
        unknown = sorted({str(t) for t in layer_types} - set(_LAYER_TYPES))
        if unknown or len(layer_types) != num_layers:
            raise CheckpointError(
                f"config.json layer_types {layer_types!r} is not supported; expected {num_layers} entries "
                f"(num_hidden_layers), each one of {', '.join(_LAYER_TYPES)}"
            )
        return tuple(_LAYER_TYPES[t] for t in layer_types)
    every = raw.get("global_attn_every_n_layers", 3)
    if not isinstance(every, int) or every < 1:
        raise CheckpointError(
            f"config.json global_attn_every_n_layers {every!r} is not supported; expected an int >= 1"
        )
    return tuple(i % every == 0 for i in range(num_layers))


def _rope_thetas(raw: dict[str, Any]) -> tuple[float, float]:
    """(global, local) rotary bases: transformers 5's `rope_parameters` win over the older separate keys."""
    if raw.get("rope_scaling") is not None:
        raise CheckpointError(f"config.json rope_scaling {raw['rope_scaling']!r} is not supported; only plain "
                              "rotary positions (rope_scaling null) are")  # fmt: skip
    params = raw.get("rope_parameters") or {}
    thetas = []
    for layer_type, old_key, default in (("full_attention", "global_rope_theta", 160_000.0),
                                         ("sliding_attention", "local_rope_theta", 10_000.0)):  # fmt: skip
        entry = params.get(layer_type) or {}
        rope_type = entry.get("rope_type", "default")
        if rope_type != "default":
            raise CheckpointError(f"config.json rope_parameters.{layer_type}.rope_type {rope_type!r} is not "
                                  "supported; only 'default' is")  # fmt: skip
        theta = entry.get("rope_theta", raw.get(old_key, default))
        if not isinstance(theta, (int, float)) or theta <= 0:
            raise CheckpointError(f"config.json {old_key} {theta!r} is not supported; expected a positive number")
        thetas.append(float(theta))
    return thetas[0], thetas[1]


def _read(raw: dict[str, Any], model_type: str) -> ModernBertConfig:
    sizes = encoder_sizes(raw, model_type)
    hidden, heads, num_layers = sizes["hidden_size"], sizes["num_heads"], sizes["num_layers"]
    if (hidden // heads) % 2:
        raise CheckpointError(f"head size {hidden // heads} (hidden_size / num_attention_heads) is odd; rotary "
                              "positions need an even one (they rotate pairs of dimensions)")  # fmt: skip
    pooling = raw.get("classifier_pooling", "cls")
    if pooling not in POOLINGS:
        raise CheckpointError(f"config.json classifier_pooling {pooling!r} is not supported; expected one of "
                              f"{', '.join(POOLINGS)}")  # fmt: skip
    local_attention = raw.get("local_attention", 128)
    if not isinstance(local_attention, int) or local_attention < 1:
        raise CheckpointError(f"config.json local_attention {local_attention!r} is not supported; expected an int "
                              ">= 1")  # fmt: skip
    global_theta, local_theta = _rope_thetas(raw)
    return ModernBertConfig(
        family="modernbert",
        model_type=model_type,
        **sizes,
        activation=activation_name(raw.get("hidden_activation", "gelu"), "config.json hidden_activation"),
        # No position table: rotary positions extend to any length, so this is the length it was trained for.
        max_position_embeddings=int(raw.get("max_position_embeddings", 8192)),
        layer_norm_eps=float(raw.get("norm_eps", 1e-5)),
        pad_token_id=int(raw.get("pad_token_id") or 0) if "pad_token_id" in raw else 50283,
        head_activation=activation_name(raw.get("classifier_activation", "gelu"), "config.json classifier_activation"),
        hidden_dropout=float(raw.get("mlp_dropout", 0.0)),
        attention_dropout=float(raw.get("attention_dropout", 0.0)),
        classifier_dropout=float(raw.get("classifier_dropout", 0.0)),
        initializer_range=float(raw.get("initializer_range", 0.02)),
        id2label=read_labels(raw),
        problem_type=raw.get("problem_type"),
        torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
        raw=raw,
        global_layers=_global_layers(raw, num_layers),
        local_attention=local_attention,
        global_rope_theta=global_theta,
        local_rope_theta=local_theta,
        norm_bias=bool(raw.get("norm_bias", False)),
        attention_bias=bool(raw.get("attention_bias", False)),
        mlp_bias=bool(raw.get("mlp_bias", False)),
        classifier_bias=bool(raw.get("classifier_bias", False)),
        classifier_pooling=pooling,
        embedding_dropout=float(raw.get("embedding_dropout", 0.0)),
    )


# ---- the weight table -----------------------------------------------------------------------------
_LAYER = {
    "layers.{i}.attn_norm": "attention_norm",
    "layers.{i}.attn.Wqkv": "attention.qkv",
    "layers.{i}.attn.Wo": "attention.out",
    "layers.{i}.mlp_norm": "ffn_norm",
    "layers.{i}.mlp.Wi": "ffn_in",
    "layers.{i}.mlp.Wo": "ffn_out",
}


def _has_bias(config: ModernBertConfig, ours: str) -> bool:
    """Each kind of module has its own bias switch in config.json; the output layer always has a bias."""
    if ours.endswith("norm"):
        return config.norm_bias
    if ".attention." in ours:
        return config.attention_bias
    if ours.endswith(("ffn_in", "ffn_out")):
        return config.mlp_bias
    if ours == "head.dense":
        return config.classifier_bias
    return ours == "head.out"  # the word embedding table has none


def _weights(config: ModernBertConfig) -> dict[str, str]:
    modules = {"embeddings.tok_embeddings": "encoder.embeddings.word", "embeddings.norm": "encoder.embeddings.norm"}
    modules.update(layer_modules(_LAYER, config.num_layers))
    del modules["layers.0.attn_norm"]  # the first layer reads the embedding norm's output directly
    modules.update({"final_norm": "encoder.final_norm", "head.dense": "head.dense", "head.norm": "head.norm",
                    "classifier": "head.out"})  # fmt: skip
    without_bias = frozenset(ours for ours in modules.values() if not _has_bias(config, ours))
    return module_table(modules, without_bias=without_bias)


# ---- the model ------------------------------------------------------------------------------------
def _layer_norm(config: ModernBertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.norm_bias)


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (seq, head_dim) float32: dimension pairs (j, j + head_dim/2) turn at theta^(-2j/head_dim).

    Computed from `positions` (a tensor taken from the input), so a traced graph serves every length.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions[:, None].float() * inv_freq[None, :]  # (seq, head_dim / 2)
    angles = torch.cat((angles, angles), dim=-1)  # (seq, head_dim): the half-split layout, not interleaved
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions on (batch, heads, seq, head_dim), in float32 as transformers does, back in x's dtype."""
    half = x.shape[-1] // 2
    x32 = x.float()
    rotated = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_heads
        self.head_dim = hidden // config.num_heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=config.attention_bias)
        self.out = nn.Linear(hidden, hidden, bias=config.attention_bias)
        self.dropout_p = config.attention_dropout
        self.out_dropout = nn.Dropout(config.attention_dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, first_only: bool = False
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only: the first token's query alone
        batch, seq, hidden = x.shape
        # Wqkv's outputs are laid out (3, heads, head_dim): all queries, then all keys, then all values.
        qkv = self.qkv(x).view(batch, seq, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (batch, heads, seq, head_dim)
        k = rotate(k, cos, sin)
        # mask: additive float, (batch, 1, 1, seq) for global layers, (batch, 1, seq, seq) for local ones.
        if first_only:  # one packed product makes every query; only the first one's attention is needed
            q, cos, sin, mask = q[:, :, :1], cos[:1], sin[:1], mask[:, :, :1]
        q = rotate(q, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0, scale=self.head_dim**-0.5
        )
        return self.out_dropout(self.out(y.transpose(1, 2).reshape(batch, q.shape[2], hidden)))


class Layer(nn.Module):
    def __init__(self, config: ModernBertConfig, index: int):
        super().__init__()
        # Pre-LN; the first layer's input is already normalised by the embeddings, so it has no norm of its own.
        self.attention_norm = nn.Identity() if index == 0 else _layer_norm(config)
        self.attention = Attention(config)
        self.ffn_norm = _layer_norm(config)
        # GeGLU: one projection gives the value and its gate, each intermediate_size wide.
        self.ffn_in = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.activation = config.activation
        self.is_global = config.global_layers[index]

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, first_only: bool = False
    ) -> torch.Tensor:
        attended = self.attention(self.attention_norm(x), mask, cos, sin, first_only)
        x = (x[:, :1] if first_only else x) + attended
        value, gate = self.ffn_in(self.ffn_norm(x)).chunk(2, dim=-1)  # each (batch, seq, intermediate)
        return x + self.ffn_out(self.dropout(activate(value, self.activation) * gate))


class Embeddings(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = _layer_norm(config)
        self.dropout = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (batch, seq) -> (batch, seq, hidden)
        return self.dropout(self.norm(self.word(input_ids)))


class Encoder(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config, i) for i in range(config.num_layers))
        self.final_norm = _layer_norm(config)

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq)
        attention_mask: torch.Tensor | None = None,  # (batch, seq), 1 for tokens, 0 for padding
        token_type_ids: torch.Tensor | None = None,  # ModernBERT has none; accepted for the shared signature
        first_only: bool = False,
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only
        config = self.config
        x = self.embeddings(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (seq,)
        head_dim = config.hidden_size // config.num_heads
        keys = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq): keys that are real tokens
        distance = (positions[None, :] - positions[:, None]).abs()[None, None]  # (1, 1, seq, seq)
        # A padding query far past the text has no real token in its window. Every query also sees itself, so
        # no row is wholly blocked: in float16 score + minimum can round to -inf, a row of -inf gives NaN,
        # and NaN spreads through the values even at weight 0. Real queries see themselves anyway.
        local = (keys & (distance <= config.local_attention // 2)) | (distance == 0)  # (batch, 1, seq, seq)
        # Additive masks: 0 where allowed, the dtype's minimum where not, as transformers' eager path.
        blocked = torch.finfo(x.dtype).min
        # Both keyed by layer.is_global: computed once, shared by the layers of each kind.
        masks = {True: (~keys).to(x.dtype) * blocked, False: (~local).to(x.dtype) * blocked}
        rotary = {True: rotary_tables(positions, head_dim, config.global_rope_theta),
                  False: rotary_tables(positions, head_dim, config.local_rope_theta)}  # fmt: skip
        for depth, layer in enumerate(self.layers):  # as encoder.last_layer_first_only
            last = first_only and depth == len(self.layers) - 1
            x = layer(x, masks[layer.is_global], *rotary[layer.is_global], first_only=last)
        return self.final_norm(x)


class ClassificationHead(nn.Module):
    """Pool (first token or masked mean), then dense, activation, norm, and the linear layer to the labels."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.pooling = config.classifier_pooling
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.norm = _layer_norm(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        self.activation = config.head_activation

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "cls":
            x = hidden[:, 0]  # (batch, hidden)
        else:
            if attention_mask is None:
                attention_mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
            weights = attention_mask.to(hidden.dtype)[:, :, None]  # (batch, seq, 1)
            x = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # (batch, hidden)
        x = self.norm(activate(self.dense(x), self.activation))
        return self.out(self.dropout(x))


class ModernBertClassifier(SequenceClassifier):
    encoder_type = Encoder
    head_type = ClassificationHead

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.first_only = config.classifier_pooling == "cls"  # mean pooling reads every row of the last layer

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:  # (batch, num_labels) logits
        # Mean pooling needs the mask; ModernBERT takes no token types.
        return self.head(self.encoder(input_ids, attention_mask, first_only=self.first_only), attention_mask)


MODERNBERT = Family(
    name="modernbert",
    model_types=("modernbert",),
    base_prefix="model",
    read_config=_read,
    weights=_weights,
    model="textclass.models.modernbert:ModernBertClassifier",
    architectures={"modernbert": "ModernBertForSequenceClassification"},
    # The masked-LM checkpoints ModernBERT ships carry head.dense/head.norm (reused, as transformers does)
    # and a decoder we leave unused.
    ignored_prefixes=("decoder.",),
    top_level_head=("head.", "classifier."),
)

FAMILIES = (MODERNBERT,)
