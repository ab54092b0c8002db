"""Export a checkpoint to ONNX, fuse it with ONNX Runtime's transformer optimizer, and quantize it to int8
(per-row activation scales: quantize.py).

Runs once per checkpoint and mode (cache.py keeps the result); needs onnx and onnxruntime, and torch only for
families without a torch-free graph builder (`Family.onnx_builder`; the BERT lineage has graph.py). What was
measured on this project's CPU decides the recipe:
- the legacy TorchScript exporter (`dynamo=False`) on explicit matmul-softmax-matmul attention gives the
  graph ORT's optimizer fuses into Attention / SkipLayerNormalization / BiasGelu / EmbedLayerNormalization;
  the SkipLayerNormalization nodes are then split back into Add + LayerNormalization (layernorm.py: ORT's fused
  kernel ran 2-6x slower than the plain ones);
  graph.py builds that same graph from config.json and the weights, and it fuses the same way;
- int8 is quantize.py's rewrite of that fused graph, not ONNX Runtime's `quantize_dynamic`: that one scales
  activations per batch, so a text's scores moved with its neighbours;
- the weights go to a side file (`<name>.data`, ONNX external data), which ONNX Runtime maps instead of parsing
  out of the protobuf: a session opens several times faster (docs/performance.md, "Cold start");
- `link` (fp32, a graph shipped beside its checkpoint, like the bundled model's) points the weights into the
  checkpoint's safetensors files instead (link.py). Build time only: what the CPU runs is decided in runtime/,
  which passes the int8 plan and the calibration feeds in.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.checkpoint import Checkpoint
from textclass.errors import InputError
from textclass.extras import require_torch

if TYPE_CHECKING:
    import onnx

    from textclass.onnx.quantize import Feeds

# Bump when the exported graph changes: every cached artefact made by an older recipe becomes stale.
# 2: the BERT lineage's graph is built by graph.py (same fused operators and outputs as the traced one).
# 3: residual blocks are Add + LayerNormalization again, not SkipLayerNormalization (layernorm.py: faster).
# 4: graph.py's last layer computes the first token's row alone (the head reads nothing else).
# 5: its one-query attention as plain operators, not MultiHeadAttention (wrong on padded rows before ORT 1.21).
EXPORT_VERSION = 5
OPSET = 17
ONNX_MODES = ("fp32", "int8")
EXTERNAL_DATA_MIN_BYTES = 1024  # initializers at least this large go to the side file

log = logging.getLogger("textclass")


def export_settings(mode: str, plan: str | None = None) -> dict[str, Any]:
    """Everything besides the checkpoint that decides the artefact's content: part of its cache key. `plan`
    (int8): this CPU's int8 kernels (quantize.PLANS, chosen by runtime/cpu.py): a graph for another CPU differs."""
    if mode not in ONNX_MODES:
        raise InputError(f"ONNX mode must be one of {', '.join(ONNX_MODES)}; got {mode!r}")
    settings: dict[str, Any] = {"export_version": EXPORT_VERSION, "mode": mode, "opset": OPSET, "fused": True}
    if mode == "int8":
        from textclass.onnx.quantize import PLANS, VERSION

        if plan not in PLANS:
            raise ValueError(f"an int8 export needs the CPU's int8 plan, one of {', '.join(PLANS)}; got {plan!r}")
        settings["quantization"] = {"activations": "per row", "weights": "per channel", "plan": plan,
                                    "version": VERSION}  # fmt: skip
    return settings


@dataclass
class Exported:
    graphs: dict[str, onnx.ModelProto]  # mode -> graph, weights inside
    calibration_logits: np.ndarray | None = None  # int8: (texts, num_labels) fp32 logits of the calibration texts


def export_graphs(
    checkpoint: Checkpoint,
    modes: Sequence[str],
    plan: str | None = None,
    calibration: Iterable[Feeds] = (),
    traced: bool = False,
) -> Exported:
    """The checkpoint's classifier as fused ONNX graphs, one per mode, weights inside: "fp32", and "int8" derived
    from that same fused graph (`plan`, `calibration`: quantize.int8_model).

    Inputs input_ids, attention_mask (and token_type_ids when the family has them), all (batch, seq) int64;
    output logits (batch, num_labels) float32. `traced`: the torch exporter even where the family has a builder
    (tests and bench/onnx_build.py compare the two).
    """
    for mode in modes:
        export_settings(mode, plan)  # an unknown mode, or int8 without a plan: before any work
    require_exporter(checkpoint, traced)
    # graph.py leaves its last layer's one-query attention unfused; a traced graph has every layer's to fuse.
    fusable = checkpoint.config.num_layers - _builds(checkpoint, traced)
    fused = _fuse(checkpoint, unfused_graph(checkpoint, traced), fusable=fusable)
    exported = Exported({})
    if "int8" in modes:
        from textclass.onnx.quantize import int8_model

        exported.graphs["int8"], exported.calibration_logits = int8_model(fused, plan, calibration)  # type: ignore
    if "fp32" in modes:
        exported.graphs["fp32"] = fused
    return exported


def export_onnx(
    checkpoint: Checkpoint,
    out: Path,
    mode: str = "fp32",
    plan: str | None = None,
    calibration: Iterable[Feeds] = (),
    link: bool = False,
    traced: bool = False,
) -> None:
    """Write one of export_graphs' graphs to `out` (save_graph: weights in `out`'s side file). `link` (fp32, `out`
    in the checkpoint's folder): the graph reads its weights from the checkpoint's safetensors files instead,
    which is how a bundled model ships its graph at no extra size (link.py)."""
    if link and mode != "fp32":
        raise ValueError("only an fp32 graph reads its weights from the checkpoint's files")
    model = export_graphs(checkpoint, [mode], plan, calibration, traced).graphs[mode]
    if link:
        from textclass.onnx.link import link_weights

        stats = link_weights(model, list(checkpoint.weight_files))
        log.info("ONNX graph reads %s weight tensors from the checkpoint; %s bytes stay inside",
                 stats["linked"], stats["embedded_bytes"])  # fmt: skip
    save_graph(model, out, external=not link)


def save_graph(model: onnx.ModelProto, out: Path, external: bool = True) -> None:
    """Write `model` to `out`, its large initializers to `out.name + ".data"` beside it (`external`). Both files
    are written under temporary names first, the graph renamed last. Empties the model's initializers."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".textclass-save-") as work:
        temporary = Path(work) / out.name
        if external:
            onnx.save_model(model, str(temporary), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=out.name + ".data", size_threshold=EXTERNAL_DATA_MIN_BYTES)  # fmt: skip
            os.replace(temporary.with_name(out.name + ".data"), out.with_name(out.name + ".data"))
        else:
            onnx.save_model(model, str(temporary))
        os.replace(temporary, out)


def _builds(checkpoint: Checkpoint, traced: bool) -> bool:
    """Whether the unfused graph is built from config and weights (the family has a builder and no trace was asked
    for) rather than traced from the torch model."""
    return bool(checkpoint.family.onnx_builder) and not traced


def require_exporter(checkpoint: Checkpoint, traced: bool = False) -> None:
    """Raise MissingExtra before any work when the export needs what is not installed: torch to trace a family
    without a graph builder (int8 needs nothing more than fp32)."""
    if not _builds(checkpoint, traced):
        require_torch(f"exporting a {checkpoint.config.model_type} model to ONNX")


def unfused_graph(checkpoint: Checkpoint, traced: bool = False) -> onnx.ModelProto:
    """The unfused fp32 graph: built from config and weights when the family has a builder (no torch needed, and
    no file: it goes to the fuser in memory), else traced from the torch model."""
    if _builds(checkpoint, traced):
        from textclass.checkpoint.weights import map_weights, read_arrays

        state, new_head, sources = map_weights(checkpoint, read_arrays(checkpoint))
        if new_head:
            raise bare_encoder_error(checkpoint)
        ours_to_source = {ours: name for name, ours in sources.items()}
        return checkpoint.family.build_onnx(checkpoint.config, state, ours_to_source)
    import onnx

    with tempfile.TemporaryDirectory(prefix="textclass-export-") as work:
        _trace(checkpoint, Path(work) / "traced.onnx")
        return onnx.load(str(Path(work) / "traced.onnx"))


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
        model.first_only = False  # a full last layer: the fusion knows self-attention only (graph.py prunes it)
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


def _fuse(checkpoint: Checkpoint, raw: onnx.ModelProto, fusable: int) -> onnx.ModelProto:
    """ORT's transformer optimizer over the unfused graph; `fusable`: the attention layers it should fuse (all but
    graph.py's one-query last layer), else it says so."""
    config = checkpoint.config
    if checkpoint.family.onnx_fusion is None:
        return raw  # no fusion recipe for this family: ORT's own graph optimizations run at load
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # Without symbolic shape inference, which needs sympy (not a core dependency): on these graphs it fuses
    # the same operators (tests/onnx/test_onnx_graph.py). The fusion that would use it says so; nothing to report.
    options = FusionOptions(checkpoint.family.onnx_fusion)
    options.enable_shape_inference = False
    quiet = logging.getLogger("fusion_skiplayernorm")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            raw,
            model_type=checkpoint.family.onnx_fusion,
            num_heads=config.num_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
            optimization_options=options,
        )
    finally:
        quiet.setLevel(level)
    attention = optimized.get_fused_operator_statistics().get("Attention", 0)
    if attention != fusable:
        # Still correct, only slower: say so rather than hide it.
        log.warning("ONNX Runtime fused %s of %s attention layers", attention, fusable)
    from textclass.onnx.layernorm import split_skip_layer_norm

    split_skip_layer_norm(optimized.model)  # its fused residual blocks run slower than the plain operators
    return optimized.model
