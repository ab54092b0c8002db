"""Building the engine a checkpoint runs on, from the precision chosen for it (precision.py)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from textclass.checkpoint import Checkpoint
from textclass.checkpoint.weights import missing_head
from textclass.extras import installed, require_torch
from textclass.runtime.engine import Engine
from textclass.runtime.precision import Precision
from textclass.runtime.torch_engine import TorchEngine

if TYPE_CHECKING:
    from textclass.runtime.onnx_engine import OnnxEngine


log = logging.getLogger("textclass")

# Running many batches side by side takes a second ONNX Runtime session, another copy of the weights: worth it up to
# this size (a base model's 340 MB in fp32; a large one's 1.2 GB stays with one session, its products split well).
SIDE_BY_SIDE_BYTES = 512 * 2**20


def _second_copy_bytes(checkpoint: Checkpoint, mode: str) -> int:
    """About what a second ONNX Runtime session of this checkpoint holds: its layers' matrices, int8 or fp32."""
    config = checkpoint.config
    hidden, inner = config.hidden_size, config.intermediate_size
    return config.num_layers * (4 * hidden * hidden + 2 * hidden * inner) * (1 if mode == "int8" else 4)


def _onnx_engine(checkpoint: Checkpoint, mode: str, path: Path, manifest: dict) -> OnnxEngine:
    from textclass.onnx import cache as artefacts
    from textclass.runtime.onnx_engine import OnnxEngine

    return OnnxEngine(path, mode, cache_key=artefacts.session_key(manifest),
                      side_by_side=_second_copy_bytes(checkpoint, mode) <= SIDE_BY_SIDE_BYTES)  # fmt: skip


def _rescoring(checkpoint: Checkpoint, fast: OnnxEngine) -> Engine:
    """int8 with its near ties scored again by ONNX Runtime fp32 (rescore.py); raw-score models have no ties."""
    from textclass import postprocess
    from textclass.onnx import cache as artefacts
    from textclass.runtime.rescore import RescoringEngine

    config = checkpoint.config
    function = postprocess.default_function(config.problem_type, config.num_labels)
    if function == "none":
        return fast

    def exact() -> OnnxEngine:
        path, manifest = artefacts.find(checkpoint, "fp32") or artefacts.ensure(checkpoint, "fp32")
        return _onnx_engine(checkpoint, "fp32", path, manifest)

    return RescoringEngine(fast, exact, function, config.temperature, config.pad_token_id)


def load_engine(checkpoint: Checkpoint, device: str, precision: Precision) -> tuple[Engine, bool]:
    """The engine for a checkpoint, and whether the checkpoint has a classification head."""
    if precision.backend == "onnx":
        from textclass.onnx import cache as artefacts
        from textclass.onnx.export import bare_encoder_error

        mode = "int8" if precision.dtype == "int8" else "fp32"
        found = artefacts.find(checkpoint, mode)
        if found is None and missing_head(checkpoint):
            # A bare encoder cannot classify: load it as torch does, and classifying explains why not (without
            # torch, say it now).
            if not installed("torch"):
                raise bare_encoder_error(checkpoint)
            return load_engine(checkpoint, device, Precision("torch", "float32"))
        try:
            path, manifest = found or artefacts.ensure(checkpoint, mode)
            engine = _onnx_engine(checkpoint, mode, path, manifest)
            if precision.rescore:
                engine = _rescoring(checkpoint, engine)
            engine.reason = precision.reason
            return engine, True
        except Exception as exc:  # export or ORT failures of every kind: only a default may fall back
            if precision.required or (mode == "fp32" and not installed("torch")):
                raise
            fallback = ("onnx", "float32") if mode == "int8" else ("torch", "float32")
            problem = f"no ONNX Runtime {mode} engine for {checkpoint.folder} ({exc})"
            log.warning("textclass: %s; running %s %s", problem, *fallback)
            return load_engine(checkpoint, device, Precision(*fallback, required=False, reason=problem))
    require_torch(f"dtype {precision.dtype} on the torch backend")
    import torch

    from textclass.checkpoint import build_model

    int8 = precision.dtype == "int8"
    model, new_head = build_model(checkpoint, torch.float32 if int8 else getattr(torch, precision.dtype), device)
    if int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    engine = TorchEngine(model, device, precision.dtype)
    engine.reason = precision.reason
    return engine, not new_head
