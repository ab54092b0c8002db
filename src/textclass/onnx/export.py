"""Export a checkpoint to ONNX, fuse it with ONNX Runtime's transformer optimizer, and quantize it to int8
(per-row activation scales: quantize.py).

Runs once per checkpoint and mode (artefacts.py caches the result); needs onnx and onnxruntime, and torch only
for families without a torch-free graph builder (`Family.onnx_builder`; the BERT lineage has onnx_graph.py).
What was measured on this project's CPU decides the recipe:
- the legacy TorchScript exporter (`dynamo=False`) on explicit matmul-softmax-matmul attention gives the
  graph ORT's optimizer fuses into Attention / SkipLayerNormalization / BiasGelu / EmbedLayerNormalization;
  onnx_graph.py builds that same graph from config.json and the weights, and it fuses the same way;
- int8 is quantize.py's rewrite of the fused graph, not ONNX Runtime's `quantize_dynamic`: that one scales
  activations per batch, so a text's scores moved with its neighbours (up to 0.28 in probability).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from textclass.checkpoint import Checkpoint
from textclass.errors import InputError
from textclass.extras import require_torch

# Bump when the exported graph changes: every cached artefact made by an older recipe becomes stale.
# 2: the BERT lineage's graph is built by onnx_graph.py (same fused operators and outputs as the traced one).
EXPORT_VERSION = 2
OPSET = 17
ONNX_MODES = ("fp32", "int8")

log = logging.getLogger("textclass")


def export_settings(mode: str) -> dict[str, Any]:
    """Everything besides the checkpoint that decides the artefact's content: part of its cache key."""
    settings: dict[str, Any] = {"export_version": EXPORT_VERSION, "mode": mode, "opset": OPSET, "fused": True}
    if mode == "int8":  # the plan follows this CPU's int8 kernels (cpu.py): a graph for another CPU is rebuilt
        from textclass.onnx.quantize import VERSION
        from textclass.runtime.cpu import int8_plan

        settings["quantization"] = {"activations": "per row", "weights": "per channel", "plan": int8_plan(),
                                    "version": VERSION}  # fmt: skip
    return settings


def export_onnx(checkpoint: Checkpoint, out: Path, mode: str, link: bool = False, traced: bool = False) -> None:
    """Write the checkpoint's classifier to `out` as a fused fp32 or int8 ONNX graph, atomically.

    Inputs input_ids, attention_mask (and token_type_ids when the family has them), all (batch, seq) int64;
    output logits (batch, num_labels) float32. `link` (fp32, `out` in the checkpoint's folder): the graph
    reads its weights from the checkpoint's safetensors files instead of holding a copy (onnx_link.py).
    `traced`: use the torch exporter even where the family has a builder (tests and bench/onnx_build.py
    compare the two).
    """
    if mode not in ONNX_MODES:
        raise InputError(f"ONNX mode must be one of {', '.join(ONNX_MODES)}; got {mode!r}")
    require_exporter(checkpoint, mode, traced)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Work files live beside the target so the final os.replace is atomic (same filesystem).
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".textclass-export-") as work:
        raw, fused = Path(work) / "raw.onnx", Path(work) / "fused.onnx"
        write_graph(checkpoint, raw, traced)
        _fuse(checkpoint, raw, fused)
        final = fused
        if link and mode == "fp32":
            final = Path(work) / "linked.onnx"
            _link(checkpoint, fused, final)
        if mode == "int8":
            from textclass.onnx.calibration import calibration_batches
            from textclass.onnx.quantize import write_int8
            from textclass.runtime.cpu import int8_plan

            final = Path(work) / "int8.onnx"
            write_int8(fused, final, int8_plan(), calibration_batches(checkpoint))
        os.replace(final, out)


def require_exporter(checkpoint: Checkpoint, mode: str, traced: bool = False) -> None:
    """Raise MissingExtra before any work when the export needs what is not installed: torch to trace a family
    without a graph builder (int8 needs nothing more than fp32)."""
    if traced or not checkpoint.family.onnx_builder:
        require_torch(f"exporting a {checkpoint.config.model_type} model to ONNX")


def write_graph(checkpoint: Checkpoint, path: Path, traced: bool = False) -> None:
    """The unfused fp32 graph: built from config and weights when the family has a builder (no torch needed),
    else traced from the torch model."""
    if checkpoint.family.onnx_builder and not traced:
        _build(checkpoint, path)
    else:
        _trace(checkpoint, path)


def _build(checkpoint: Checkpoint, path: Path) -> None:
    import onnx
    from textclass.checkpoint.weights import map_weights, read_arrays

    state, new_head, sources = map_weights(checkpoint, read_arrays(checkpoint))
    if new_head:
        raise bare_encoder_error(checkpoint)
    ours_to_source = {ours: name for name, ours in sources.items()}
    onnx.save(checkpoint.family.build_onnx(checkpoint.config, state, ours_to_source), str(path))


def bare_encoder_error(checkpoint: Checkpoint) -> InputError:
    return InputError(
        f"{checkpoint.folder} is a bare encoder without a classification head; "
        "fine-tune it first (textclass train) or load a *ForSequenceClassification checkpoint"
    )


def _trace(checkpoint: Checkpoint, path: Path) -> None:
    import torch

    from textclass.checkpoint import build_model

    model, new_head = build_model(checkpoint)
    if new_head:
        raise bare_encoder_error(checkpoint)
    if checkpoint.family.onnx_fusion:
        model.encoder.use_explicit_attention()  # the attention pattern ORT's optimizer fuses
    token_types = checkpoint.config.type_vocab_size > 0
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    # Two rows, the second padded, so the trace carries the masking path (the graph is shape-generic).
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = checkpoint.config.pad_token_id
    args = (ids, mask) + ((torch.zeros_like(ids),) if token_types else ())
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic, expected and harmless here
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _fuse(checkpoint: Checkpoint, raw: Path, out: Path) -> None:
    config = checkpoint.config
    if checkpoint.family.onnx_fusion is None:
        os.replace(raw, out)  # no fusion recipe for this family: ORT's own graph optimizations run at load
        return
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # Without symbolic shape inference, which needs sympy (not a core dependency): on these graphs it fuses
    # the same operators (tests/test_onnx_graph.py). The fusion that would use it says so; nothing to report.
    options = FusionOptions(checkpoint.family.onnx_fusion)
    options.enable_shape_inference = False
    quiet = logging.getLogger("fusion_skiplayernorm")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            str(raw),
            model_type=checkpoint.family.onnx_fusion,
            num_heads=config.num_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
            optimization_options=options,
        )
    finally:
        quiet.setLevel(level)
    fused = optimized.get_fused_operator_statistics()
    if fused.get("Attention", 0) != config.num_layers:
        # Still correct, only slower: say so rather than hide it.
        log.warning("ONNX Runtime fused %s of %s attention layers", fused.get("Attention", 0), config.num_layers)
    optimized.save_model_to_file(str(out))


def _link(checkpoint: Checkpoint, fused: Path, out: Path) -> None:
    import onnx
    from textclass.onnx.link import link_weights

    model = onnx.load(str(fused))
    stats = link_weights(model, list(checkpoint.weight_files))
    log.info("ONNX graph reads %s weight tensors from the checkpoint; %s bytes stay inside",
             stats["linked"], stats["embedded_bytes"])  # fmt: skip
    onnx.save(model, str(out))
