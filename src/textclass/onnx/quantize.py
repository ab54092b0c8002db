"""Int8 whose answer for a text does not depend on its batch: per-row activation scales, per-channel weights.

ONNX Runtime's dynamic quantization (`quantize_dynamic`) picks one activation scale per tensor, i.e. per batch,
so a text's scores move with its neighbours (docs/performance.md measures how far). Here every MatMul
with a constant weight in the fp32 graph (export.py) becomes

    x'    = x / s                                            # s: (in,) per-channel smoothing, fixed at export
    peak  = max|x'| over the row                             # (batch, seq, 1): one scale per token, from it alone
    q     = uint8(round(x' / peak · 127) + 128)              # (batch, seq, in)
    y     = MatMulIntegerToFloat(q, Wq, peak, w_scale / 127)  # (batch, seq, out) fp32; Wq = int8(s·W) per column

Integer sums are exact, so a text scores bit for bit the same alone or in any batch. Fused Attention's QKV
projection is taken out the same way (one product, split into Q, K and V after); attention itself, LayerNorm,
GELU, softmax and the classification head stay fp32 (the head sees one row per text: it costs nothing, and its
error would land straight on the logits). Embeddings stay fp32 (a lookup). The input is the fused fp32 graph as
export.py builds it, weights inside (never a graph linked to a checkpoint's files: onnx/link.py is for shipping).

What decided this (bundled model against exact fp32 on SST-2 dev halves; the figures are in docs/performance.md,
"The CPU default and its accuracy contract"):
- uint8 activations × int8 weights is MLAS's fast pairing on x86 (int8 × int8 ran several times slower). Without
  VNNI its kernel adds pairs of u8·s8 products in int16 (vpmaddubsw), which saturates with 8-bit activations and
  8-bit weights (on a GEMM with outlier channels). So on VNNI/AMX CPUs 8-bit weights (the u8·s8 kernel sums in
  int32), and on AVX2 7-bit weights (2·255·63 ≤ 32767: no overflow), 1.2x faster there than 8-bit weights stored
  as uint8 around 128 for MLAS's u8·u8 kernel (the AVX2 format until 2026-12-06). 7-bit weights alone miss the
  contract on texts with many near ties; with near ties scored again in fp32 (runtime/rescore.py), as the
  default runs them, they keep it (docs/performance.md, "The AVX2 path on an AVX-512 machine"). cpu.int8_plan
  picks.
- A few residual channels are an order of magnitude larger than the others, and a row's scale follows its
  largest value: the other channels kept 3-4 bits. Dividing each input channel by s = sqrt(its typical max / its
  weights' max) and multiplying the weights' row by s (SmoothQuant, α = 0.5) evens them out. The typical max is
  measured at export on calibration.py's sentences (which beat random token ids and held-out SST-2 phrases).
- A GELU's output is ≥ -0.17: shifted by +0.171 it is quantized unsigned over [0, max], which doubles the
  resolution of a symmetric range; the shift comes off again as a constant bias, -0.171·Σₖ W[k, n].
- The row scale is MatMulIntegerToFloat's A scale (it broadcasts (batch, seq, 1)): no extra pass over the
  output. That op then scales its bias input by the row scale too, so biases go to the consumer or an Add.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

# One calibration batch as ONNX Runtime feeds: input_ids, attention_mask (and token_type_ids), (batch, seq) int64.
Feeds = Mapping[str, np.ndarray]

VERSION = 7  # bump when the rewrite or its entry changes: cached int8 artefacts of an older one are rebuilt
# (4: the entry notes the calibration sentences' fp32 logits, which the per-model choice of runtime/load.py reads;
# 5: a row's peak is the product's row scale, 1/levels in the weights' scales: 5 operators a row, not 7;
# 6: fused attention's Q, K and V are one product, split after; 7: the AVX2 plan is a8w7)


@dataclass(frozen=True)
class Format:
    """Bits of a layer's activations (per row) and weights (per output column), and how weights are stored."""

    activation_bits: int
    weight_levels: int  # weights are round(w / scale) in ±weight_levels, stored + weight_zero
    weight_zero: int = 0
    weight_dtype: type = np.int8

    def overflows_without_vnni(self) -> bool:
        """Whether AVX2's u8·s8 kernel can saturate its int16 pair sums on this format (u8·u8 cannot)."""
        largest_activation = 2**self.activation_bits - 1  # uint8 values, zero point included
        return self.weight_dtype == np.int8 and 2 * largest_activation * self.weight_levels > 32767


FORMATS = {
    "a8w8": Format(8, 127),  # u8·s8: where it sums in int32 (VNNI, AMX)
    "a8w7": Format(8, 63),  # u8·s8 without overflow: AVX2 (within the contract with near ties rescored)
    "a8w8u": Format(8, 127, 128, np.uint8),  # u8·u8: no overflow, 1.2x slower on AVX2 (bench only)
    "a7w8": Format(7, 127),  # u8·s8 without overflow, 7-bit activations (bench only)
}
PLANS = {"vnni": "a8w8", "avx2": "a8w7"}  # cpu.int8_plan: which instruction set, which format
SMOOTHING = 0.5  # SmoothQuant's α: how much of a channel's range moves from the activation into the weights
GELU_SHIFT = 0.171  # > the largest negative value of erf- and tanh-GELU (0.16997, 0.17004)
_GELU_OPS = ("BiasGelu", "Gelu", "FastGelu")
_MS = "com.microsoft"


@dataclass(frozen=True)
class Calibrated:
    """What the fp32 graph showed on the calibration feeds."""

    ranges: dict[str, np.ndarray]  # weight name -> (in,) largest |x| per input channel of that layer's input
    logits: np.ndarray  # (texts, num_labels) fp32 logits of the calibration texts (runtime/ judges near ties on them)


def int8_model(fused: onnx.ModelProto, plan: str, calibration: Iterable[Feeds] = ()) -> tuple[onnx.ModelProto,
                                                                                               np.ndarray]:  # fmt: skip
    """The per-row int8 form of a fused fp32 graph (export.py's, its weights inside it), as a new model, and the
    fp32 logits of the calibration texts (calibrate).

    `plan`: this CPU's int8 kernels (PLANS; runtime/cpu.py decides and passes it in). `calibration`: input feeds
    to measure each channel's range on (runtime/ tokenizes calibration.py's sentences); none, no smoothing."""
    model = type(fused)()
    model.CopyFrom(fused)
    measured = calibrate(model, calibration)
    quantize_rows(model, plan, activation_max=measured.ranges)
    return model, measured.logits


def calibrate(model: onnx.ModelProto, calibration: Iterable[Feeds]) -> Calibrated:
    """Run the fp32 graph on the feeds (ONNX Runtime) and keep each layer input's largest |x| per channel over the
    real tokens, and the logits. Empty without feeds."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    calibration = list(calibration)
    if not calibration:
        return Calibrated({}, np.zeros((0, 0), np.float32))
    weights = {init.name for init in model.graph.initializer}
    inputs = {node.input[1]: node.input[0] for node in model.graph.node
              if node.op_type in ("MatMul", "Attention") and len(node.input) > 1 and node.input[1] in weights}
    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(x, TensorProto.FLOAT, None) for x in set(inputs.values()))
    from textclass.onnx.layernorm import keep_split

    # The graph as exported, residual blocks split (ORT's default level would fuse them back for this run only).
    session = ort.InferenceSession(probe.SerializeToString(), keep_split(ort.SessionOptions()),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    names = [output.name for output in session.get_outputs()]
    wanted = {item.name for item in session.get_inputs()}
    largest: dict[str, np.ndarray] = {}
    logits = []
    for feeds in calibration:
        feeds = {"token_type_ids": np.zeros_like(feeds["input_ids"]), **feeds}  # a graph with token types, none given
        values = dict(zip(names, session.run(None, {k: v for k, v in feeds.items() if k in wanted})))
        real = feeds["attention_mask"].astype(bool)  # (batch, seq): padding positions say nothing
        logits.append(values["logits"])
        for name, tensor in values.items():
            if tensor.ndim != 3 or tensor.shape[0] != real.shape[0] or tensor.shape[1] not in (real.shape[1], 1):
                continue
            # Every token's row, or (a last layer's first_only rows, graph.py) the first token's.
            seen = np.abs(tensor[real[:, : tensor.shape[1]]]).max(axis=0)
            largest[name] = np.maximum(largest.get(name, seen), seen)
    ranges = {weight: largest[source] for weight, source in inputs.items() if source in largest}
    return Calibrated(ranges, np.concatenate(logits).astype(np.float32))


@dataclass
class _Rewrite:
    """The graph under rewrite: the new node list, initializers to add, and a name counter."""

    nodes: list
    initializers: list
    count: int = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}/rowq{self.count}"

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, output: str | None = None, **attrs: object) -> str:
        from onnx import helper

        output = output or self.name(base)
        domain = _MS if op_type in ("MatMulIntegerToFloat", "MultiHeadAttention") else ""
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.name(base), domain=domain, **attrs))
        return output


def quantize_weight(weight: np.ndarray, form: Format) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) fp32 -> the stored integers (in, out) and the per-output-column scale (out,):
    weight ≈ (stored - form.weight_zero) · scale."""
    scale = np.abs(weight).max(axis=0) / form.weight_levels
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return (np.round(weight / scale) + form.weight_zero).astype(form.weight_dtype), scale


@dataclass(frozen=True)
class _Rows:
    """An activation quantized per row: uint8 values, the row's (batch, seq, 1) largest magnitude `peak`, the levels
    it maps to (the row's scale is peak / levels), the zero point, the shift."""

    values: str
    peak: str
    levels: int
    zero: int
    shift: float


def _quantize_rows(rw: _Rewrite, x: str, bits: int, base: str, after_gelu: bool, smooth: np.ndarray | None) -> _Rows:
    """x (batch, seq, width) float -> uint8 with one scale per row, computed from that row alone (after dividing
    the channels by `smooth`, constants of the layer)."""
    if after_gelu:  # x + GELU_SHIFT ≥ 0: unsigned over [0, max], zero point 0
        x = rw.op("Add", [x, rw.const(base, np.float32(GELU_SHIFT))], base)
    if smooth is not None:
        x = rw.op("Mul", [x, rw.const(base, (1 / smooth).astype(np.float32))], base)
    if after_gelu:
        shift, levels, zero = GELU_SHIFT, 2**bits - 1, 0
        peak = rw.op("ReduceMax", [x], base, axes=[-1], keepdims=1)
    else:
        shift, levels, zero = 0.0, 2 ** (bits - 1) - 1, 2 ** (bits - 1)
        peak = rw.op("ReduceMax", [rw.op("Abs", [x], base)], base, axes=[-1], keepdims=1)
    # x / peak by row (in [-1, 1]), then QuantizeLinear with scale 1/levels rounds (half to even), adds the zero
    # point and saturates to uint8 in one pass. The product takes `peak` as its row scale and 1/levels goes into
    # the weights' scales (_integer_matmul). A row of zeros gives 0/0 here, and whatever integers QuantizeLinear
    # makes of that, the product scales them by its peak, 0: an exact zero row, with no guard node. Few operators
    # on purpose: a short pass costs ~3.6 µs of dispatch an operator (265 operators, 0.95 ms, bundled model).
    values = rw.op("QuantizeLinear", [rw.op("Div", [x, peak], base), rw.const(base, np.float32(1 / levels)),
                                      rw.const(base, np.uint8(zero))], base)  # fmt: skip
    return _Rows(values, peak, levels, zero, shift)


def _integer_matmul(
    rw: _Rewrite, rows: _Rows, weight: np.ndarray, form: Format, base: str, output: str, smooth: np.ndarray | None
) -> np.ndarray:
    """Emit `output` = x @ weight from x's quantized rows (smoothed: the weight's rows times `smooth`); returns the
    constant (out,) still to add to `output`: the shift's correction, (x + c)·Ŵ = x·Ŵ + c·Σₖ Ŵ[k, :]."""
    if smooth is not None:
        weight = weight * smooth[:, None]
    stored, w_scale = quantize_weight(weight, form)
    # Row scale × column scale = (peak / levels) × w_scale: the product gets peak and w_scale / levels.
    column_scale = (w_scale / rows.levels).astype(np.float32)
    inputs = [rows.values, rw.const(base, stored), rows.peak, rw.const(base, column_scale),
              rw.const(base, np.uint8(rows.zero))]  # fmt: skip
    if form.weight_zero:
        inputs.append(rw.const(base, np.asarray(form.weight_zero, stored.dtype)))
    rw.op("MatMulIntegerToFloat", inputs, base, output=output)
    dequantized = (stored.astype(np.float32) - form.weight_zero) * w_scale  # what the kernel multiplies by
    if smooth is not None:
        dequantized = dequantized / smooth[:, None]
    return (-rows.shift * dequantized.sum(axis=0)).astype(np.float32)


def quantize_rows(
    model: onnx.ModelProto,
    plan: str = "avx2",
    activation_max: Mapping[str, np.ndarray] | None = None,
    per_layer: Mapping[str, str] | None = None,
) -> None:
    """Rewrite, in place, the fp32 model's constant-weight MatMuls (and fused Attention's QKV projection) to
    per-row int8 in the format of `plan` (PLANS). `activation_max`: weight name -> (in,) typical largest |x| of
    each input channel (channel_ranges), for smoothing; a layer without one is not smoothed. `per_layer`: weight
    name -> another FORMATS key, or "fp32" to leave it alone (bench/quantize_layers.py measures layers so)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    activation_max, per_layer = activation_max or {}, per_layer or {}
    rw = _Rewrite(nodes=[], initializers=[])

    for node in graph.node:
        name = node.input[1] if node.op_type in ("MatMul", "Attention") and len(node.input) > 1 else ""
        weight = numpy_helper.to_array(weights[name]) if name in weights and per_layer.get(name) != "fp32" else None
        if weight is None or weight.ndim != 2:
            rw.nodes.append(node)
            continue
        source = producer.get(node.input[0])
        after_gelu = source is not None and source.op_type in _GELU_OPS
        form = FORMATS[per_layer.get(name, PLANS[plan])]
        smooth = None
        if name in activation_max:  # SmoothQuant: s = sqrt(activation max / weight max) per input channel
            weight_max = np.maximum(np.abs(weight).max(axis=1), 1e-8)
            ratio = np.maximum(activation_max[name], 1e-8) ** SMOOTHING / weight_max ** (1 - SMOOTHING)
            smooth = np.clip(ratio, 1e-2, 1e2).astype(np.float32)  # a dead channel must not blow up its weights
        rows = _quantize_rows(rw, node.input[0], form.activation_bits, name, after_gelu, smooth)
        if node.op_type == "MatMul":
            correction = _integer_matmul(rw, rows, weight, form, name, node.output[0], smooth)
            if rows.shift:
                _add_constant(rw, node.output[0], correction, consumers.get(node.output[0], []), weights, name)
            continue
        # Attention(x, qkv_weight, qkv_bias, mask_index): Q, K and V as one product of the quantized rows, split in
        # three for MultiHeadAttention, then attention in fp32. One (rows × 3·hidden) product ran a ~32-token
        # text ~3% faster than three (rows × hidden) ones on Zen 4 (median of eight interleaved runs, 0.93-1.01;
        # the narrow ones run further from the kernel's peak), bit for bit the same (per-column weight scales).
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        unsupported = set(attrs) - {"num_heads", "mask_filter_value", "scale"}
        if unsupported or len(node.input) != 4 or weight.shape[1] % 3:
            raise ValueError(f"cannot split Attention node {node.name!r} (attributes {sorted(attrs)})")
        packed = rw.name(name)
        correction = _integer_matmul(rw, rows, weight, form, name, packed, smooth)
        if rows.shift:  # never after a GELU in the graphs we build; kept correct regardless
            packed = rw.op("Add", [packed, rw.const(name, correction)], name)
        parts = [rw.name(name) for _ in range(3)]  # query, key, value: (batch, seq, hidden) each
        widths = rw.const(name, np.full(3, weight.shape[1] // 3, np.int64))
        rw.nodes.append(helper.make_node("Split", [packed, widths], parts, axis=-1, name=rw.name(name)))
        rw.op("MultiHeadAttention", [*parts, node.input[2], node.input[3]], name, output=node.output[0], **attrs)

    # Drop what nothing reads any more: replaced fp32 weights, biases a correction was folded into.
    used = {name for node in rw.nodes for name in node.input} | {output.name for output in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(rw.nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + rw.initializers)
    if not any(op.domain == _MS for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS, 1))


def _add_constant(rw: _Rewrite, output: str, value: np.ndarray, consumers: list, weights: dict, base: str) -> None:
    """Add `value` (out,) to `output`: folded into its only consumer when that adds a constant (the layer's bias,
    layernorm.py puts it before the residual), else as an Add node of its own."""
    from onnx import numpy_helper

    if len(consumers) == 1:
        consumer = consumers[0]
        slot = 1 - list(consumer.input).index(output) if consumer.op_type == "Add" else None
        if slot is not None and consumer.input[slot] in weights:
            bias = numpy_helper.to_array(weights[consumer.input[slot]]).astype(np.float32)
            if bias.shape == value.shape:
                consumer.input[slot] = rw.const(base, bias + value)
                return
    product = rw.name(base)  # no bias to fold into: the product gets a new name, the sum takes the old one
    rw.nodes[-1].output[0] = product
    rw.op("Add", [product, rw.const(base, value)], base, output=output)
