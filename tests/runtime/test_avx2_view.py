"""Running the AVX2 path on a CPU with AVX-512, VNNI or AMX: TEXTCLASS_CPU=avx2 (textclass chooses as an AVX2-only
CPU would) and tools/avx2-view (CPUID hides those flags, so ONNX Runtime picks its AVX2 kernels too). CI runs the
int8 tests again under the view (.ci/run)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from textclass.errors import InputError
from textclass.onnx import quantize
from textclass.runtime import cpu

ROOT = Path(__file__).resolve().parents[2]
VIEW = ROOT / "tools" / "avx2-view"


@pytest.fixture
def fresh_detect(monkeypatch):
    """cpu.detect() reads the flags once per process: read them again under this test's environment, and again
    after it."""
    cpu.detect.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    cpu.detect.cache_clear()


def test_textclass_cpu_avx2_chooses_as_an_avx2_cpu(fresh_detect):
    fresh_detect.setenv(cpu.CPU_ENV, "AVX2")
    if not cpu.CpuFeatures(platform.machine(), frozenset(_flags())).avx2:  # ARM, x86 before AVX2
        with pytest.raises(InputError, match=r"^TEXTCLASS_CPU='AVX2', but this CPU has no AVX2 \("):
            cpu.detect()
        return
    features = cpu.detect()
    assert features.kind == "avx2" and not features.int8_dot and not features.amx and not features.native_bf16
    assert not any(flag.startswith(("avx512", "amx")) for flag in features.flags)
    assert cpu.int8_plan() == "avx2" and quantize.PLANS["avx2"] == "a8w7"
    assert features.describe().endswith("viewed as AVX2 (TEXTCLASS_CPU=avx2)")
    choice = cpu.default_mode()
    assert (choice.backend, choice.dtype) == ("onnx", "int8") and "7-bit weights" in choice.reason
    assert "viewed as AVX2" in choice.reason  # inspect, /info and -v say the choice was made under the view


def test_a_bad_cpu_view_is_a_one_line_error(fresh_detect):
    fresh_detect.setenv(cpu.CPU_ENV, "avx512")
    with pytest.raises(InputError, match=r"^TEXTCLASS_CPU='avx512' is not a CPU view: use avx2") as caught:
        cpu.detect()
    assert "\n" not in str(caught.value)


def _flags() -> set[str]:
    try:
        return cpu._proc_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))[0]
    except OSError:
        return set()


needs_view = pytest.mark.skipif(
    platform.machine() != "x86_64" or "cpuid_fault" not in _flags() or shutil.which(os.environ.get("CC", "cc")) is None,
    reason="tools/avx2-view needs Linux on x86_64 with the cpuid_fault flag and a C compiler")  # fmt: skip

# A uint8 x int8 product whose pairs of products exceed int16: exact where the kernel sums in int32 (VNNI, AMX),
# saturated pair by pair (vpmaddubsw) by MLAS's AVX2 kernel. Which one ONNX Runtime ran shows in the answer.
PROBE = """
import json, numpy as np, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
weights = numpy_helper.from_array(np.full((64, 8), 127, np.int8), "B")
graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
                          [helper.make_tensor_value_info("A", TensorProto.UINT8, [2, 64])],
                          [helper.make_tensor_value_info("Y", TensorProto.INT32, [2, 8])], [weights])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
total = int(session.run(None, {"A": np.full((2, 64), 255, np.uint8)})[0][0, 0])
features = getattr(getattr(np, "_core", None) or np.core, "_multiarray_umath").__cpu_features__
from textclass.runtime.cpu import detect
print(json.dumps({"sum": total, "numpy_avx512f": bool(features.get("AVX512F")), "kind": detect().kind}))
"""
EXACT, SATURATED = 255 * 127 * 64, 32767 * 32


def _probe(*prefix: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != cpu.CPU_ENV}
    # (this suite may itself run under the view, as CI does: the native probe must not inherit it)
    env["LD_PRELOAD"] = ":".join(lib for lib in env.get("LD_PRELOAD", "").split(":") if "avx2_view" not in lib)
    done = subprocess.run([*prefix, sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_view
def test_the_view_makes_onnx_runtime_and_numpy_take_their_avx2_kernels():
    viewed = _probe(str(VIEW))
    assert viewed == {"sum": SATURATED, "numpy_avx512f": False, "kind": "avx2"}
    native = _probe()
    if native["kind"] == "vnni":  # this CPU sums in int32: the view changed the kernel, not the product
        assert native["sum"] == EXACT
    else:  # an AVX2-only CPU: nothing to hide, the same kernel
        assert native["sum"] == SATURATED


# SIGSEGV set to its default through glibc's signal() (which does not go through sigaction), then faulthandler's
# handler installed (through sigaction), then SIGSEGV blocked: each CPUID after that (numpy's and ONNX Runtime's
# first imports) must still be answered, with AVX-512 hidden; then a real crash must reach faulthandler.
CRASH = """
import ctypes, faulthandler, signal
ctypes.CDLL(None).signal(signal.SIGSEGV, ctypes.c_void_p(0))
faulthandler.disable()
faulthandler.enable()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGSEGV})
import numpy as np
import onnxruntime
features = getattr(getattr(np, "_core", None) or np.core, "_multiarray_umath").__cpu_features__
print("AVX512F", bool(features.get("AVX512F")), flush=True)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGSEGV})
ctypes.string_at(0)
"""


@needs_view
def test_cpuid_is_answered_whatever_the_program_does_with_sigsegv_and_crashes_still_reach_python():
    done = subprocess.run([str(VIEW), sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.stdout.strip() == "AVX512F False", done.stderr
    assert done.returncode != 0
    assert "Fatal Python error: Segmentation fault" in done.stderr
