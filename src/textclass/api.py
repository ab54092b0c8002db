"""Deprecated import path, kept for one release: `Classifier` lives in textclass.classifier (see CHANGELOG.md).

Import it as `from textclass import Classifier`.
"""

from textclass.classifier import DEFAULT_MAX_BATCH_TOKENS, Classifier
from textclass.tasks.inputs import normalise_inputs

__all__ = ["DEFAULT_MAX_BATCH_TOKENS", "Classifier", "normalise_inputs"]
