"""This CPU's instruction set, read from its feature flags (never from its vendor or model name), and the mode
it runs fastest within the accuracy contract (contract.py).

Flags come from /proc/cpuinfo (Linux; inside a VM they are what the hypervisor passes through, which is what
the kernels can use), else from numpy's own CPU dispatch table (other systems). What they decide (the measurements
are in docs/performance.md, "The CPU default and its accuracy contract"; ../shared/RECIPES.md lists the CPUs):
- int8 dot products summed in int32 (VNNI: avx512_vnni, avx_vnni; AMX: amx_int8): per-row int8 (quantize.py)
  on MLAS's fast uint8 × int8 kernel, 8-bit weights; near ties scored again in fp32.
- AVX2 + FMA without VNNI: the same kernel with 7-bit weights (at 8 bits its int16 pair sums overflow here); near
  ties scored again in fp32, which keeps the contract with the coarser weights.
- anything else (no AVX2, or not x86): ONNX Runtime fp32, exact; per-row int8 was not measured there.
Native bf16 (avx512_bf16, amx_bf16) makes torch bf16 worth asking for; without it torch emulates bf16, several
times slower than fp32, so bf16 is never picked there and asking for it by name warns.

TEXTCLASS_CPU=avx2 makes a machine with AVX-512, VNNI or AMX choose as an AVX2-only CPU would (mode, int8 format,
cost): to build the AVX2 format, or, under tools/avx2-view (which hides the same flags from CPUID, so that ONNX
Runtime and torch pick their AVX2 kernels too), to run and time the AVX2 path on any such machine.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path

from textclass.errors import InputError

# numpy's names for the flags we read, on systems without /proc/cpuinfo.
_NUMPY_FLAGS = {"AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni",
                "AVX512BF16": "avx512_bf16"}  # fmt: skip
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8·s8 products summed straight into int32
AMX_FLAGS = ("amx_int8",)  # matrix tiles: int8 products several times VNNI's
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_ENV = "TEXTCLASS_CPU"  # "avx2": choose as an AVX2-only CPU would
# Flags an AVX2-only CPU lacks (what tools/avx2_view.c hides from CPUID), by /proc/cpuinfo's name or its prefix.
_ABOVE_AVX2 = ("avx512", "amx_", "avx_vnni", "avx_ifma", "avx_ne_convert", "avx10")


@dataclass(frozen=True)
class CpuFeatures:
    machine: str  # platform.machine(): x86_64, AMD64, aarch64, arm64...
    flags: frozenset[str]
    name: str = ""  # the model name, for messages only
    view: str = ""  # "avx2" under TEXTCLASS_CPU=avx2: flags above AVX2 dropped

    @property
    def x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "x64")

    @property
    def int8_dot(self) -> bool:
        return self.x86 and any(flag in self.flags for flag in INT8_DOT_FLAGS)

    @property
    def avx2(self) -> bool:
        return self.x86 and {"avx2", "fma"} <= self.flags

    @property
    def amx(self) -> bool:
        return self.x86 and any(flag in self.flags for flag in AMX_FLAGS)

    @property
    def native_bf16(self) -> bool:
        return self.x86 and any(flag in self.flags for flag in BF16_FLAGS)

    @property
    def kind(self) -> str:
        """The instruction set that decides the mode: "vnni", "avx2" or "other"."""
        return "vnni" if self.int8_dot else "avx2" if self.avx2 else "other"

    def describe(self) -> str:
        """The flags that decided, e.g. "avx2, fma; no VNNI, no native bf16"."""
        have = [flag for flag in ("avx2", "fma", *INT8_DOT_FLAGS, *BF16_FLAGS) if flag in self.flags]
        missing = [label for label, present in (("VNNI", self.int8_dot), ("native bf16", self.native_bf16))
                   if not present]  # fmt: skip
        text = ", ".join(have) or f"no AVX2 ({self.machine})"
        text += "; no " + ", no ".join(missing) if missing else ""
        return text + (f"; viewed as {self.view.upper()} ({CPU_ENV}={self.view})" if self.view else "")


@functools.lru_cache(maxsize=1)
def detect() -> CpuFeatures:
    """This machine's CPU features, read once per process."""
    machine = platform.machine()
    try:
        flags, name = _proc_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        flags, name = _numpy_flags(), platform.processor()
    features = CpuFeatures(machine, frozenset(flags), name)
    asked = os.environ.get(CPU_ENV, "")
    view = asked.strip().lower()
    if not view:
        return features
    if view != "avx2":
        raise InputError(f"{CPU_ENV}={asked!r} is not a CPU view: use avx2 (choose as an AVX2-only CPU would), "
                         "or unset it")
    if not features.avx2:
        raise InputError(f"{CPU_ENV}={asked!r}, but this CPU has no AVX2 ({features.describe()}): unset it")
    return replace(features, flags=frozenset(flag for flag in flags if not flag.startswith(_ABOVE_AVX2)), view=view)


def _proc_cpuinfo(text: str) -> tuple[set[str], str]:
    """Flags and model name of the first processor listed (all cores of a machine have the same here)."""
    flags: set[str] = set()
    name = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:  # x86 / ARM
            flags = set(value.split())
        elif key == "model name" and not name:
            name = value.strip()
    return flags, name


def _numpy_flags() -> set[str]:
    try:
        import numpy as np

        features = np._core._multiarray_umath.__cpu_features__  # private, stable since numpy 1.20 (as np.core)
    except (AttributeError, ImportError):
        return set()
    return {ours for theirs, ours in _NUMPY_FLAGS.items() if features.get(theirs)}


@dataclass(frozen=True)
class Choice:
    backend: str
    dtype: str
    reason: str


def default_mode(cpu: CpuFeatures | None = None) -> Choice:
    """The CPU default when nobody asked for a mode: the fastest one that keeps the accuracy contract here."""
    cpu = cpu or detect()
    if cpu.kind == "vnni":
        return Choice("onnx", "int8", f"CPU default ({cpu.describe()}): per-row int8, uint8 x int8 summed in int32; "
                                      "near ties scored again in fp32")  # fmt: skip
    if cpu.kind == "avx2":
        return Choice("onnx", "int8", f"CPU default ({cpu.describe()}): per-row int8, uint8 x int8 with 7-bit "
                                      "weights (8-bit would overflow int16 sums without VNNI); near ties scored "
                                      "again in fp32")  # fmt: skip
    return Choice("onnx", "float32", f"CPU default ({cpu.describe()}): exact fp32; per-row int8 is not measured "
                                     "faster on this CPU")  # fmt: skip


# What per-row int8 costs against exact fp32 on each kind of CPU (time a text, the same texts), set a little above
# what was measured (docs/performance.md: DistilBERT and MiniLM shapes, 2 threads) so that the per-model choice
# (load.py: does rescoring pay?) errs towards exact fp32.
INT8_COST = {"vnni": 0.45, "avx2": 0.7}


def int8_cost(cpu: CpuFeatures | None = None) -> float:
    """Per-row int8's time per text as a share of exact fp32's on this CPU (1.0 where int8 is not the default)."""
    return INT8_COST.get((cpu or detect()).kind, 1.0)


# Padded tokens per forward pass on CPU (rows × longest). 1024 on AVX2 (beat 2048 by 0-10%; 512 no faster). With
# AMX the int8 products shrink to a third of an int8 batch's time and the elementwise operators between them
# (memory-bound) lead: batches whose activations stay nearer the core win there, fp32 too. Measured on a 2-core
# Xeon with AMX (docs/performance.md, 600 SST-2 dev sentences, texts/s by budget 128/256/384/512/1024): DistilBERT
# shape default 522/527/498/465/390, MiniLM 507/543/523/515/480; ONNX Runtime fp32 at 256/512/1024: 138/132/129
# and 502/508/456. Measured again with the padding-aware plan (runtime/batching.py, 872 SST-5 train sentences,
# 192/256/384/512/1024): DistilBERT shape 515/518/498/484/456, MiniLM 519/520/528/525/516: 256 still leads. The AVX2
# figures predate that plan (which gained 13-17% at 1024 on this Xeon); not measured again on AVX2.
CPU_BATCH_TOKENS = {"amx": 256, "other": 1024}


def cpu_batch_tokens(cpu: CpuFeatures | None = None) -> int:
    """The CPU token budget of a forward pass on this CPU (a caller's max_batch_tokens overrides it)."""
    return CPU_BATCH_TOKENS["amx" if (cpu or detect()).amx else "other"]


def emulated_bf16(cpu: CpuFeatures | None = None) -> str:
    """Why bf16 would be slow on this CPU, or "" when it has native bf16."""
    cpu = cpu or detect()
    if cpu.native_bf16:
        return ""
    return f"this CPU has no native bf16 ({cpu.describe()}): torch emulates it, about 6x slower than fp32"


def int8_plan(cpu: CpuFeatures | None = None) -> str:
    """quantize.py's plan for this CPU's int8 kernels: "vnni" (8-bit weights) or "avx2" (no int16 overflow).

    Anything that is not known to sum in int32 gets the plan that cannot overflow."""
    return "vnni" if (cpu or detect()).int8_dot else "avx2"
