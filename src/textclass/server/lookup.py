"""A served model as the protocol modules (cohere.py, oip.py) see it, and finding one by the name a client sends.

`ProtocolModel` is all they use of a model: its classifier, its admission and shared batches (`infer`), /predict's
scoring (`scored`), tokenizing (`encode`), its prediction counts and health. The server's own per-model object
(served.ServedModel, one per name in fleet.Fleet) provides these, so the protocols reuse what the TEI routes do
instead of a second path to the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from textclass.checkpoint.tokenizer import Encoded, TextInput
from textclass.classifier import Classifier
from textclass.server.errors import ApiError
from textclass.server.label_metrics import LabelCounts
from textclass.server.schemas import LongTextOptions

Scored = tuple[np.ndarray, "list[int] | None"]  # (inputs, labels) scores, and windows per input with long_text chunk


class ProtocolModel(Protocol):
    name: str  # its name among several served models
    model_id: str  # what /info calls it: with one model served, OIP's {name}
    clf: Classifier
    predictions: LabelCounts

    @property
    def healthy(self) -> bool: ...  # loaded, warmed up, not stopping

    async def infer(
        self, items: Sequence[TextInput], truncate: bool, side: str, encoded: Sequence[Encoded] | None = None
    ) -> np.ndarray: ...  # (inputs, labels) logits in the batches shared with every request (429, 500, 503)

    async def encode(self, items: Sequence[TextInput], truncate: bool, side: str) -> list[Encoded]: ...

    async def scored(
        self, items: list[TextInput], truncate: bool, side: str, function: str, options: LongTextOptions
    ) -> Scored: ...  # /predict's scores, counted in `predictions`


class ServedModels:
    """The models one server serves, for the protocols: by name, as each protocol names them."""

    def __init__(self, models: Sequence[ProtocolModel]):
        self.models = list(models)
        self.by_name = {model.name: model for model in self.models}

    @property
    def names(self) -> list[str]:
        """What OIP's {name} may be: with one model, its model_id (and its name, if another); else the names."""
        if len(self.models) == 1:
            return list(dict.fromkeys([self.models[0].model_id, self.models[0].name]))
        return list(self.by_name)

    def find(self, name: str) -> ProtocolModel:
        """OIP's model of that name, else a 404 naming the served ones."""
        found = self.by_name.get(name)
        if found is None and len(self.models) == 1 and name == self.models[0].model_id:
            found = self.models[0]
        if found is None:
            raise ApiError(404, f"unknown model {name!r}; this server serves {self._listing()}")
        return found

    def pick(self, name: str | None) -> ProtocolModel:
        """The model a request names in a `model` field. With one model served, any name (or none) is that model:
        clients such as Cohere's require the field and send their own model ids."""
        if len(self.models) == 1:
            return self.models[0]
        if name is None:
            raise ApiError(422, f"model is required: this server serves {self._listing()}")
        return self.find(name)

    def _listing(self) -> str:
        return ", ".join(repr(name) for name in self.names)
