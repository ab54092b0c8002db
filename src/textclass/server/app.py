"""The HTTP app: the served models (fleet.py), their routes (routes.py), the service routes (health, info,
metrics, docs, ui) and the layers every request passes (Gatekeeper, Guard, FastPath). No model code here."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from textclass import __version__
from textclass.classifier import Classifier
from textclass.server import cohere, oip
from textclass.server.errors import add_error_handlers, documented
from textclass.server.fastpath import FastPath
from textclass.server.fleet import Fleet
from textclass.server.guard import Guard
from textclass.server.lookup import ServedModels
from textclass.server.metrics import ServerMetrics
from textclass.server.middleware import Gatekeeper
from textclass.server.openapi import fleet_schema
from textclass.server.routes import add_fleet_routes, answer, fast_routes, not_ready, unknown_model
from textclass.server.schemas import ClassifierModel, Info, ModelSummary
from textclass.server.served import ServedModel
from textclass.server.settings import ServerSettings
from textclass.server.threads import in_thread

log = logging.getLogger("textclass.server")
UI_PAGE = Path(__file__).with_name("ui.html")
# Swagger UI and ReDoc as files in an installed package (fastapi-offline), not a CDN: /docs works offline.
DOCS_ASSETS = resources.files("fastapi_offline") / "static"
# Above INLINE_TOKENIZE_CHARS the Rust tokenizer encodes a request's texts in its thread pool: one thread per CPU.
TOKENIZATION_WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def create_app(models: Classifier | Mapping[str, Classifier], settings: ServerSettings) -> FastAPI:
    """An app serving one classifier (named by --model-id or its folder) or several by name (the first also at
    the root)."""
    metrics = ServerMetrics()
    fleet = Fleet.build(models, settings, metrics)
    guard: list[Guard] = []  # the Guard instance, once Starlette builds the middleware stack

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started: list[ServedModel] = []
        try:
            for model in fleet:
                started.append(model)
                await model.start()
            yield
        finally:
            for model in started:
                model.ready = False
            # In-flight requests were answered before this (the Guard's drain); each batcher gets a bounded wait.
            await in_thread(lambda: [model.stop(timeout=5.0) for model in started])
            log.info(json.dumps({"event": "stopped"}))

    app = FastAPI(
        title="textclass", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Text classification with dynamic batching; TEI- and InferenceClient-compatible. "
        f"Models: {', '.join(fleet.names)} (the first also at the root; each under /models/NAME/).",
    )  # fmt: skip
    add_error_handlers(app, not_found=unknown_model(fleet))
    add_fleet_routes(app, fleet)
    app.state.fleet = fleet  # other route modules find the served models here

    def draining() -> bool:
        return bool(guard) and guard[0].draining

    @app.get("/health", responses=documented(503))
    async def health() -> Response:
        """200 once every model is loaded and ran a warm-up batch; 503 before, while stopping, or if a worker died."""
        sick = [model.name for model in fleet if not model.healthy]
        if not sick and not draining():
            return JSONResponse({"status": "ok"})
        return not_ready("the server is shutting down" if draining() else f"not ready: {', '.join(sick)}")

    @app.get("/models/{name}/health", responses=documented(404, 503), include_in_schema=len(fleet) > 1)
    async def model_health(name: str) -> Response:
        """200 when this model is ready (the others may not be)."""
        if fleet.get(name).healthy and not draining():
            return JSONResponse({"status": "ok"})
        return not_ready(f"model {name!r} is not ready")

    @app.get("/info", response_model=Info, responses=documented(401))
    async def info() -> Info:
        """The default model and the server's limits (TEI's Info, then ours), and every model served."""
        return model_info(fleet.default, fleet, settings)

    @app.get("/models/{name}/info", response_model=Info, responses=documented(401, 404))
    async def named_info(name: str) -> Info:
        """One model and its limits, as GET /info gives them for the default model."""
        return model_info(fleet.get(name), fleet, settings)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus exposition, labelled by model: requests, durations, queue, batches, inference time."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/ui", response_class=HTMLResponse)
    async def ui() -> HTMLResponse:
        """A playground page: type text, see every label's score as a bar, and the latency."""
        return HTMLResponse(UI_PAGE.read_text(encoding="utf-8"))

    add_docs(app)
    # The serving protocols: Cohere/Jina rerank (the `model` field picks one) and KServe's Open Inference Protocol.
    models = ServedModels(list(fleet))
    reranking = cohere.rerank_routes(models, settings.max_rerank_documents)
    cohere.declare(app, reranking, answer)
    oip.add_oip_routes(app, models, settings.max_client_batch_size)
    app.openapi = oip.openapi_with_oip(app, models, fleet_schema(app, fleet))
    declared = {route.path: route for route in app.routes if "POST" in getattr(route, "methods", ())}
    fast = {**fast_routes(app, fleet), **{path: (*pair, declared[path]) for path, pair in reranking.items()}}
    # Added last-to-first: the Gatekeeper is outermost (key, body size, metrics, access log), then the Guard
    # (deadline, drain, JSON 500), then the fast path.
    app.add_middleware(FastPath, routes=fast)
    app.add_middleware(_Remember, into=guard, request_timeout=settings.request_timeout,
                       graceful_timeout=settings.graceful_timeout)  # fmt: skip
    app.add_middleware(Gatekeeper, metrics=metrics, payload_limit=settings.payload_limit, api_key=settings.api_key,
                       model_of=fleet.model_of_path)  # fmt: skip
    app.state.guard = guard
    return app


class _Remember(Guard):
    """The Guard, keeping a reference where the app (health) and run.py (signals) can reach it."""

    def __init__(self, app: object, into: list[Guard], **kwargs: float):
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        into[:] = [self]


def add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc), their scripts served from the installed package."""
    app.mount("/docs/assets", StaticFiles(directory=str(DOCS_ASSETS)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="textclass - Swagger UI",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon.png")  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="textclass - ReDoc",
                              redoc_js_url="/docs/assets/redoc.standalone.js",
                              redoc_favicon_url="/docs/assets/favicon.png", with_google_fonts=False)  # fmt: skip


def tasks_of(model: ServedModel) -> list[str]:
    """What a model can be asked for (the routes answer 424 for the rest)."""
    tasks = ["classify", "explain", "tokenize"]
    tasks += ["rerank"] if model.can_rerank else []
    tasks += ["zero-shot"] if model.can_zero_shot else []
    return tasks


def model_info(model: ServedModel, fleet: Fleet, settings: ServerSettings) -> Info:
    clf, limits = model.clf, model.limits
    labels = clf.labels
    return Info(
        model_id=model.model_id, served_model_name=model.model_id, model_dtype=clf.engine.dtype,
        # TEI calls a one-output model a reranker.
        model_type={"reranker" if len(labels) == 1 else "classifier": ClassifierModel(
            id2label={str(i): n for i, n in enumerate(labels)}, label2id={n: i for i, n in enumerate(labels)})},
        family=clf.config.family, labels=list(labels), problem_type=clf.config.problem_type, device=clf.device,
        max_input_length=clf.tokenizer.model_max_length, max_batch_tokens=clf.max_batch_tokens,
        max_client_batch_size=limits.max_client_batch_size, max_explain_batch_size=limits.max_explain_inputs,
        max_concurrent_requests=limits.max_concurrent_requests, max_request_tokens=limits.max_request_tokens,
        request_timeout=settings.request_timeout, payload_limit=settings.payload_limit,
        auto_truncate=True, tokenization_workers=TOKENIZATION_WORKERS, version=__version__,
        precision=clf.precision, precision_reason=clf.precision_reason, name=model.name,
        models=[ModelSummary(name=m.name, model_id=m.model_id, family=m.clf.config.family, labels=list(m.clf.labels),
                             tasks=tasks_of(m), precision=m.clf.precision, device=m.clf.device) for m in fleet],
    )  # fmt: skip
