"""The models one server serves, by name: the one place a route (ours, or another protocol's) finds its model.

`fleet.get(name)` is a served model or a 404 listing the names; `fleet.default` is the first, also served at the
root so that TEI and InferenceClient clients pointed at the server keep working. Each model has its own batcher,
token budget, admission limit and metrics labels, so one model's 429 or failure never reaches another's requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from textclass.classifier import Classifier
from textclass.server.errors import ApiError
from textclass.server.label_metrics import LabelCounts, PredictionCollector
from textclass.server.metrics import ServerMetrics
from textclass.server.served import Limits, ServedModel
from textclass.server.settings import MODEL_NAME, ServerSettings, model_name

MODELS_PREFIX = "/models/"
OIP_MODELS_PREFIX = "/v2/models/"  # KServe's Open Inference Protocol names the model in its path too (oip.py)
RERANK_PROTOCOL_PATHS = ("/v1/rerank", "/v2/rerank")  # Cohere's and Jina's shapes (cohere.py)


class Fleet:
    def __init__(self, models: list[ServedModel]):
        if not models:
            raise ValueError("a server needs at least one model")
        self._models = {model.name: model for model in models}
        self.default = models[0]

    @classmethod
    def build(cls, classifiers: Classifier | Mapping[str, Classifier], settings: ServerSettings,
              metrics: ServerMetrics) -> Fleet:  # fmt: skip
        """One classifier (named after --model-id or its folder) or several by name, each with the settings' limits."""
        limits = Limits(settings.max_client_batch_size, settings.max_request_tokens, settings.max_concurrent_requests)
        if isinstance(classifiers, Classifier):
            model_id = settings.model_id or model_name(classifiers.folder)  # never the server's path: clients see it
            named = {segment_name(model_id): (model_id, classifiers)}
        else:
            named = {name: (name, clf) for name, clf in classifiers.items()}
        counts = PredictionCollector(metrics.registry)  # per model and label, rendered when /metrics is scraped
        return cls([
            ServedModel(name, model_id, clf, limits, metrics.for_model(name), counts.add(LabelCounts(name, clf)))
            for name, (model_id, clf) in named.items()
        ])

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str | None) -> ServedModel:
        """The model of that name (None: the default), else a 404 that lists the names."""
        if name is None:
            return self.default
        model = self._models.get(name)
        if model is None:
            raise ApiError(404, f"no model named {name!r}; this server serves {', '.join(map(repr, self.names))} "
                                f"(GET /info lists them)")  # fmt: skip
        return model

    def model_of_path(self, path: str) -> str:
        """The model a request path is about, for metrics labels: /models/NAME/... is NAME, OIP's
        /v2/models/NAME[/ready|/infer] is NAME (with one model, also its model_id), a model route at the root is the
        default model, and so are the Cohere/Jina rerank routes when one model is served (with several, their body
        names the model: no label); anything else (health, metrics, docs, an unknown name) no model."""
        if path.startswith(MODELS_PREFIX):
            name = path[len(MODELS_PREFIX):].split("/", 1)[0]
            return name if name in self._models else ""
        if path.startswith(OIP_MODELS_PREFIX):
            name = path[len(OIP_MODELS_PREFIX):]
            name = name[: -len("/infer")] if name.endswith(("/infer", "/ready")) else name
            if name in self._models:
                return name
            return self.default.name if len(self) == 1 and name == self.default.model_id else ""
        if path in ROOT_MODEL_PATHS or (len(self) == 1 and path in RERANK_PROTOCOL_PATHS):
            return self.default.name
        return ""


# The routes that run a model (routes.py registers each at the root, for the default model, and per model).
ROOT_MODEL_PATHS = frozenset({"/", "/predict", "/rerank", "/explain", "/tokenize", "/decode"})


def segment_name(model_id: str) -> str:
    """A name usable as /models/{name}/ for a model known by a hub id or folder name ("acme/reviews" -> "reviews")."""
    last = model_id.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.")[:64] or "model"
    return name if MODEL_NAME.match(name) else "model"
