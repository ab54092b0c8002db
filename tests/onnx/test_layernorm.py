"""SkipLayerNormalization split back into Add + LayerNormalization (onnx/layernorm.py): the same outputs, and no
session of ours fuses it again."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from textclass.onnx.layernorm import keep_split, split_skip_layer_norm
from textclass.runtime.onnx_engine import OnnxEngine

HIDDEN = 16
RNG = np.random.default_rng(0)


def skip_norm_model(bias: bool, beta: bool, sum_output: bool, opset: int = 17) -> onnx.ModelProto:
    """x, skip (batch, seq, HIDDEN) -> SkipLayerNormalization -> y (and its input+skip+bias sum, where asked)."""
    constants = {"gamma": RNG.normal(1, 0.3, HIDDEN), "beta": RNG.normal(0, 0.3, HIDDEN),
                 "bias": RNG.normal(0, 0.5, HIDDEN)}  # fmt: skip
    inputs = ["x", "skip", "gamma", "beta" if beta else "", "bias" if bias else ""]
    while not inputs[-1]:
        inputs.pop()
    outputs = ["y", "", "", "total"] if sum_output else ["y"]
    node = helper.make_node("SkipLayerNormalization", inputs, outputs, domain="com.microsoft", epsilon=1e-5, name="sln")
    tensor = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "seq", HIDDEN])  # noqa: E731
    graph = helper.make_graph(
        [node],
        "g",
        [tensor("x"), tensor("skip")],
        [tensor(name) for name in outputs if name],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in constants.items() if k in inputs],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, feeds: dict, split: bool) -> list[np.ndarray]:
    options = keep_split(ort.SessionOptions()) if split else ort.SessionOptions()
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("bias, beta, sum_output", [(True, True, False), (False, True, False), (True, False, True)])
def test_split_gives_the_fused_outputs(bias, beta, sum_output):
    model = skip_norm_model(bias, beta, sum_output)
    feeds = {name: RNG.normal(0, 2, (3, 5, HIDDEN)).astype(np.float32) for name in ("x", "skip")}
    fused = run(model, feeds, split=False)
    assert split_skip_layer_norm(model) == 1
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops == {"Add": 1 + bias, "LayerNormalization": 1}
    split = run(model, feeds, split=True)
    for ours, theirs in zip(split, fused):
        np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=0)


def test_nothing_split_below_opset_17():
    model = skip_norm_model(True, True, False, opset=16)
    assert split_skip_layer_norm(model) == 0
    assert [node.op_type for node in model.graph.node] == ["SkipLayerNormalization"]


def test_engine_sessions_do_not_fuse_it_again(tmp_path):
    """ONNX Runtime's own SkipLayerNormFusion would undo the split at the extended level the engine opens with."""
    model = skip_norm_model(True, True, False)
    split_skip_layer_norm(model)
    path = tmp_path / "split.onnx"
    onnx.save(model, str(path))
    options = OnnxEngine(path, "fp32", threads=1).options(1)
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 1
    # Without keep_split the same session fuses it back: the option is what keeps it split.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "refused.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert (
        Counter(node.op_type for node in onnx.load(str(tmp_path / "refused.onnx")).graph.node)["SkipLayerNormalization"]
        == 1
    )
