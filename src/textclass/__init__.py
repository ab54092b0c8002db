"""textclass: Hugging Face text classifiers, fast, without importing transformers.

Imports are lazy so `textclass --help` and the CLI start without loading torch.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from textclass.classifier import Classifier
    from textclass.errors import TextclassError


def __getattr__(name: str):
    if name == "Classifier":
        from textclass.classifier import Classifier

        return Classifier
    if name in ("TextclassError", "CheckpointError", "InputError"):
        from textclass import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'textclass' has no attribute {name!r}")


__all__ = ["Classifier", "TextclassError", "__version__"]
