"""The ONNX graph built without torch (onnx_graph.py) is the traced export: same fused operators, same outputs,
but for its last layer, which the builder writes for the first token alone (its one-query attention stays plain
operators: the fusion knows only self-attention, so the traced export keeps the full last layer).

Speed side by side: bench/onnx_build.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import CORPUS, FAMILIES
from textclass import Classifier
from textclass.checkpoint import open_checkpoint
from textclass.errors import CheckpointError
from textclass.extras import MissingExtra
from textclass.onnx.export import export_onnx
from textclass.runtime.batching import make_batches
from textclass.runtime.cpu import int8_plan
from textclass.runtime.load import calibration_feeds
from textclass.runtime.onnx_engine import OnnxEngine

TEXTS = CORPUS + ["", "ok", "word " * 300, ("a premise about cats", "a hypothesis about dogs")]
FUSED_OPS = ("Attention", "MultiHeadAttention", "Softmax", "SkipLayerNormalization", "LayerNormalization",
             "EmbedLayerNormalization", "BiasGelu", "FastGelu")  # fmt: skip


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))


def exports(folder: Path, out: Path, mode: str = "fp32") -> dict[str, Path]:
    """The checkpoint exported both ways, fused, weights in a side file (int8: this CPU's plan, calibrated)."""
    checkpoint = open_checkpoint(folder)
    paths = {"built": out / f"built.{mode}.onnx", "traced": out / f"traced.{mode}.onnx"}
    plan = int8_plan() if mode == "int8" else None
    for kind, path in paths.items():
        export_onnx(checkpoint, path, mode, plan, calibration_feeds(checkpoint), traced=kind == "traced")
    return paths


def run(path: Path, folder: Path, mode: str = "fp32") -> np.ndarray:
    """Logits of TEXTS through the graph at `path`, in small padded batches (several lengths, padding inside)."""
    checkpoint = open_checkpoint(folder)
    tokenizer, engine = checkpoint.load_tokenizer(), OnnxEngine(path, mode)
    out = np.empty((len(TEXTS), checkpoint.config.num_labels), np.float32)
    for batch in make_batches(tokenizer.encode_batch(TEXTS), 256, tokenizer.pad_token_id, engine.uses_token_types):
        out[batch.indices] = engine(batch)
    return out


def fused_ops(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node if node.op_type in FUSED_OPS)


def first_row_last_layer(traced: Counter) -> Counter:
    """The traced graph's fused operators with its last Attention written as graph.py writes it (unfused)."""
    return traced - Counter(Attention=1) + Counter(Softmax=1)


def query_slices(path: Path) -> list[list[int]]:
    """For each attention left unfused (a Softmax), the (starts, ends, axes) of the Slice its query is computed
    from: the scores' MatMul, then the query's producers followed back to the first Slice."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    constants = {init.name: numpy_helper.to_array(init).tolist() for init in model.graph.initializer}
    found = []
    for node in (n for n in model.graph.node if n.op_type == "Softmax"):
        current = producer[node.input[0]]
        while current.op_type != "MatMul":  # Add (mask), Div (scale): back to q kᵀ
            current = producer[current.input[0]]
        current = producer[current.input[0]]  # the query
        while current.op_type != "Slice":  # heads' Transpose and Reshape, the bias Add, the product
            current = producer[next(name for name in current.input if name in producer)]
        found.append([constants[name] for name in current.input[1:4]])
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_built_graph_is_the_traced_graph(tiny_checkpoints, family, tmp_path):
    folder = tiny_checkpoints[family][0]
    assert open_checkpoint(folder).family.onnx_builder  # else both exports would be traced
    paths = exports(folder, tmp_path)
    layers = open_checkpoint(folder).config.num_layers
    built, traced = fused_ops(paths["built"]), fused_ops(paths["traced"])
    assert built == first_row_last_layer(traced)
    assert built["Attention"] == layers - 1 and built["Softmax"] == 1 and built["MultiHeadAttention"] == 0
    assert query_slices(paths["built"]) == [[[0], [1], [1]]]  # the query of the first token only
    assert built["LayerNormalization"] == 2 * layers  # split back: layernorm.py
    assert built["SkipLayerNormalization"] == 0
    assert built["EmbedLayerNormalization"] == 1 and built["BiasGelu"] == layers
    np.testing.assert_allclose(run(paths["built"], folder), run(paths["traced"], folder), atol=1e-5, rtol=0)


def test_built_graph_matches_on_real_minilm(minilm_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "minilm-head"
    torch.manual_seed(0)  # the new classification head
    AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=3).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, folder / name)
    paths = exports(folder, tmp_path)
    assert fused_ops(paths["built"]) == first_row_last_layer(fused_ops(paths["traced"]))
    assert fused_ops(paths["built"])["Attention"] == 5
    np.testing.assert_allclose(run(paths["built"], folder), run(paths["traced"], folder), atol=1e-5, rtol=0)


def test_int8_from_the_built_graph(tiny_checkpoints, tmp_path):
    folder = tiny_checkpoints["bert"][0]
    paths = exports(folder, tmp_path, mode="int8")
    model = onnx.load(str(paths["built"]))
    # 8-bit weights: int8, or uint8 around 128 on a CPU without VNNI (quantize.py)
    assert any(init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(init.dims) == 2
               for init in model.graph.initializer)  # fmt: skip
    # The first-token last layer's int8 products: their row is quantized as the full layer's first row would be
    # (per row), but its smoothing is calibrated on first-token rows, so built and traced int8 differ slightly.
    built, traced = run(paths["built"], folder, "int8"), run(paths["traced"], folder, "int8")
    exact = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)
    for logits in (built, traced):
        assert np.abs(logits - exact).max() < 0.25 * np.ptp(exact)  # lossy, but the weights survived


def test_shape_mismatch_names_the_tensor(tiny_checkpoints, copy_checkpoint, tmp_path):
    import json

    folder = copy_checkpoint(tiny_checkpoints["bert"][0])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))  # weights say 48
    with pytest.raises(CheckpointError, match=r"bert\.encoder\.layer\.0\.intermediate\.dense\.weight has shape"):
        export_onnx(open_checkpoint(folder), tmp_path / "model.onnx", "fp32")


def test_export_without_torch(tiny_checkpoints, tmp_path, monkeypatch):
    """The builder needs no torch; a family without one says which extra brings the torch exporter."""
    checkpoint = open_checkpoint(tiny_checkpoints["roberta"][0])
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as in a light install
    export_onnx(checkpoint, tmp_path / "model.onnx", "fp32")
    assert fused_ops(tmp_path / "model.onnx")["Attention"] == checkpoint.config.num_layers - 1  # + the first row's
    traced_only = dataclasses.replace(checkpoint, family=dataclasses.replace(checkpoint.family, onnx_builder=None))
    with pytest.raises(MissingExtra, match=r"needs PyTorch, which is not installed: pip install 'textclass\[torch\]'"):
        export_onnx(traced_only, tmp_path / "other.onnx", "fp32")
