"""Residual + LayerNorm as ONNX's own Add and LayerNormalization, not ONNX Runtime's fused SkipLayerNormalization.

ORT's transformer optimizer (export.py) fuses each post-LN residual block into one SkipLayerNormalization node,
and its session-level SkipLayerNormFusion would do the same to a graph that still had Add + LayerNormalization.
On CPU that fused kernel is the slow one: measured with ONNX Runtime 1.32 (Intel Xeon with AMX, one thread, 768
wide), 3.5 µs a row against 0.6-0.9 µs for Add, Add and LayerNormalization (MLAS's vectorised LayerNorm), at 32,
256 and 1,024 rows alike; two threads 1.8 µs against 0.4-0.9. In the DistilBERT shape that was 14% of a ~32-token
text's operator time and 20% of an int8 batch's, where the AMX int8 products take 31-40%.

So the fused graph gets its residual blocks split back (`split_skip_layer_norm`), and every session that runs or
saves such a graph is opened with `keep_split` (no re-fusion). Same arithmetic: x + bias + skip, normalised over
the last axis with the node's epsilon, gamma and beta (fp32 rounding order aside: logits within 1e-6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

# ONNX Runtime's own graph transformer that would fuse the split blocks again when a session opens.
REFUSING_OPTIMIZERS = "SkipLayerNormFusion"


def keep_split(options: Any) -> Any:
    """`options` (an onnxruntime.SessionOptions) with the re-fusing optimizer turned off; returns them."""
    options.add_session_config_entry("optimization.disable_specified_optimizers", REFUSING_OPTIMIZERS)
    return options


def split_skip_layer_norm(model: onnx.ModelProto) -> int:
    """Replace each SkipLayerNormalization(input, skip, gamma[, beta[, bias]]) of `model` in place by
    Add(input, bias) → Add(·, skip) → LayerNormalization(·, gamma, beta); returns how many were split.

    The bias goes first, onto `input` (the layer's product in the fused BERT graph): quantize.py folds its own
    constants into that Add. A node whose mean or inverse-deviation outputs are used is left as it is; its
    optional fourth output (the sum before normalising) becomes the last Add's output."""
    from onnx import helper

    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0) < 17:
        return 0  # LayerNormalization is an ONNX operator from opset 17
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    nodes = []
    split = 0
    for node in graph.node:
        outputs = list(node.output) + [""] * (4 - len(node.output))
        if node.op_type != "SkipLayerNormalization" or used & set(filter(None, outputs[1:3])):
            nodes.append(node)
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))
        x, skip, gamma, beta, bias = inputs[:5]
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        base = node.name or outputs[0]
        if bias:
            nodes.append(helper.make_node("Add", [x, bias], [f"{base}/biased"], name=f"{base}/bias"))
            x = f"{base}/biased"
        summed = outputs[3] or f"{base}/sum"
        nodes.append(helper.make_node("Add", [x, skip], [summed], name=f"{base}/residual"))
        nodes.append(helper.make_node("LayerNormalization", [summed, gamma] + ([beta] if beta else []), [outputs[0]],
                                      name=f"{base}/norm", axis=-1, epsilon=epsilon))  # fmt: skip
        split += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return split
