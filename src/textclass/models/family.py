"""What a model family declares: everything that differs between families, and nothing outside it asks.

Code outside `models/` never tests a family's name: it reads these fields (token types, the head's tensor
names, the architecture written on save, the ONNX fusion, the tokenizer files) or calls `build`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textclass.models.config import EncoderConfig

if TYPE_CHECKING:
    from torch import nn

# Tokenizer files any family may ship; a family adds its own (DeBERTa's spm.model) in `tokenizer_files`.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt")  # fmt: skip
# Head modules that sit at the top level of HF *ForSequenceClassification models, outside the base model.
TOP_LEVEL_HEAD = ("classifier.", "pre_classifier.")


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    base_prefix: str  # "bert", "deberta", "model" (ModernBERT): what HF puts before encoder names in a classifier
    read_config: Callable[[dict[str, Any], str], EncoderConfig]
    # HF tensor name (base prefix stripped) -> our parameter name, for every tensor the model loads. Our names
    # follow one convention across families: encoder.embeddings.*, encoder.layers.{i}.*, head.* with the
    # output layer at head.out (training relabels it, layer-wise lr decay reads the depths).
    weights: Callable[[EncoderConfig], dict[str, str]]
    # "module:Class" of the nn.Module, imported only when a torch model is built (not on the ONNX path).
    model: str
    # model_type -> the *ForSequenceClassification class transformers loads a saved checkpoint with.
    architectures: Mapping[str, str]
    # Tensors that real checkpoints carry but a classifier does not use (MLM heads, position_ids buffers).
    ignored_prefixes: tuple[str, ...] = ()
    # HF names of head modules outside the base model (BERT's pooler sits inside it, DeBERTa's outside).
    top_level_head: tuple[str, ...] = TOP_LEVEL_HEAD
    # Whether its tokenizer returns token_type_ids for the model (whether the model uses them is
    # config.type_vocab_size > 0).
    token_types: bool = False
    # model_type for ONNX Runtime's transformer optimizer, which fuses attention and norms; None exports the
    # plain graph (ORT's own graph optimizations still run when the session opens).
    onnx_fusion: str | None = None
    # "module:function" that builds the classifier's ONNX graph from config.json and numpy weights, without
    # torch (textclass.onnx.graph:build_graph for the BERT lineage); None: the torch exporter, which needs torch.
    onnx_builder: str | None = None
    tokenizer_files: tuple[str, ...] = TOKENIZER_FILES

    def weight_table(self, config: EncoderConfig) -> dict[str, str]:
        return self.weights(config)

    def head_names(self, config: EncoderConfig) -> set[str]:
        """HF names (base prefix stripped) of the head's tensors: what a bare encoder lacks."""
        return {hf for hf, ours in self.weights(config).items() if ours.startswith("head.")}

    def hf_name(self, name: str) -> str:
        """The full HF name of a table entry: head modules outside the base model as they are, the rest prefixed."""
        return name if name.startswith(self.top_level_head) else f"{self.base_prefix}.{name}"

    def build_onnx(self, config: EncoderConfig, weights: Mapping[str, Any], sources: Mapping[str, str]) -> Any:
        """The classifier's onnx.ModelProto from our-named float32 arrays (`sources`: ours -> checkpoint name)."""
        module, _, function = (self.onnx_builder or "").partition(":")
        return getattr(importlib.import_module(module), function)(config, weights, sources)

    def build(self, config: EncoderConfig) -> nn.Module:
        """The family's nn.Module for `config`, with uninitialised weights (callers load or initialise them)."""
        module, _, cls = self.model.partition(":")
        return getattr(importlib.import_module(module), cls)(config)


def module_table(modules: Mapping[str, str], without_bias: frozenset[str] = frozenset()) -> dict[str, str]:
    """Tensor table from a module table: each HF module's weight and bias onto ours (none for `without_bias`)."""
    table: dict[str, str] = {}
    for hf, ours in modules.items():
        table[f"{hf}.weight"] = f"{ours}.weight"
        if ours not in without_bias:
            table[f"{hf}.bias"] = f"{ours}.bias"
    return table


def layer_modules(layer: Mapping[str, str], num_layers: int) -> dict[str, str]:
    """Per-layer module table ({i} in HF names) expanded for every layer onto encoder.layers.{i}.<ours>."""
    return {hf.format(i=i): f"encoder.layers.{i}.{ours}" for i in range(num_layers) for hf, ours in layer.items()}
