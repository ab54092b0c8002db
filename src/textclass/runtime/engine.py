"""Choosing and building the engine that runs batches: backend, device and dtype, decided once at load.

An engine is a callable Batch -> (rows, num_labels) float32 numpy logits with `uses_token_types`,
`backend` and `dtype`. Two backends:
- torch: fp32 (exact), bf16, fp16 (GPU), int8 (dynamic quantization of the Linear layers); any device.
- onnx: ONNX Runtime on CPU, fp32 or int8 (fused graph; int8 with per-row activation scales, quantize.py);
  needs no torch at run time.
The CPU default is chosen by the CPU's instruction set (cpu.py): the fastest mode that keeps the accuracy
contract against exact fp32 (contract.py): per-row int8 on x86 with AVX2 or VNNI, its near ties scored again in
fp32 (rescore.py), ONNX Runtime fp32 elsewhere. An engine may also `map` many batches at once (run_batches).
A GPU defaults to torch bf16. Every engine carries `reason`: why that mode runs, decided once at load.
See docs/performance.md for the figures.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from textclass.checkpoint.folder import Checkpoint, missing_head
from textclass.errors import InputError
from textclass.extras import installed, require_torch
from textclass.runtime.cpu import default_mode, emulated_bf16

if TYPE_CHECKING:
    import torch
    from torch import nn

    from textclass.runtime.batching import Batch
    from textclass.runtime.onnx_engine import OnnxEngine

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16", "int8": "int8", "qint8": "int8"}  # fmt: skip
BACKENDS = ("torch", "onnx")
# Running many batches side by side takes a second ONNX Runtime session, another copy of the weights: worth it up to
# this size (a base model's 340 MB in fp32; a large one's 1.2 GB stays with one session, its products split well).
SIDE_BY_SIDE_BYTES = 512 * 2**20
PRECISION_ENV = "TEXTCLASS_PRECISION"  # this machine's default mode instead of the CPU's, e.g. "onnx-fp32"
log = logging.getLogger("textclass")
# Device files a GPU driver creates: without them torch cannot see a GPU, and we need not import it to ask.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/proc/driver/nvidia/version")


class Engine(Protocol):
    backend: str
    uses_token_types: bool

    @property
    def dtype(self) -> str: ...

    def __call__(self, batch: Batch) -> np.ndarray: ...


def run_batches(engine: Engine, batches: Sequence[Batch]) -> Iterator[np.ndarray]:
    """Each batch's (rows, num_labels) logits, in order; an engine with a `map` of its own (ONNX Runtime: batches
    side by side on the CPUs) runs several batches that way."""
    side_by_side = getattr(engine, "map", None)
    if side_by_side is None or len(batches) < 2:
        return map(engine, batches)
    return side_by_side(batches)


@dataclass(frozen=True)
class Precision:
    backend: str  # "torch" or "onnx"
    dtype: str  # "float32", "bfloat16", "float16" or "int8"
    # False for a default nobody asked for: when it cannot be built (no ONNX export for this model), the
    # engine falls back (int8 to ONNX Runtime fp32, fp32 to torch fp32) with a warning instead of failing.
    required: bool = True
    reason: str = field(default="", compare=False)  # why this mode, for inspect, /info and -v
    # int8 only: the texts int8 leaves near a tie are scored again in fp32 (rescore.py). The CPU default and a
    # pinned onnx-int8 do; int8 asked for by name (dtype="int8") is per-row int8 alone.
    rescore: bool = False


def pick_device(device: str | None) -> str:
    if device is None or device == "auto":
        if not any(Path(p).exists() for p in _GPU_DEVICE_FILES) or not installed("torch"):
            return "cpu"  # decided without importing torch (2 s): keeps the CPU cold start short
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        require_torch(f"device {device!r}")
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return device


def pick_precision(
    device: str, dtype: str | None = None, backend: str | None = None, preferred: str | None = None
) -> Precision:
    """The backend and dtype to run with; explicit choices are checked, left-out ones get a safe default.

    Nothing given: the checkpoint's own `preferred` mode (config.json `textclass_precision`, e.g. "onnx-fp32"
    to pin exact fp32), else this machine's TEXTCLASS_PRECISION (same syntax), else the CPU's default
    (cpu.default_mode: per-row int8 where the instruction set runs it faster than fp32 within the accuracy
    contract, else ONNX Runtime fp32; exported once and cached) and torch bf16 on a GPU. bf16 on a CPU without
    native bf16 is emulated (~6x slower than fp32): a pinned one falls back to the CPU default, one asked for
    by name runs with a warning. dtype int8 alone means onnx int8; dtype fp32 alone means torch fp32, the
    reference (ONNX Runtime fp32 when torch is not installed: the same maths).
    """
    if dtype in (None, "auto"):
        dtype = None
    elif dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(sorted(DTYPES))}; got {dtype!r}")
    else:
        dtype = DTYPES[dtype]
    if backend in (None, "auto"):
        backend = None
    elif backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)} (or auto); got {backend!r}")
    gpu = device != "cpu"
    onnx_available = importlib.util.find_spec("onnxruntime") is not None
    asked = ", ".join(f"{key}={value}" for key, value in (("backend", backend), ("dtype", dtype)) if value)
    reason = f"asked for: {asked}" if asked else "GPU default" if gpu else "onnxruntime is not installed"
    # Then the checkpoint's pin, then this machine's (TEXTCLASS_PRECISION, e.g. "onnx-fp32": the test suite pins
    # exact fp32 so that its answers do not depend on the CPU it runs on), then the CPU's instruction set.
    pins = (("config.json: textclass_precision", preferred), (PRECISION_ENV, os.environ.get(PRECISION_ENV)))
    required = True
    for source, pin in pins:
        if backend is not None or dtype is not None or not pin or gpu or not onnx_available:
            continue
        pinned_backend, _, pinned_dtype = pin.partition("-")
        if pinned_backend not in BACKENDS or pinned_dtype not in DTYPES:
            log.warning("textclass: ignoring %s=%r: expected BACKEND-DTYPE, e.g. onnx-fp32 or onnx-int8", source, pin)
            continue
        backend, dtype, reason = pinned_backend, DTYPES[pinned_dtype], f"{source}={pin}"
        required = source != PRECISION_ENV  # the machine's pin is a default: it may fall back like one
        if dtype == "bfloat16" and (slow := emulated_bf16()):
            log.warning("textclass: %s, but %s; running this CPU's default instead", reason, slow)
            backend, dtype = None, None
    if backend is None and dtype is None and not gpu and onnx_available:
        choice = default_mode()
        return Precision(choice.backend, choice.dtype, required=False, reason=choice.reason,
                         rescore=choice.dtype == "int8")  # fmt: skip
    if dtype == "bfloat16" and not gpu and installed("torch") and (slow := emulated_bf16()):  # else: no torch at all
        warnings.warn(f"textclass: {slow}; leave dtype out for this CPU's fast mode ({default_mode().dtype}) or "
                      "pass dtype='fp32'", stacklevel=3)  # fmt: skip
    if backend is None:
        onnx_dtypes = ("int8", "float32") if not installed("torch") else ("int8",)
        backend = "onnx" if not gpu and dtype in onnx_dtypes and onnx_available else "torch"
    if backend == "onnx":
        if gpu:
            raise InputError(f"the onnx backend runs on CPU only; use backend='torch' for device {device!r}")
        if dtype not in (None, "float32", "int8"):
            raise InputError(f"the onnx backend runs fp32 or int8, not {dtype}; use backend='torch' for it")
        # A pinned onnx-int8 is the mode `textclass check` measured: int8 with its near ties rescored.
        pinned = reason.startswith(tuple(source for source, _ in pins))
        return Precision("onnx", dtype or "float32", required, reason, rescore=pinned and dtype == "int8")
    if dtype == "int8" and gpu:
        raise InputError("torch int8 (dynamic quantization) runs on CPU only; use bf16 or fp16 on a GPU")
    return Precision("torch", dtype or ("bfloat16" if gpu else "float32"), reason=reason)


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

    from textclass.checkpoint.folder import build_model

    int8 = precision.dtype == "int8"
    model, new_head = build_model(checkpoint, torch.float32 if int8 else getattr(torch, precision.dtype), device)
    if int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    engine = TorchEngine(model, device, precision.dtype)
    engine.reason = precision.reason
    return engine, not new_head


class TorchEngine:
    backend = "torch"
    reason = ""

    def __init__(self, model: nn.Module, device: str, dtype: str = "float32"):
        self.model = model
        self.device = device
        self.uses_token_types = model.config.type_vocab_size > 0
        self._dtype = dtype

    @property
    def dtype(self) -> str:
        return self._dtype

    def __call__(self, batch: Batch) -> np.ndarray:  # (rows, num_labels) float32 logits
        import torch

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, non_blocking=True)

        with torch.inference_mode():
            logits = self.model(
                tensor(batch.input_ids),
                tensor(batch.attention_mask),
                tensor(batch.token_type_ids) if self.uses_token_types and batch.token_type_ids is not None else None,
            )
        return logits.float().cpu().numpy()
