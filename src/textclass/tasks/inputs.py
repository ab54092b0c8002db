"""What the classifier and its tasks accept as input, checked once: texts, pairs, lists of strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textclass.checkpoint.tokenizer import TextInput
from textclass.errors import InputError


def strings(values: Any, name: str, what: str) -> list[str]:
    """A non-empty list of strings, or an InputError naming the argument and what it should hold."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InputError(f"{name} must be a list of strings, got {type(values).__name__}")
    if not values:
        raise InputError(f"{name} must not be empty; give at least one {what}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(f"{name}[{index}] is {type(value).__name__}; expected a string")
    return list(values)


def normalise_inputs(inputs: Any) -> tuple[list[TextInput], bool]:
    """Texts and pairs as the tokenizer takes them, and whether the caller passed a single input.

    Accepted like the pipeline: a str, a {"text", "text_pair"} dict, a (text, pair) tuple, or a list of those.
    """
    single = isinstance(inputs, (str, dict, tuple))
    items = [inputs] if single else inputs
    if not isinstance(items, (list, np.ndarray)) and not hasattr(items, "__iter__"):
        raise InputError(f"inputs must be a string or a list of strings, got {type(inputs).__name__}")
    out: list[TextInput] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            pair = item.get("text_pair")
            out.append(item["text"] if pair is None else (item["text"], _str(pair, index)))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append((_str(item[0], index), _str(item[1], index)))
        else:
            raise InputError(
                f"input {index} is {type(item).__name__}; expected a string, a (text, text_pair) pair "
                'or {"text": ..., "text_pair": ...}'
            )
    return out, single


def require_text(items: Sequence[TextInput], task: str = "classify") -> None:
    """The one rule for empty text: an empty or whitespace-only text (either text of a pair) is an InputError
    naming its index. A blank text carries nothing to classify; scoring it answers with the model's prior."""
    for index, item in enumerate(items):
        parts = [(item, "")] if isinstance(item, str) else list(zip(item, ("", "'s text_pair")))
        for text, what in parts:
            if not text.strip():
                raise InputError(f"input {index}{what} is empty (or only whitespace); give it text to {task}")


def _str(value: Any, index: int) -> str:
    if not isinstance(value, str):
        raise InputError(f"input {index}: text pairs must hold two strings, got {type(value).__name__}")
    return value
