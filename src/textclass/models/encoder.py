"""The post-LayerNorm transformer encoder shared by BERT, RoBERTa/XLM-R and DistilBERT, and its head.

The families differ only in embeddings (token types, position offset) and in the head's activation, so
one set of modules serves them all; `models/<family>.py` maps checkpoint tensor names onto these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from textclass.models.config import EncoderConfig


def activate(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "gelu":
        return F.gelu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    if name == "tanh":
        return torch.tanh(x)
    raise ValueError(f"unknown activation {name!r}")


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size > 0 else None
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        batch, seq = input_ids.shape
        offset = self.config.position_offset
        if offset is None:
            positions = torch.arange(seq, device=input_ids.device).expand(batch, seq)
        else:
            # RoBERTa numbers real tokens from pad_token_id + 1 and gives padding the pad position.
            not_pad = input_ids.ne(self.config.pad_token_id).int()
            positions = torch.cumsum(not_pad, dim=1) * not_pad + self.config.pad_token_id
        x = self.word(input_ids) + self.position(positions)  # (batch, seq, hidden)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(batch, 1, 1, seq) bool, True where a key may be attended to; None when nothing is padded (SDPA's fast path).

    Export traces a padded batch, so the graph keeps the masked branch, which is right for any batch.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout_p = config.attention_dropout
        # Export sets this: plain matmul-softmax-matmul is the graph ONNX Runtime's optimizer fuses into one op.
        self.explicit = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, first_only: bool = False) -> torch.Tensor:
        """(batch, seq, hidden) -> the same, or (batch, 1, hidden) with `first_only`: the first token's query alone
        (it still attends to every key), for a last layer whose other rows no head reads."""
        batch, seq, hidden = x.shape
        head_dim = hidden // self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # (batch, rows, hidden) -> (batch, heads, rows, head_dim)
            return t.view(batch, -1, self.num_heads, head_dim).transpose(1, 2)

        q = heads(self.query(x[:, :1] if first_only else x))
        k, v = heads(self.key(x)), heads(self.value(x))
        rows = 1 if first_only else seq
        if self.explicit:  # mask: (batch, 1, 1, seq) additive float, 0 for tokens and a huge negative for padding
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim) + mask  # (batch, heads, rows, seq)
            y = torch.matmul(scores.softmax(dim=-1), v)
            return self.out(y.transpose(1, 2).reshape(batch, rows, hidden))
        # mask: (batch, 1, 1, seq) bool, True where a key may be attended to; None when nothing is padded.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0, scale=1 / math.sqrt(head_dim)
        )
        return self.out(y.transpose(1, 2).reshape(batch, rows, hidden))


class Layer(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.activation = config.activation

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, first_only: bool = False) -> torch.Tensor:
        # Post-LN, as in the original BERT: residual first, then normalise.
        attended = self.attention(x, mask, first_only)
        x = self.attention_norm((x[:, :1] if first_only else x) + self.dropout(attended))
        h = self.ffn_out(activate(self.ffn_in(x), self.activation))
        return self.ffn_norm(x + self.dropout(h))


class Encoder(nn.Module):
    embeddings_type: type[nn.Module] = Embeddings  # ELECTRA's factorised embeddings subclass this encoder

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.embeddings = self.embeddings_type(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_layers))
        self.explicit_attention = False

    def use_explicit_attention(self) -> None:
        """Trace-friendly attention for ONNX export: always masked, no SDPA, no data-dependent branch."""
        self.explicit_attention = True
        for layer in self.layers:
            layer.attention.explicit = True

    def forward(
        self,
        input_ids: torch.Tensor,  # (batch, seq)
        attention_mask: torch.Tensor | None = None,  # (batch, seq), 1 for tokens, 0 for padding
        token_type_ids: torch.Tensor | None = None,
        first_only: bool = False,
    ) -> torch.Tensor:  # (batch, seq, hidden); (batch, 1, hidden) with first_only
        x = self.embeddings(input_ids, token_type_ids)
        if self.explicit_attention:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            # (batch, 1, 1, seq); the (1 - mask) * min pattern is what ORT's attention fusion recognises.
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        else:
            mask = padding_mask(attention_mask)
        return last_layer_first_only(self.layers, x, mask, first_only)


def last_layer_first_only(layers: Sequence[nn.Module], x: torch.Tensor, mask: torch.Tensor | None,
                          first_only: bool) -> torch.Tensor:  # fmt: skip
    """Runs the layers; with `first_only` the last computes the first token's row alone.

    A head that reads the first token needs nothing else from the last layer: its keys and values still come from
    every token, but its query, output projection, feed-forward block and norms run on one row instead of all, a
    sixth of a 6-layer model's products. The first row is what the full layer computes (rows are independent
    after attention), so logits match the full model's.
    """
    for depth, layer in enumerate(layers):
        x = layer(x, mask, first_only and depth == len(layers) - 1)
    return x


class ClassificationHead(nn.Module):
    """First-token pooling: dense + activation, then a linear layer to the labels.

    BERT calls the dense layer its pooler (tanh), DistilBERT its pre_classifier (ReLU), RoBERTa its
    classifier.dense (tanh); the maths is the same.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.activation = config.head_activation
        self.dropout_first = config.head_dropout_first

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden) -> (batch, labels)
        x = hidden[:, 0]
        if self.dropout_first:
            x = self.dropout(x)
        x = activate(self.dense(x), self.activation)
        return self.out(self.dropout(x))


class SequenceClassifier(nn.Module):
    """An encoder and a head: every family's top-level module. A family with its own encoder or head subclasses
    this and names them (ELECTRA, ALBERT, MPNet, DeBERTa, ModernBERT)."""

    encoder_type: type[nn.Module] = Encoder
    head_type: type[nn.Module] = ClassificationHead
    # The head reads the first token only and the encoder takes `first_only` (last_layer_first_only): the last
    # layer then computes that row alone. A family whose head may read every row (ModernBERT's mean) says False;
    # export.py's trace for ONNX Runtime's attention fusion turns it off (the fusion knows self-attention only).
    first_only: bool = True

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = self.encoder_type(config)
        self.head = self.head_type(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:  # (batch, num_labels) logits
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids, first_only=self.first_only))
