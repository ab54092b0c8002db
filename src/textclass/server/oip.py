"""KServe's Open Inference Protocol v2 (what KServe, Triton, Seldon and MLServer speak), for each served model.

GET /v2 (server metadata), /v2/health/live, /v2/health/ready, /v2/models/{name} (model metadata),
/v2/models/{name}/ready, and POST /v2/models/{name}/infer. `{name}` is a served model's name (/info's model_id).
A model takes `text` (BYTES [N]) and optionally `text_pair` (BYTES [N]) and gives `label` (BYTES [N], the top
label), `score` (FP32 [N], its score) and `scores` (FP32 [N, labels], every label's score in /info's label order):
the answers /predict gives for the same texts, through the same shared batches. Errors are the protocol's
{"error": "..."}: 400 for a request it cannot read (wrong datatype or shape, naming the input), 404 for an unknown
model, 413 past --max-client-batch-size. Bodies are read here, not by FastAPI, because the binary tensor
extension (oip_tensors.py) sends bytes after the JSON; the JSON form is documented in /openapi.json all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from textclass import __version__, postprocess
from textclass.server.errors import STATUSES, ApiError
from textclass.server.fastpath import render
from textclass.server.lookup import ProtocolModel, ServedModels
from textclass.server.oip_tensors import (
    HEADER,
    InferenceRequest,
    InferenceResponse,
    Inputs,
    Live,
    MetadataTensor,
    ModelMetadata,
    ModelReady,
    OipError,
    Ready,
    ServerMetadata,
    read_request,
    write_response,
)
from textclass.server.schemas import LongTextOptions

EXTENSIONS = ["binary_tensor_data", "classification"]
_DEFAULT_OPTIONS = LongTextOptions()  # texts past the limit are truncated, as /predict does by default


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": OipError, "description": STATUSES[status][1]} for status in statuses}


def oip_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(render({"error": message}), status, headers, media_type="application/json")


def add_oip_routes(app: FastAPI, models: ServedModels, max_texts: int) -> None:
    model = models.find

    def ready() -> bool:
        return all(served.healthy for served in models.models)

    @app.get("/v2", summary="OIP server metadata", response_model=ServerMetadata, responses=_errors(401))
    async def server_metadata() -> Response:
        """{name, version, extensions}: the binary tensor extension is spoken."""
        return Response(render({"name": "textclass", "version": __version__, "extensions": EXTENSIONS}),
                        media_type="application/json")  # fmt: skip

    @app.get("/v2/health/live", summary="OIP server live", response_model=Live)
    async def server_live() -> Response:
        """200 while the process answers (a Kubernetes livenessProbe)."""
        return Response(render({"live": True}), media_type="application/json")

    @app.get("/v2/health/ready", summary="OIP server ready", response_model=Ready,
             responses={503: {"model": Ready, "description": STATUSES[503][1]}})  # fmt: skip
    async def server_ready() -> Response:
        """200 once every model is loaded and warmed up; 503 before and while stopping (a readinessProbe)."""
        return Response(render({"ready": ready()}), 200 if ready() else 503, media_type="application/json")

    @app.get("/v2/models/{name:path}/ready", summary="OIP model ready", response_model=ModelReady,
             responses={**_errors(401, 404), 503: {"model": ModelReady, "description": STATUSES[503][1]}})  # fmt: skip
    async def model_ready(name: str) -> Response:
        """200 when this model can serve; 503 before it is warmed up and while stopping."""
        try:
            is_ready = model(name).healthy
        except ApiError as exc:
            return oip_error(exc.status, exc.message)
        return Response(render({"name": name, "ready": is_ready}), 200 if is_ready else 503,
                        media_type="application/json")  # fmt: skip

    @app.post(
        "/v2/models/{name:path}/infer",
        summary="OIP inference",
        response_model=InferenceResponse,
        responses={**_errors(400, 401, 404, 413, 429, 500, 503),
                   200: {"content": {"application/octet-stream": {}},
                         "description": "JSON, or with binary outputs the JSON header then the tensors' bytes"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}}}},
    )  # fmt: skip
    async def infer(name: str, request: Request) -> Response:
        """JSON tensors in, JSON tensors out: `text` [N] (and `text_pair` [N]) -> `label`, `score`, `scores`, the
        answer /predict gives. tritonclient's binary tensors work too (Inference-Header-Content-Length)."""
        try:
            served = model(name)
            body = await request.body()
            inputs = read_request(body, request.headers.get(HEADER), max_texts)
            content, headers = await answer(served, name, inputs)
        except ApiError as exc:
            return oip_error(exc.status, exc.message, exc.headers)
        return Response(content, 200, headers)

    @app.get("/v2/models/{name:path}", summary="OIP model metadata", response_model=ModelMetadata,
             responses=_errors(401, 404))  # fmt: skip
    async def model_metadata(name: str) -> Response:
        """{name, platform, inputs, outputs}: text (and text_pair) BYTES [-1] in; label BYTES [-1], score FP32
        [-1], scores FP32 [-1, labels] out."""
        try:
            served = model(name)
        except ApiError as exc:
            return oip_error(exc.status, exc.message)
        return Response(render(metadata(served, name)), media_type="application/json")


async def answer(served: ProtocolModel, name: str, inputs: Inputs) -> tuple[bytes, dict[str, str]]:
    """What /predict answers for these texts, as the tensors asked for."""
    clf, parameters = served.clf, inputs.parameters
    truncate = True if parameters.truncate is None else parameters.truncate
    side = (parameters.truncation_direction or "right").lower()
    function = "none" if parameters.raw_scores else \
        postprocess.default_function(clf.config.problem_type, len(clf.labels))  # fmt: skip
    items = inputs.texts if inputs.pairs is None else list(zip(inputs.texts, inputs.pairs))
    scores, _ = await served.scored(items, truncate, side, function, _DEFAULT_OPTIONS)  # (N, labels)
    top = scores.argmax(axis=1)  # the first best, as /predict's stable sort ranks it
    tensors = []
    for output in inputs.outputs:
        if output.classification is not None:  # Triton's extension: the best k, whichever output asked
            best = classification(scores, clf.labels, output.classification)
            tensors.append((output.name, "BYTES", best, output.binary))
        elif output.name == "label":
            tensors.append(("label", "BYTES", np.array([clf.labels[i] for i in top], dtype=object), output.binary))
        elif output.name == "score":
            tensors.append(("score", "FP32", scores[np.arange(len(scores)), top].astype(np.float32), output.binary))
        else:
            tensors.append(("scores", "FP32", scores.astype(np.float32), output.binary))
    return write_response(name, inputs.id, tensors)


def classification(scores: np.ndarray, labels: Sequence[str], k: int) -> np.ndarray:
    """Triton's classification extension: (N, min(k, labels)) strings "score:index:label", best first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties keep label order, as /predict ranks them
    rows = [[f"{row[i]:f}:{i}:{labels[i]}" for i in ranked] for row, ranked in zip(scores, order)]
    return np.array(rows, dtype=object).reshape(len(scores), order.shape[1])


def metadata(served: ProtocolModel, name: str) -> dict[str, Any]:
    def tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
        return MetadataTensor(name=name, datatype=datatype, shape=shape).model_dump()

    return {
        "name": name,
        "platform": "onnxruntime_onnx" if served.clf.engine.backend == "onnx" else "pytorch",
        "inputs": [tensor("text", "BYTES", [-1]), tensor("text_pair", "BYTES", [-1])],
        "outputs": [tensor("label", "BYTES", [-1]), tensor("score", "FP32", [-1]),
                    tensor("scores", "FP32", [-1, len(served.clf.labels)])],  # fmt: skip
    }


def openapi_with_oip(app: FastAPI, models: ServedModels, base: Callable[[], dict[str, Any]]) -> Callable[[], dict]:
    """/openapi.json with the inference request's schema (the route reads its body itself) and `{name}` limited
    to the served models' names."""
    done: list[bool] = []

    def openapi() -> dict[str, Any]:
        if not done:
            schema = base()
            request = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request.pop("$defs", {}))
            components["InferenceRequest"] = request
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/v2/models/{name}"):
                    for operation in operations.values():
                        for parameter in operation.get("parameters", []):
                            if parameter.get("name") == "name":
                                parameter["schema"] = {"type": "string", "enum": models.names}
            app.openapi_schema = schema
            done.append(True)
        return app.openapi_schema

    return openapi
