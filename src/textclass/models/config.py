"""The model configuration every family reduces to, read from a Hugging Face `config.json`.

Families differ in key names (`dim` vs `hidden_size`), not in what the encoder needs, so each family
file turns its `config.json` into this one frozen dataclass and the shared encoder reads only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textclass.errors import CheckpointError

# config.json key of the calibration temperature `textclass train --temperature-calibrate` stores.
TEMPERATURE_KEY = "textclass_temperature"
# Activations the encoder implements; HF names several spellings of the two GELUs.
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "tanh")
_ACTIVATION_ALIASES = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",  # classifier heads (ModernBERT's classifier_activation may be tanh)
}


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """What every family's model needs; a family with more (DeBERTa's relative attention, ModernBERT's rotary
    and local windows) subclasses it with its own fields, each with a default."""

    family: str  # our family name: "bert", "distilbert", "roberta", "deberta-v2", ...
    model_type: str  # as written in config.json ("xlm-roberta" keeps its own name)
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    activation: str
    max_position_embeddings: int
    layer_norm_eps: float
    pad_token_id: int
    id2label: tuple[str, ...]
    type_vocab_size: int = 0  # 0 when the model has no token type embeddings (DistilBERT, DeBERTa-v3)
    # RoBERTa counts positions from pad_token_id + 1; None means positions start at 0.
    position_offset: int | None = None
    head_activation: str = "tanh"  # "tanh" (BERT pooler, RoBERTa head) or "relu" (DistilBERT pre_classifier)
    head_dropout_first: bool = False  # RoBERTa's head applies dropout before its dense layer too
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    classifier_dropout: float = 0.1
    initializer_range: float = 0.02
    problem_type: str | None = None
    torch_dtype: str | None = None
    # The original config.json, kept so that training can write a checkpoint transformers reads back.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def temperature(self) -> float:
        """Scores divide logits by it before softmax/sigmoid (1.0: none stored)."""
        return float(self.raw.get(TEMPERATURE_KEY, 1.0))

    @property
    def max_tokens(self) -> int:
        """Longest input (special tokens included) the position table can hold."""
        offset = 0 if self.position_offset is None else self.position_offset
        return self.max_position_embeddings - offset


def activation_name(value: str, where: str) -> str:
    if value not in _ACTIVATION_ALIASES:
        raise CheckpointError(
            f"{where}: activation {value!r} is not supported; expected one of {sorted(_ACTIVATION_ALIASES)}"
        )
    return _ACTIVATION_ALIASES[value]


def read_labels(raw: dict[str, Any]) -> tuple[str, ...]:
    """id2label as a tuple indexed by class id; LABEL_i when the config names none (as transformers does)."""
    id2label = raw.get("id2label")
    if id2label:
        try:
            by_id = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"config.json: id2label keys must be integers, got {list(id2label)}") from exc
        if sorted(by_id) != list(range(len(by_id))):
            raise CheckpointError(f"config.json: id2label ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}")
        return tuple(by_id[i] for i in range(len(by_id)))
    num_labels = int(raw.get("num_labels", 2))
    return tuple(f"LABEL_{i}" for i in range(num_labels))


def require(raw: dict[str, Any], key: str, model_type: str) -> Any:
    if key not in raw:
        raise CheckpointError(f"config.json of a {model_type} model lacks {key!r}")
    return raw[key]


def encoder_sizes(raw: dict[str, Any], model_type: str) -> dict[str, int]:
    """The sizes BERT-style config.json files name alike (every family but DistilBERT), checked: EncoderConfig
    fields vocab_size, hidden_size, num_layers, num_heads, intermediate_size."""
    get = lambda key: int(require(raw, key, model_type))  # noqa: E731
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    if hidden % heads:
        raise CheckpointError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    return dict(vocab_size=get("vocab_size"), hidden_size=hidden, num_layers=get("num_hidden_layers"),
                num_heads=heads, intermediate_size=get("intermediate_size"))  # fmt: skip
