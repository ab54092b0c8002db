"""What a model family declares: how to read its config.json and how its tensor names map onto ours."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textclass.config import EncoderConfig

# Our parameter names inside one encoder layer, shared by every family's table.
LAYER_PARAMS = ("attention.query", "attention.key", "attention.value", "attention.out",
                "attention_norm", "ffn_in", "ffn_out", "ffn_norm")  # fmt: skip
_EMBEDDING_TABLES = {"encoder.embeddings.word", "encoder.embeddings.position", "encoder.embeddings.token_type"}


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    base_prefix: str  # "bert", "distilbert", "roberta": what HF puts before encoder names in a classifier
    read_config: Callable[[dict[str, Any], str], EncoderConfig]
    # HF module path (after base_prefix) -> our module path, for modules outside the layers.
    embeddings: dict[str, str]
    # HF module path with {i} for the layer index -> our parameter name in LAYER_PARAMS.
    layer: dict[str, str]
    # HF module path -> our head module path ("head.dense"/"head.out"); may sit inside the base (BERT pooler).
    head: dict[str, str]
    # Tensors that real checkpoints carry but a classifier does not use (MLM heads, position_ids buffers).
    ignored_prefixes: tuple[str, ...]

    def weight_table(self, config: EncoderConfig) -> dict[str, str]:
        """HF tensor name (base prefix stripped) -> our parameter name, for every tensor we load."""
        modules: dict[str, str] = {}
        for hf, ours in self.embeddings.items():
            if ours == "encoder.embeddings.token_type" and config.type_vocab_size == 0:
                continue
            modules[hf] = ours
        for i in range(config.num_layers):
            for hf, ours in self.layer.items():
                modules[hf.format(i=i)] = f"encoder.layers.{i}.{ours}"
        modules.update(self.head)
        table: dict[str, str] = {}
        for hf, ours in modules.items():
            table[f"{hf}.weight"] = f"{ours}.weight"
            if ours not in _EMBEDDING_TABLES:  # embedding tables have no bias
                table[f"{hf}.bias"] = f"{ours}.bias"
        return table

    def head_names(self) -> set[str]:
        return {f"{hf}.{kind}" for hf in self.head for kind in ("weight", "bias")}
