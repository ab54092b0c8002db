"""Which backend, device and dtype run a checkpoint, decided once at load."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textclass.errors import InputError
from textclass.extras import installed, require_torch
from textclass.runtime.cpu import default_mode, emulated_bf16

if TYPE_CHECKING:
    from textclass.checkpoint import Checkpoint

log = logging.getLogger("textclass")

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16", "int8": "int8", "qint8": "int8"}  # fmt: skip


BACKENDS = ("torch", "onnx")


PRECISION_ENV = "TEXTCLASS_PRECISION"  # this machine's default mode instead of the CPU's, e.g. "onnx-fp32"


# Device files a GPU driver creates: without them torch cannot see a GPU, and we need not import it to ask.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/proc/driver/nvidia/version")


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


def default_precision(checkpoint: Checkpoint) -> dict[str, str]:
    """The mode Classifier.from_pretrained would run here by default, and why (chosen, not loaded): `inspect`."""
    precision = pick_precision(pick_device(None), preferred=checkpoint.config.raw.get("textclass_precision"))
    return {"default_precision": f"{precision.backend}-{precision.dtype}", "precision_reason": precision.reason}
