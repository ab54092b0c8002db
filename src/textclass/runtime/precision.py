"""Which backend, device and dtype run a checkpoint, decided once at load."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from textclass.errors import InputError
from textclass.extras import installed, require_torch
from textclass.runtime.cpu import default_mode, emulated_bf16

log = logging.getLogger("textclass")

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16", "int8": "int8", "qint8": "int8"}  # fmt: skip


BACKENDS = ("torch", "onnx")


PRECISION_ENV = "TEXTCLASS_PRECISION"  # this machine's default mode instead of the CPU's, e.g. "onnx-fp32"
DEVICE_ENV = "TEXTCLASS_DEVICE"  # this machine's default device instead of "a GPU when there is one", e.g. "cpu"


# Device files a GPU driver creates: without them torch cannot see a GPU, and we need not import it to ask.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/proc/driver/nvidia/version")


# The rules that choose a mode, in order (pick_precision): the first that applies wins, and its name is recorded.
ASKED, CHECKPOINT_PIN, MACHINE_PIN, GPU_DEFAULT, NO_ONNXRUNTIME, CPU_DEFAULT = (
    "asked for", "checkpoint pin", "machine pin", "GPU default", "no onnxruntime", "CPU default")  # fmt: skip


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
    rule: str = field(default="", compare=False)  # which rule chose it (ASKED ... CPU_DEFAULT)


def pick_device(device: str | None) -> str:
    """The device asked for; left out, TEXTCLASS_DEVICE's, else ("auto") a GPU when torch sees one, else the CPU."""
    where = f"device {device!r}"
    if device is None:
        device = os.environ.get(DEVICE_ENV) or "auto"
        where = f"{DEVICE_ENV}={device!r}"
    device = device.strip().lower()
    if device == "auto":
        if not any(Path(p).exists() for p in _GPU_DEVICE_FILES) or not installed("torch"):
            return "cpu"  # decided without importing torch (2 s): keeps the CPU cold start short
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    # torch's device types we pass on (mps and xpu as torch runs them, untested here); "cpu:0" is the CPU.
    if not re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", device):
        raise InputError(f"{where} is not a device: use cpu, cuda, cuda:N (a GPU's index), mps or auto")
    if device.startswith("cpu"):
        return "cpu"
    if device.startswith("cuda"):
        require_torch(where)
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"{where} asked for, but torch sees no CUDA GPU")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"{where} asked for, but torch sees {torch.cuda.device_count()} GPU(s), from cuda:0")
    return device


@dataclass(frozen=True)
class Request:
    """What pick_precision was given, and what it knows about this machine."""

    device: str
    dtype: str | None  # a DTYPES value, or None
    backend: str | None  # a BACKENDS value, or None
    preferred: str | None  # the checkpoint's pin (config.json textclass_precision)
    onnx_available: bool

    @property
    def gpu(self) -> bool:
        return self.device != "cpu"


def pick_precision(
    device: str, dtype: str | None = None, backend: str | None = None, preferred: str | None = None
) -> Precision:
    """The backend and dtype to run with: the first of RULES that applies. Explicit choices are checked, left-out
    ones get a safe default.

    In order: what was asked for (dtype int8 alone means onnx int8; dtype fp32 alone means torch fp32, the
    reference, or ONNX Runtime fp32 without torch: the same maths); the checkpoint's pin (config.json
    `textclass_precision`, e.g. "onnx-fp32"); this machine's pin (TEXTCLASS_PRECISION, same syntax; a default, so
    it may fall back); torch bf16 on a GPU; torch fp32 without onnxruntime; else the CPU's default (cpu.default_mode:
    per-row int8 where the instruction set runs it faster than fp32 within the accuracy contract, near ties scored
    again in fp32; else ONNX Runtime fp32). Pins apply on CPU only; a bf16 pin on a CPU that would emulate bf16
    (several times slower than fp32) is skipped with a warning, and bf16 asked for by name there runs with one.
    """
    request = Request(device, _dtype_name(dtype), _backend_name(backend), preferred,
                      importlib.util.find_spec("onnxruntime") is not None)  # fmt: skip
    for rule in RULES:
        choice = rule(request)
        if choice is not None:
            return choice
    raise AssertionError("the CPU default rule always applies")  # pragma: no cover


def _dtype_name(dtype: str | None) -> str | None:
    if dtype in (None, "auto"):
        return None
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(sorted(DTYPES))}; got {dtype!r}")
    return DTYPES[dtype]


def _backend_name(backend: str | None) -> str | None:
    if backend in (None, "auto"):
        return None
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)} (or auto); got {backend!r}")
    return backend


def asked_for(request: Request) -> Precision | None:
    if request.backend is None and request.dtype is None:
        return None
    asked = ", ".join(f"{key}={value}" for key, value in (("backend", request.backend), ("dtype", request.dtype))
                      if value)  # fmt: skip
    dtype, gpu = request.dtype, request.gpu
    if dtype == "bfloat16" and not gpu and installed("torch") and (slow := emulated_bf16()):  # else: no torch at all
        warnings.warn(f"textclass: {slow}; leave dtype out for this CPU's fast mode ({default_mode().dtype}) or "
                      "pass dtype='fp32'", stacklevel=4)  # fmt: skip
    return _resolve(request, request.backend, dtype, required=True, reason=f"asked for: {asked}", rule=ASKED)


def checkpoint_pin(request: Request) -> Precision | None:
    return _pin(request, "config.json: textclass_precision", request.preferred, CHECKPOINT_PIN)


def machine_pin(request: Request) -> Precision | None:
    return _pin(request, PRECISION_ENV, os.environ.get(PRECISION_ENV), MACHINE_PIN)


def gpu_default(request: Request) -> Precision | None:
    return Precision("torch", "bfloat16", reason="GPU default", rule=GPU_DEFAULT) if request.gpu else None


def no_onnxruntime(request: Request) -> Precision | None:
    if request.onnx_available:
        return None
    return Precision("torch", "float32", reason="onnxruntime is not installed", rule=NO_ONNXRUNTIME)


def cpu_default(request: Request) -> Precision | None:
    choice = default_mode()
    return Precision(choice.backend, choice.dtype, required=False, reason=choice.reason,
                     rescore=choice.dtype == "int8", rule=CPU_DEFAULT)  # fmt: skip


RULES = (asked_for, checkpoint_pin, machine_pin, gpu_default, no_onnxruntime, cpu_default)


def _pin(request: Request, source: str, pin: str | None, rule: str) -> Precision | None:
    """A pinned BACKEND-DTYPE, on CPU with onnxruntime; None where it does not apply, is malformed (warned) or
    would emulate bf16 (warned). A pinned onnx-int8 is the mode `textclass check` measured: near ties rescored.
    The checkpoint's pin is required; the machine's is a default, which may fall back like one."""
    if not pin or request.gpu or not request.onnx_available:
        return None
    pinned_backend, _, pinned_dtype = pin.partition("-")
    if pinned_backend not in BACKENDS or pinned_dtype not in DTYPES:
        log.warning("textclass: ignoring %s=%r: expected BACKEND-DTYPE, e.g. onnx-fp32 or onnx-int8", source, pin)
        return None
    reason = f"{source}={pin}"
    if DTYPES[pinned_dtype] == "bfloat16" and (slow := emulated_bf16()):
        log.warning("textclass: %s, but %s; running this CPU's default instead", reason, slow)
        return None
    return _resolve(request, pinned_backend, DTYPES[pinned_dtype], required=rule == CHECKPOINT_PIN, reason=reason,
                    rule=rule, rescore=True)  # fmt: skip


def _resolve(
    request: Request, backend: str | None, dtype: str | None, required: bool, reason: str, rule: str,
    rescore: bool = False,
) -> Precision:  # fmt: skip
    """A backend and dtype (either may be None: the other decides it), checked against the device. `rescore`:
    an onnx int8 result rescores its near ties."""
    gpu = request.gpu
    if backend is None:
        onnx_dtypes = ("int8", "float32") if not installed("torch") else ("int8",)
        backend = "onnx" if not gpu and dtype in onnx_dtypes and request.onnx_available else "torch"
    if backend == "onnx":
        if gpu:
            raise InputError(f"the onnx backend runs on CPU only; use backend='torch' for device {request.device!r}")
        if dtype not in (None, "float32", "int8"):
            raise InputError(f"the onnx backend runs fp32 or int8, not {dtype}; use backend='torch' for it")
        dtype = dtype or "float32"
        return Precision("onnx", dtype, required, reason, rescore=rescore and dtype == "int8", rule=rule)
    if dtype == "int8" and gpu:
        raise InputError("torch int8 (dynamic quantization) runs on CPU only; use bf16 or fp16 on a GPU")
    return Precision("torch", dtype or ("bfloat16" if gpu else "float32"), reason=reason, rule=rule)
