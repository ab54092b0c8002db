"""Build the ONNX graph of a BERT-lineage classifier from its config and weights: no torch, only `onnx` and numpy.

The graph is the one the TorchScript exporter writes for models/encoder.py with explicit attention (export.py's
`_trace`), node for node where it matters, because ONNX Runtime's transformer optimizer (export.py's `_fuse`)
recognises operator patterns, not intentions:
- attention as MatMul(q, kᵀ) / √head_dim + mask, Softmax, MatMul(·, v), heads split by Reshape + Transpose;
- the additive mask (1 - mask) * float32 min, reached through Unsqueeze, Unsqueeze, Cast, Sub, Mul;
- post-LN residual blocks (Add, LayerNormalization), GELU as x * (1 + erf(x / √2)) * 0.5;
- positions 0..seq-1 (BERT, DistilBERT), or RoBERTa's cumsum over non-padding tokens plus pad_token_id;
- first-token pooling: Gather, Gemm, tanh (BERT pooler, RoBERTa head) or ReLU (DistilBERT), Gemm to the labels.
The optimizer then fuses it exactly as it fuses the traced graph (EmbedLayerNormalization, one Attention per
layer, SkipLayerNormalization, BiasGelu), and the result runs the same kernels. One difference, on purpose: the
last layer computes the first token's row alone (models/encoder.py `first_only`; the head reads nothing else); the
optimizer leaves its one-query attention unfused.

Weights come in under our parameter names (the family's weight table applied by checkpoint.map_weights), as
float32 arrays; Linear weights are stored transposed for MatMul, as the exporter stores them, which is also
what onnx_link.py looks for when it points the graph into the checkpoint's safetensors file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from textclass.errors import CheckpointError
from textclass.models.config import EncoderConfig
from textclass.onnx.export import OPSET

if TYPE_CHECKING:
    import onnx

IR_VERSION = 8  # what the TorchScript exporter writes at opset 17; every onnxruntime >= 1.18 reads it


class _Graph:
    """Nodes and initializers under construction; every node gets a fresh output name."""

    def __init__(self, weights: Mapping[str, np.ndarray], sources: Mapping[str, str]):
        from onnx import helper

        self.helper = helper
        self.weights = weights
        self.sources = sources
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def op(self, op_type: str, *inputs: str, name: str = "", **attributes: object) -> str:
        self.count += 1
        output = f"/{name or op_type}_{self.count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output

    def const(self, value: np.ndarray | float | int | list, dtype: type = np.float32) -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"const_{self.count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def checked(self, ours: str, shape: tuple[int, ...]) -> np.ndarray:
        """A checkpoint parameter, checked against the shape config.json implies."""
        array = self.weights[ours]
        if tuple(array.shape) != shape:
            raise CheckpointError(
                f"tensor {self.sources.get(ours, ours)} has shape {tuple(array.shape)}, config.json implies {shape}"
            )
        return array

    def weight(self, ours: str, shape: tuple[int, ...], transpose: bool = False) -> str:
        """A checkpoint parameter as an initializer (`checked`)."""
        from onnx import numpy_helper

        array = self.checked(ours, shape)
        array = np.ascontiguousarray(array.T if transpose else array, dtype=np.float32)
        name = f"{ours}.T" if transpose else ours
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def linear(self, x: str, ours: str, inputs: int, outputs: int) -> str:
        """x @ Wᵀ + b as the exporter writes a Linear on 3-d input: MatMul with the transposed weight, then Add."""
        product = self.op("MatMul", x, self.weight(f"{ours}.weight", (outputs, inputs), transpose=True), name=ours)
        return self.op("Add", self.weight(f"{ours}.bias", (outputs,)), product, name=ours)

    def linear_side_by_side(self, x: str, ours: Sequence[str], inputs: int, outputs: int) -> str:
        """Several Linear layers reading the same x as one MatMul and one Add: weights' transposes side by side
        (link.py finds them in the checkpoint), biases joined. (..., len(ours) · outputs)."""
        from onnx import numpy_helper

        joined = "|".join(ours)
        parts = [self.checked(f"{name}.weight", (outputs, inputs)).T for name in ours]
        weight = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
        bias = np.concatenate([self.checked(f"{name}.bias", (outputs,)) for name in ours]).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(weight, f"{joined}.weight.T"))
        self.initializers.append(numpy_helper.from_array(bias, f"{joined}.bias"))
        return self.op("Add", f"{joined}.bias", self.op("MatMul", x, f"{joined}.weight.T", name=joined), name=joined)

    def layer_norm(self, x: str, ours: str, size: int, eps: float) -> str:
        weight, bias = self.weight(f"{ours}.weight", (size,)), self.weight(f"{ours}.bias", (size,))
        return self.op("LayerNormalization", x, weight, bias, axis=-1, epsilon=eps, name=ours)


def build_graph(
    config: EncoderConfig, weights: Mapping[str, np.ndarray], sources: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """The classifier's ONNX graph: inputs input_ids, attention_mask (and token_type_ids when the model has
    token types), all (batch, sequence) int64; output logits (batch, num_labels) float32.

    `weights`: our parameter name -> array, every parameter of models/encoder.py's SequenceClassifier;
    `sources`: our name -> the checkpoint's tensor name, for error messages.
    """
    from onnx import TensorProto, helper

    graph = _Graph(weights, sources or {})
    hidden = config.hidden_size
    token_types = config.type_vocab_size > 0
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]

    x = _embeddings(graph, config)  # (batch, seq, hidden)
    # (batch, 1, 1, seq): 0 where a key may be attended to, float32 min for padding.
    mask = graph.op("Unsqueeze", "attention_mask", graph.const([1], np.int64))
    mask = graph.op("Unsqueeze", mask, graph.const([2], np.int64))
    mask = graph.op("Cast", mask, to=TensorProto.FLOAT)
    mask = graph.op("Sub", graph.const(1.0), mask)
    mask = graph.op("Mul", mask, graph.const(np.finfo(np.float32).min))
    for i in range(config.num_layers):  # the last for the first token alone (models/encoder.py: first_only)
        x = _layer(graph, config, x, mask, f"encoder.layers.{i}", first_only=i == config.num_layers - 1)

    first = graph.op("Gather", x, graph.const(0, np.int64), axis=1)  # (batch, hidden): the first token
    dense = graph.op("Gemm", first, graph.weight("head.dense.weight", (hidden, hidden)),
                     graph.weight("head.dense.bias", (hidden,)), transB=1, name="head.dense")  # fmt: skip
    pooled = _activate(graph, dense, config.head_activation)
    labels = config.num_labels
    graph.nodes.append(
        helper.make_node("Gemm", [pooled, graph.weight("head.out.weight", (labels, hidden)),
                                  graph.weight("head.out.bias", (labels,))], ["logits"], name="head.out", transB=1)
    )  # fmt: skip
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])
    model = helper.make_model(
        helper.make_graph(graph.nodes, "textclass", inputs, [output], graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)],
        # No producer_name: ORT's optimizer warns when it is not "pytorch" for model_type "bert".
        doc_string="built by textclass.onnx.graph",
    )
    model.ir_version = IR_VERSION
    return model


def _embeddings(graph: _Graph, config: EncoderConfig) -> str:
    hidden = config.hidden_size
    word = graph.op("Gather", graph.weight("encoder.embeddings.word.weight", (config.vocab_size, hidden)), "input_ids")
    if config.position_offset is None:
        # Positions 0..seq-1 for every row: Range over the sequence length, expanded to (batch, seq).
        shape = graph.op("Shape", "input_ids")
        length = graph.op("Gather", shape, graph.const(1, np.int64), axis=0)
        positions = graph.op("Range", graph.const(0, np.int64), length, graph.const(1, np.int64))
        positions = graph.op("Expand", positions, shape)
    else:
        # RoBERTa numbers real tokens from pad_token_id + 1 and gives padding the pad position.
        pad = config.pad_token_id
        not_pad = graph.op("Not", graph.op("Equal", "input_ids", graph.const(pad, np.int64)))
        not_pad = graph.op("Cast", not_pad, to=6)  # int32, as the exporter writes it
        counted = graph.op("CumSum", not_pad, graph.const(1, np.int64))
        positions = graph.op("Add", graph.op("Mul", counted, not_pad), graph.const(pad, np.int32))
    table = graph.weight("encoder.embeddings.position.weight", (config.max_position_embeddings, hidden))
    x = graph.op("Add", word, graph.op("Gather", table, positions))
    if config.type_vocab_size > 0:
        types = graph.weight("encoder.embeddings.token_type.weight", (config.type_vocab_size, hidden))
        x = graph.op("Add", x, graph.op("Gather", types, "token_type_ids"))
    return graph.layer_norm(x, "encoder.embeddings.norm", hidden, config.layer_norm_eps)


def _layer(graph: _Graph, config: EncoderConfig, x: str, mask: str, prefix: str, first_only: bool = False) -> str:
    hidden = config.hidden_size
    if first_only:
        residual = graph.op("Slice", x, *(graph.const([v], np.int64) for v in (0, 1, 1)))  # (batch, 1, hidden)
        y = _first_row_attention(graph, config, x, mask, residual, prefix)
    else:
        residual, y = x, _attention(graph, config, x, mask, prefix)
    # Post-LN, as in the original BERT: residual first, then normalise.
    x = graph.layer_norm(graph.op("Add", residual, y), f"{prefix}.attention_norm", hidden, config.layer_norm_eps)
    h = _activate(graph, graph.linear(x, f"{prefix}.ffn_in", hidden, config.intermediate_size), config.activation)
    h = graph.linear(h, f"{prefix}.ffn_out", config.intermediate_size, hidden)
    return graph.layer_norm(graph.op("Add", x, h), f"{prefix}.ffn_norm", hidden, config.layer_norm_eps)


def _first_row_attention(graph: _Graph, config: EncoderConfig, x: str, mask: str, first: str, prefix: str) -> str:
    """The attention output of the first token alone, (batch, 1, hidden): its query against every key.

    Keys and values are one product over every token (quantize.py then quantizes x once for both), the query one
    over the first row; attention itself stays plain operators, which the optimizer leaves alone (its pattern is
    self-attention only) and which cost little for one query. Not MultiHeadAttention: with a query shorter than
    its keys, ONNX Runtime before 1.21 masks the wrong keys of padded rows (measured: 1.17-1.20 wrong, 1.21 right;
    our floor is 1.18).
    """
    hidden = config.hidden_size
    q = graph.linear(first, f"{prefix}.attention.query", hidden, hidden)
    kv = graph.linear_side_by_side(x, [f"{prefix}.attention.key", f"{prefix}.attention.value"], hidden, hidden)
    k, v = f"{kv}/k", f"{kv}/v"
    graph.nodes.append(graph.helper.make_node("Split", [kv, graph.const([hidden, hidden], np.int64)], [k, v],
                                              axis=-1, name=f"{kv}/split"))  # fmt: skip
    return graph.linear(_attend(graph, config, q, k, v, mask), f"{prefix}.attention.out", hidden, hidden)


def _attention(graph: _Graph, config: EncoderConfig, x: str, mask: str, prefix: str) -> str:
    """Self-attention of every token, as the exporter writes it (the optimizer fuses it into one Attention)."""
    hidden = config.hidden_size
    q, k, v = (graph.linear(x, f"{prefix}.attention.{name}", hidden, hidden) for name in ("query", "key", "value"))
    return graph.linear(_attend(graph, config, q, k, v, mask), f"{prefix}.attention.out", hidden, hidden)


def _attend(graph: _Graph, config: EncoderConfig, q: str, k: str, v: str, mask: str) -> str:
    """softmax(q kᵀ / √head_dim + mask) v by heads, (batch, queries, hidden) from projected (batch, rows, hidden)
    queries, keys and values: heads split by Reshape + Transpose (kᵀ directly), as the exporter writes it."""
    hidden, heads = config.hidden_size, config.num_heads
    head_dim = hidden // heads
    split = graph.const([0, 0, heads, head_dim], np.int64)  # (batch, rows, hidden) -> (batch, rows, heads, head_dim)
    q, k, v = (graph.op("Transpose", graph.op("Reshape", t, split), perm=perm)
               for t, perm in ((q, [0, 2, 1, 3]), (k, [0, 2, 3, 1]), (v, [0, 2, 1, 3])))  # fmt: skip
    scores = graph.op("Div", graph.op("MatMul", q, k), graph.const(math.sqrt(head_dim)))  # (batch, heads, q, seq)
    probs = graph.op("Softmax", graph.op("Add", scores, mask), axis=-1)
    y = graph.op("Transpose", graph.op("MatMul", probs, v), perm=[0, 2, 1, 3])  # (batch, queries, heads, head_dim)
    return graph.op("Reshape", y, graph.const([0, 0, hidden], np.int64))


def _activate(graph: _Graph, x: str, name: str) -> str:
    """The activation as torch.onnx writes it at opset 17 (the patterns the optimizer fuses into BiasGelu etc.)."""
    if name == "gelu":  # x * (1 + erf(x / sqrt(2))) * 0.5
        erf = graph.op("Erf", graph.op("Div", x, graph.const(math.sqrt(2.0))))
        return graph.op("Mul", graph.op("Mul", x, graph.op("Add", erf, graph.const(1.0))), graph.const(0.5))
    if name == "gelu_tanh":  # 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
        cube = graph.op("Mul", x, graph.op("Mul", x, x))
        inner = graph.op("Add", x, graph.op("Mul", graph.const(0.044715), cube))
        tanh = graph.op("Tanh", graph.op("Mul", graph.const(math.sqrt(2.0 / math.pi)), inner))
        return graph.op("Mul", graph.const(0.5), graph.op("Mul", x, graph.op("Add", graph.const(1.0), tanh)))
    if name == "relu":
        return graph.op("Relu", x)
    if name == "silu":
        return graph.op("Mul", x, graph.op("Sigmoid", x))
    if name == "tanh":
        return graph.op("Tanh", x)
    raise ValueError(f"unknown activation {name!r}")
