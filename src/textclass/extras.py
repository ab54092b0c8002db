"""Optional dependencies: whether one is installed, and the one-line error that names the extra bringing it.

The core install (`pip install textclass`) classifies, serves, batch-scores and inspects safetensors and
tf_model.h5 checkpoints on ONNX Runtime. PyTorch comes with the `torch` extra (torch dtypes and backend, GPUs,
pytorch_model.bin, the torch exporter for families without a torch-free ONNX builder) and the `train` extra.
"""

from __future__ import annotations

import importlib.util

from textclass.errors import TextclassError


class MissingExtra(TextclassError):
    """Something asked for needs an optional dependency that is not installed."""


def installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (importing torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def require_torch(what: str, extra: str = "torch") -> None:
    """Raise MissingExtra, naming what needed torch and the extra to install, when torch is not installed."""
    if not installed("torch"):
        raise MissingExtra(f"{what} needs PyTorch, which is not installed: pip install 'textclass[{extra}]'")
