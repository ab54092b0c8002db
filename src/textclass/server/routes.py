"""The model routes, registered once per served model: at the root for the default model and under
/models/{name}/ for each one, all with the same bodies and answers. Another protocol's routes follow the same
pattern: `fleet.get(name)` for the model, its `infer` for model work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from textclass.server import answers
from textclass.server.errors import ApiError, documented, error_body
from textclass.server.explaining import explain_answer
from textclass.server.fastpath import render
from textclass.server.fleet import MODELS_PREFIX, Fleet
from textclass.server.schemas import (
    ClassifyRequest,
    DecodeRequest,
    ExplainRequest,
    Explanation,
    LabelScore,
    PredictRequest,
    Rank,
    RerankRequest,
    SimpleToken,
    TokenizeRequest,
)
from textclass.server.served import ServedModel

# What each route can answer besides 200 (401 only when the server has an API key).
TOKENIZER_ERRORS = documented(400, 401, 413, 422)
ERRORS = documented(400, 401, 413, 422, 429, 500, 503)  # the routes that run the model
# A request the served model cannot do (TEI answers /rerank on a classifier so): rerank, zero-shot; integrated
# gradients without torch.
TASK_ERRORS = documented(400, 401, 413, 422, 424, 429, 500, 503)
# Hot routes answered by the fast path (fastpath.py): route path suffix -> (request model, answer function).
FAST: dict[str, tuple[type, Callable[[ServedModel, Any], Any]]] = {
    "/": (ClassifyRequest, answers.classify_answer),
    "/predict": (PredictRequest, answers.predict_answer),
    "/rerank": (RerankRequest, answers.rerank_answer),
}


def add_model_routes(app: FastAPI, model: ServedModel, prefix: str) -> None:
    """POST /, /predict, /rerank, /explain, /tokenize, /decode for `model`, under `prefix` ("" or /models/NAME)."""
    tags = [f"model {model.name}"] if prefix else ["default model"]
    root = prefix or "/"

    # FastAPI documents these routes; FastPath (fastpath.py) answers the first three with the same functions.
    async def classify(body: ClassifyRequest) -> Response:
        """What `huggingface_hub.InferenceClient(base_url).text_classification(...)` sends and parses: a list of
        ranked labels per text. With `parameters.candidate_labels`, zero-shot classification with an NLI model as
        `zero_shot_classification(text, candidate_labels)` expects it: [{label, score}] for one text."""
        return answer(*await answers.classify_answer(model, body))

    async def predict(body: PredictRequest) -> Response:
        """TEI's /predict: every label, sorted by score; a flat list for one input, a list per input for a batch."""
        return answer(*await answers.predict_answer(model, body))

    async def rerank(body: RerankRequest) -> Response:
        """TEI's /rerank with a one-output cross-encoder: [{index, score[, text]}] sorted by score, best first."""
        return answer(*await answers.rerank_answer(model, body))

    async def explain(body: ExplainRequest) -> Response:
        """How much each token and word pushes a label's score: {label, score, tokens, words} for one text, a list
        for a list (at most 8 texts, see /info). Occlusion runs in the shared batches; integrated gradients (torch)
        in a worker thread."""
        started = time.perf_counter()
        return answer(await explain_answer(model, body), answers.timing(started))

    async def tokenize(body: TokenizeRequest) -> Response:
        """TEI's /tokenize: tokens with ids, text, special flag and character offsets (not truncated)."""
        return JSONResponse(await answers.tokenize_answer(model, body))

    async def decode(body: DecodeRequest) -> Response:
        """TEI's /decode: ids (one list, or a list of lists) back to text."""
        return JSONResponse(answers.decode_answer(model, body))

    add = app.add_api_route
    add(root, classify, methods=["POST"], response_model=list[list[LabelScore]] | list[LabelScore],
        responses=TASK_ERRORS, summary="InferenceClient classify and zero-shot", tags=tags)  # fmt: skip
    if prefix:  # InferenceClient(base_url=".../models/NAME/") posts to the slash too
        add(f"{prefix}/", classify, methods=["POST"], include_in_schema=False)
    add(f"{prefix}/predict", predict, methods=["POST"], response_model=list[LabelScore] | list[list[LabelScore]],
        responses=ERRORS, summary="Predict", tags=tags)  # fmt: skip
    add(f"{prefix}/rerank", rerank, methods=["POST"], response_model=list[Rank], responses=TASK_ERRORS,
        summary="Rerank", tags=tags)  # fmt: skip
    add(f"{prefix}/explain", explain, methods=["POST"], response_model=Explanation | list[Explanation],
        responses=TASK_ERRORS, summary="Explain", tags=tags)  # fmt: skip
    add(f"{prefix}/tokenize", tokenize, methods=["POST"], response_model=list[list[SimpleToken]],
        responses=TOKENIZER_ERRORS, summary="Tokenize", tags=tags)  # fmt: skip
    add(f"{prefix}/decode", decode, methods=["POST"], response_model=list[str], responses=TOKENIZER_ERRORS,
        summary="Decode", tags=tags)  # fmt: skip


def add_fleet_routes(app: FastAPI, fleet: Fleet) -> None:
    """The default model at the root, and every model under /models/NAME/."""
    add_model_routes(app, fleet.default, "")
    for model in fleet:
        add_model_routes(app, model, f"{MODELS_PREFIX}{model.name}")



def unknown_model(fleet: Fleet) -> Callable[[str], str | None]:
    """For the 404 handler: the message for a path under /models/ whose name is not served (None otherwise)."""

    def message(path: str) -> str | None:
        if not path.startswith(MODELS_PREFIX):
            return None
        name = path[len(MODELS_PREFIX):].split("/", 1)[0]
        if name in fleet.names:
            return None
        try:
            fleet.get(name)
        except ApiError as exc:
            return exc.message
        return None

    return message


def fast_routes(app: FastAPI, fleet: Fleet) -> dict[str, tuple[type, Callable[[Any], Any], Any]]:
    """FastPath's table: full path -> (request model, answer function bound to its model, the declared route)."""
    declared = {route.path: route for route in app.routes if "POST" in getattr(route, "methods", ())}
    table = {}
    for prefix, model in [("", fleet.default)] + [(f"{MODELS_PREFIX}{m.name}", m) for m in fleet]:
        for suffix, (request_model, function) in FAST.items():
            for path in {prefix + suffix, (prefix + suffix).rstrip("/") or "/"}:
                table[path] = (request_model, _bound(function, model), declared[path])
    return table


def _bound(function: Callable[[ServedModel, Any], Any], model: ServedModel) -> Callable[[Any], Any]:
    async def handler(body: Any) -> Any:
        return await function(model, body)

    return handler


def answer(content: Any, headers: dict[str, str]) -> Response:
    return Response(render(content), headers=headers, media_type="application/json")


def not_ready(message: str) -> Response:
    return Response(error_body(message, 503), 503, media_type="application/json")
