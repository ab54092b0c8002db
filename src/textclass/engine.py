"""Choosing and building the engine that runs batches: backend, device and dtype, decided once at load.

An engine is a callable Batch -> (rows, num_labels) float32 numpy logits with `uses_token_types`,
`backend` and `dtype`. Two backends:
- torch: fp32 (exact), bf16, fp16 (GPU), int8 (dynamic quantization of the Linear layers); any device.
- onnx: ONNX Runtime on CPU, fp32 or int8 (fused graph, QInt8 weights); needs no torch at run time.
The CPU default is ONNX Runtime fp32: the fastest mode whose labels agree with exact fp32 (it is fp32, with
fused kernels): batch throughput on par with torch fp32 or ~10% above, single texts in about half the time,
and no torch import; int8 is faster but moves scores with batch neighbours (see pick_precision). A GPU
defaults to torch bf16. See docs/performance.md for the figures.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from textclass.checkpoint import Checkpoint, missing_head
from textclass.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from textclass.batching import Batch

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16", "int8": "int8", "qint8": "int8"}  # fmt: skip
BACKENDS = ("torch", "onnx")
log = logging.getLogger("textclass")
# Device files a GPU driver creates: without them torch cannot see a GPU, and we need not import it to ask.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/proc/driver/nvidia/version")


class Engine(Protocol):
    backend: str
    uses_token_types: bool

    @property
    def dtype(self) -> str: ...

    def __call__(self, batch: Batch) -> np.ndarray: ...


@dataclass(frozen=True)
class Precision:
    backend: str  # "torch" or "onnx"
    dtype: str  # "float32", "bfloat16", "float16" or "int8"
    # False for a default nobody asked for: when it cannot be built (no ONNX export for this model), the
    # engine falls back to exact torch fp32 with a warning instead of failing.
    required: bool = True


def pick_device(device: str | None) -> str:
    if device is None or device == "auto":
        if not any(Path(p).exists() for p in _GPU_DEVICE_FILES):
            return "cpu"  # decided without importing torch (2 s): keeps the CPU cold start short
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return device


def pick_precision(
    device: str, dtype: str | None = None, backend: str | None = None, preferred: str | None = None
) -> Precision:
    """The backend and dtype to run with; explicit choices are checked, left-out ones get a safe default.

    Nothing given: the checkpoint's own `preferred` mode (config.json `textclass_precision`, e.g. "onnx-int8",
    which a checkpoint may set once its agreement with fp32 was measured), else ONNX Runtime fp32 on CPU
    (exported once and cached; torch fp32 when onnxruntime is missing or the export fails) and torch bf16 on
    a GPU. int8 is not the blanket CPU default: dynamic quantization sets activation scales per batch, so a
    text's score moves with its batch neighbours, and its agreement with fp32 is only known for a trained,
    checked model. dtype int8 alone means onnx int8; dtype fp32 alone means torch fp32, the reference.
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
    if backend is None and dtype is None and preferred and not gpu and onnx_available:
        preferred_backend, _, preferred_dtype = preferred.partition("-")
        if preferred_backend in BACKENDS and preferred_dtype in DTYPES:
            backend, dtype = preferred_backend, DTYPES[preferred_dtype]
    if backend is None and dtype is None and not gpu and onnx_available:
        return Precision("onnx", "float32", required=False)
    if backend is None:
        backend = "onnx" if not gpu and dtype == "int8" and onnx_available else "torch"
    if backend == "onnx":
        if gpu:
            raise InputError(f"the onnx backend runs on CPU only; use backend='torch' for device {device!r}")
        if dtype not in (None, "float32", "int8"):
            raise InputError(f"the onnx backend runs fp32 or int8, not {dtype}; use backend='torch' for it")
        return Precision("onnx", dtype or "float32")
    if dtype == "int8" and gpu:
        raise InputError("torch int8 (dynamic quantization) runs on CPU only; use bf16 or fp16 on a GPU")
    return Precision("torch", dtype or ("bfloat16" if gpu else "float32"))


def load_engine(checkpoint: Checkpoint, device: str, precision: Precision) -> tuple[Engine, bool]:
    """The engine for a checkpoint, and whether the checkpoint has a classification head."""
    if precision.backend == "onnx":
        from textclass import artefacts
        from textclass.onnx_engine import OnnxEngine

        mode = "int8" if precision.dtype == "int8" else "fp32"
        found = artefacts.find(checkpoint, mode)
        if found is None and missing_head(checkpoint):
            # A bare encoder cannot classify: load it as torch does, and classifying explains why not.
            return load_engine(checkpoint, device, Precision("torch", "float32"))
        try:
            path, manifest = found or artefacts.ensure(checkpoint, mode)
            return OnnxEngine(path, mode, cache_key=artefacts.session_key(manifest)), True
        except Exception as exc:  # export or ORT failures of every kind: only a default may fall back
            if precision.required:
                raise
            log.warning("textclass: no ONNX Runtime engine for %s (%s); running torch fp32", checkpoint.folder, exc)
            return load_engine(checkpoint, device, Precision("torch", "float32"))
    import torch

    from textclass.checkpoint import build_model

    int8 = precision.dtype == "int8"
    model, new_head = build_model(checkpoint, torch.float32 if int8 else getattr(torch, precision.dtype), device)
    if int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return TorchEngine(model, device, precision.dtype), not new_head


class TorchEngine:
    backend = "torch"

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
