"""A served model as the protocol modules (cohere.py, oip.py) see it, and finding one by the name a client sends.

app.py builds one `Served` per model from its own functions (admission, shared batches, /predict's scoring), so
the protocols reuse what the TEI routes do instead of a second path to the model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from textclass.checkpoint.tokenizer import Encoded, TextInput
from textclass.classifier import Classifier
from textclass.server.errors import ApiError
from textclass.server.label_metrics import LabelCounts
from textclass.server.schemas import LongTextOptions


@dataclass(frozen=True)
class Served:
    name: str  # what clients call it: /info's model_id
    clf: Classifier
    counts: LabelCounts
    # (items, truncate, side, encoded=None) -> (inputs, labels) logits, in the batches shared with every request.
    classify: Callable[..., Awaitable[np.ndarray]]
    # (items, truncate, side) -> encoded rows (413 for a text over the limit with truncate off), off the loop if big.
    encode: Callable[[list[TextInput], bool, str], Awaitable[list[Encoded]]]
    # /predict's scoring: (items, truncate, side, function, long-text options) -> ((inputs, labels) scores, windows).
    scored: Callable[[list[TextInput], bool, str, str, LongTextOptions], Awaitable[tuple[np.ndarray, list | None]]]
    ready: Callable[[], bool]  # loaded, warmed up, not stopping


class ServedModels:
    """The models one server serves, by name (one today; several with --model NAME=DIR)."""

    def __init__(self, models: list[Served]):
        self.by_name = {model.name: model for model in models}

    @property
    def names(self) -> list[str]:
        return list(self.by_name)

    def get(self, name: str) -> Served | None:
        return self.by_name.get(name)

    def pick(self, name: str | None) -> Served:
        """The model a request names in a `model` field. With one model served, any name (or none) is that model:
        clients such as Cohere's require the field and send their own model ids."""
        if len(self.by_name) == 1:
            return next(iter(self.by_name.values()))
        if name is None:
            raise ApiError(422, f"model is required: this server serves {self._listing()}")
        found = self.by_name.get(name)
        if found is None:
            raise ApiError(404, f"no model named {name!r}: this server serves {self._listing()}")
        return found

    def _listing(self) -> str:
        return ", ".join(repr(name) for name in self.by_name)
