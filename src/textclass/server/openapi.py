"""/openapi.json that describes the models served, not a generic one.

The request models are static; what depends on a model is written into the schema here, per model:
- the labels /explain may target, the longest window long_text "chunk" takes (chunk_tokens) and the largest stride
  any window admits;
- the operations a model cannot do are left out: /rerank without a one-output cross-encoder (/v1 and /v2/rerank
  when no model served is one), and zero-shot's
  parameters on POST / without an NLI model (the routes still answer 424 there, as TEI does, but a client reading
  the schema is not told it can ask).
The default model's operations (the root and its own /models/NAME/) use the plain component names; every other
model gets its own copies, named `Component-NAME`.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from textclass.server.fleet import MODELS_PREFIX, RERANK_PROTOCOL_PATHS, ROOT_MODEL_PATHS, Fleet
from textclass.server.served import ServedModel

ZERO_SHOT_FIELDS = ("candidate_labels", "multi_label", "hypothesis_template")
REF = "#/components/schemas/"


def fleet_schema(app: FastAPI, fleet: Fleet) -> Any:
    """A replacement for app.openapi: FastAPI's schema, then each model's bounds, built once."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            originals, made = copy.deepcopy(components), set()
            if not any(model.can_rerank for model in fleet):  # Cohere's and Jina's shapes pick a model by name
                for path in RERANK_PROTOCOL_PATHS:
                    schema.get("paths", {}).pop(path, None)
            for path in list(schema.get("paths", {})):
                model = _model_of(path, fleet)
                if model is None:
                    continue
                if path.endswith("/rerank") and not model.can_rerank:
                    del schema["paths"][path]
                    continue
                suffix = "" if model is fleet.default else f"-{model.name}"
                for operation in schema["paths"][path].values():
                    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                    if "schema" in body:
                        body["schema"] = _bounded(body["schema"], model, suffix, originals, components, made)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _model_of(path: str, fleet: Fleet) -> ServedModel | None:
    if path.startswith(MODELS_PREFIX):
        name = path[len(MODELS_PREFIX):].split("/", 1)[0]
        return fleet.get(name) if name in fleet.names else None
    return fleet.default if path in ROOT_MODEL_PATHS else None


def _bounded(node: Any, model: ServedModel, suffix: str, originals: dict, components: dict, made: set) -> Any:
    """`node` with every $ref it reaches pointing at this model's copy of the component (each made once)."""
    if isinstance(node, list):
        return [_bounded(item, model, suffix, originals, components, made) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF):
        name = ref[len(REF):]
        own = name + suffix
        if own not in made:
            made.add(own)  # first, so that a reference looping back stops here
            component = _with_bounds(name, copy.deepcopy(originals[name]), model)
            components[own] = _bounded(component, model, suffix, originals, components, made)
        return {**node, "$ref": REF + own}
    return {key: _bounded(value, model, suffix, originals, components, made) for key, value in node.items()}


def _with_bounds(name: str, component: dict[str, Any], model: ServedModel) -> dict[str, Any]:
    properties = component.get("properties", {})
    target = properties.get("target") if name == "ExplainRequest" else None
    if target is not None:
        target["anyOf"] = [{"type": "string", "enum": list(model.clf.labels)}, {"type": "null"}]
    for field, maximum in (("chunk_tokens", model.window_limit), ("stride", model.max_stride)):
        for option in properties.get(field, {}).get("anyOf", []):
            if option.get("type") == "integer":
                option["maximum"] = maximum
    if name == "ClassifyParameters" and not model.can_zero_shot:
        for field in ZERO_SHOT_FIELDS:
            properties.pop(field, None)
    return component
