"""Building the engine a checkpoint runs on, from the precision chosen for it (precision.py).

A default nobody asked for may fall back when it cannot be built (an export that fails on an unusual model):
load_engine tries the candidate modes in order, per-row int8 -> ONNX Runtime fp32 -> torch fp32, and warns.
ONNX graphs come from the artefact cache (onnx/cache.py); what they depend on that only runtime/ knows (this
CPU's int8 plan, the calibration batches) is passed in from here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from textclass.checkpoint import Checkpoint
from textclass.checkpoint.weights import missing_head
from textclass.errors import CheckpointError
from textclass.extras import installed, require_torch
from textclass.runtime.engine import Engine
from textclass.runtime.precision import CPU_DEFAULT, Precision
from textclass.runtime.torch_engine import TorchEngine

if TYPE_CHECKING:
    from textclass.runtime.onnx_engine import OnnxEngine


log = logging.getLogger("textclass")

# Running many batches side by side takes a second ONNX Runtime session, another copy of the weights: worth it up to
# this size (a base model's 340 MB in fp32; a large one's 1.2 GB stays with one session, its products split well).
SIDE_BY_SIDE_BYTES = 512 * 2**20
CALIBRATION_BATCH_TOKENS = 2048  # the calibration sentences in batches of this many padded tokens


def load_engine(checkpoint: Checkpoint, device: str, precision: Precision) -> tuple[Engine, bool]:
    """The engine for a checkpoint, and whether the checkpoint has a classification head."""
    if precision.backend == "onnx" and _bare_encoder(checkpoint, precision):
        # A bare encoder cannot classify: load it as torch does, and classifying explains why not (without torch,
        # say it now).
        if not installed("torch"):
            from textclass.onnx.export import bare_encoder_error

            raise bare_encoder_error(checkpoint)
        return _torch(checkpoint, device, Precision("torch", "float32"))
    candidates = [precision]
    if not precision.required:  # a default: fall back rather than fail
        if precision.backend == "onnx" and precision.dtype == "int8":
            candidates.append(Precision("onnx", "float32", required=False))
        if precision.backend == "onnx" and installed("torch"):
            candidates.append(Precision("torch", "float32", required=False))
    problem = ""
    for position, candidate in enumerate(candidates):
        if problem:
            log.warning("textclass: %s; running %s %s", problem, candidate.backend, candidate.dtype)
            candidate = Precision(candidate.backend, candidate.dtype, False, problem, rule=precision.rule)
        try:
            if candidate.backend == "onnx":
                return _onnx(checkpoint, candidate), True
            return _torch(checkpoint, device, candidate)
        except Exception as exc:  # export or ORT failures of every kind: only a default may fall back
            if position == len(candidates) - 1 or candidate.required:
                raise
            mode = "int8" if candidate.dtype == "int8" else "fp32"
            problem = f"no ONNX Runtime {mode} engine for {checkpoint.folder} ({exc})"
    raise AssertionError("unreachable: the last candidate raises")  # pragma: no cover


def _bare_encoder(checkpoint: Checkpoint, precision: Precision) -> bool:
    """Whether the checkpoint lacks its classification head; asked only when nothing is cached (a cached graph
    has a head)."""
    from textclass.onnx import cache
    from textclass.runtime.cpu import int8_plan

    mode = "int8" if precision.dtype == "int8" else "fp32"
    cached = cache.find(checkpoint, mode, int8_plan() if mode == "int8" else None)
    return cached is None and bool(missing_head(checkpoint))


def _onnx(checkpoint: Checkpoint, precision: Precision) -> Engine:
    precision = for_this_model(checkpoint, precision, build=True)
    mode = "int8" if precision.dtype == "int8" else "fp32"
    engine = open_onnx(checkpoint, mode, precision.reason)
    function = _function(checkpoint)
    if not precision.rescore or function == "none":  # raw scores (regression) have no near ties
        return engine
    from textclass.runtime.rescore import RescoringEngine

    config = checkpoint.config
    return RescoringEngine(engine, lambda: open_onnx(checkpoint, "fp32"), function, config.temperature,
                           config.pad_token_id, precision.reason)  # fmt: skip


def for_this_model(checkpoint: Checkpoint, precision: Precision, build: bool) -> Precision:
    """The CPU default's int8 with near ties rescored, or exact fp32 where this model's calibration sentences say
    rescoring would not pay (rescore.rescoring_pays). Other modes (asked for, pinned) stay as they are. `build`:
    export the int8 graph if it is not cached (its build notes the calibration logits); else, with nothing cached,
    say the choice is made at the first load."""
    function = _function(checkpoint)
    if precision.rule != CPU_DEFAULT or not precision.rescore or function == "none":
        return precision
    from textclass.onnx import cache
    from textclass.runtime.cpu import detect, int8_cost, int8_plan
    from textclass.runtime.rescore import rescoring_pays

    plan = int8_plan()
    if build:
        graph = cache.ensure(checkpoint, "int8", plan, lambda: calibration_feeds(checkpoint))
    else:
        graph = cache.find(checkpoint, "int8", plan)
    logits = None if graph is None else cache.calibration_logits(graph)
    if logits is None or not len(logits):
        return replace(precision, reason=f"{precision.reason}; whether rescoring pays for this model is measured on "
                                         "calibration sentences at its first load")  # fmt: skip
    pays, why = rescoring_pays(logits, function, checkpoint.config.temperature, int8_cost())
    if pays:
        return replace(precision, reason=f"{precision.reason}; {why}")
    return Precision("onnx", "float32", required=False, reason=f"CPU default ({detect().describe()}): {why}",
                     rule=CPU_DEFAULT)  # fmt: skip


def default_precision(checkpoint: Checkpoint) -> dict[str, str]:
    """The mode Classifier.from_pretrained would run here by default, and why (chosen, not loaded): `inspect`."""
    from textclass.runtime.precision import pick_device, pick_precision

    precision = pick_precision(pick_device(None), preferred=checkpoint.config.raw.get("textclass_precision"))
    precision = for_this_model(checkpoint, precision, build=False)
    return {"default_precision": f"{precision.backend}-{precision.dtype}", "precision_reason": precision.reason}


def _function(checkpoint: Checkpoint) -> str:
    from textclass import postprocess

    return postprocess.default_function(checkpoint.config.problem_type, checkpoint.config.num_labels)


def open_onnx(checkpoint: Checkpoint, mode: str, reason: str = "") -> OnnxEngine:
    """An ONNX Runtime engine on the cached graph (built now if there is none); a cached graph ONNX Runtime cannot
    open is damage: it is rebuilt once."""
    from textclass.onnx import cache
    from textclass.runtime.cpu import int8_plan
    from textclass.runtime.onnx_engine import OnnxEngine

    plan = int8_plan() if mode == "int8" else None
    side_by_side = _second_copy_bytes(checkpoint, mode) <= SIDE_BY_SIDE_BYTES
    for attempt in range(2):
        path = cache.ensure(checkpoint, mode, plan, lambda: calibration_feeds(checkpoint))
        try:
            return OnnxEngine(path, mode, reason, side_by_side=side_by_side)
        except CheckpointError as exc:
            if attempt or not cache.discard(path):
                raise
            log.warning("textclass: %s; rebuilding it", exc)
    raise AssertionError("unreachable: the second attempt raises")  # pragma: no cover


def calibration_feeds(checkpoint: Checkpoint) -> list[dict[str, np.ndarray]]:
    """onnx/calibration.py's sentences tokenized by the checkpoint's own tokenizer, in the batches the engines run,
    as ONNX Runtime feeds: what per-row int8 measures its channels' ranges on (onnx/quantize.py)."""
    from textclass.onnx.calibration import CALIBRATION_TEXTS
    from textclass.runtime.batching import make_batches

    tokenizer = checkpoint.load_tokenizer()
    encoded = tokenizer.encode_batch(list(CALIBRATION_TEXTS), truncation=True)
    token_types = checkpoint.config.type_vocab_size > 0
    feeds = []
    for batch in make_batches(encoded, CALIBRATION_BATCH_TOKENS, tokenizer.pad_token_id, token_types):
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.token_type_ids is not None:
            feed["token_type_ids"] = batch.token_type_ids
        feeds.append(feed)
    return feeds


def _second_copy_bytes(checkpoint: Checkpoint, mode: str) -> int:
    """About what a second ONNX Runtime session of this checkpoint holds: its layers' matrices, int8 or fp32."""
    config = checkpoint.config
    hidden, inner = config.hidden_size, config.intermediate_size
    return config.num_layers * (4 * hidden * hidden + 2 * hidden * inner) * (1 if mode == "int8" else 4)


def _torch(checkpoint: Checkpoint, device: str, precision: Precision) -> tuple[Engine, bool]:
    require_torch(f"dtype {precision.dtype} on the torch backend")
    import torch

    from textclass.checkpoint import build_model

    int8 = precision.dtype == "int8"
    model, new_head = build_model(checkpoint, torch.float32 if int8 else getattr(torch, precision.dtype), device)
    if int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return TorchEngine(model, device, precision.dtype, precision.reason), not new_head
