"""The HTTP routes: parse, admit, tokenize, queue for the batcher, shape the answer. No model code here."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from textclass import __version__, postprocess, tasks
from textclass.api import Classifier
from textclass.errors import InputError
from textclass.server.batcher import Batcher, BatchFailed, ShuttingDown
from textclass.server.errors import ApiError, add_error_handlers, error_body
from textclass.server.fastpath import FastPath, render
from textclass.server.metrics import ServerMetrics
from textclass.server.middleware import Gatekeeper
from textclass.server.schemas import (
    ClassifyParameters,
    ClassifyRequest,
    DecodeRequest,
    ErrorResponse,
    InputShapeError,
    LabelScore,
    PredictRequest,
    Rank,
    RerankRequest,
    SimpleToken,
    TokenizeRequest,
    predict_inputs,
)
from textclass.server.settings import ServerSettings
from textclass.tokenize import TextInput

log = logging.getLogger("textclass.server")
UI_PAGE = Path(__file__).with_name("ui.html")
INLINE_TOKENIZE_CHARS = 4096  # below this, tokenizing on the event loop is cheaper than a thread hop
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in (
        (401, "Missing or wrong API key"),
        (413, "Too many inputs, body too large, or an input too long with truncate=false"),
        (422, "Malformed JSON, wrong types or empty inputs"),
        (429, "Too many concurrent requests; retry after Retry-After seconds"),
        (500, "The model failed on the batch holding this request"),
    )
}
# A request the served model cannot do (TEI answers /rerank on a classifier so): rerank, zero-shot.
TASK_ERRORS = {**ERRORS, 424: {"model": ErrorResponse, "description": "The served model cannot do this task"}}


def create_app(clf: Classifier, settings: ServerSettings) -> FastAPI:
    metrics = ServerMetrics()
    batcher = Batcher(clf.run, settings.max_batch_tokens, metrics)
    labels = clf.labels
    status = {"ready": False, "in_flight": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        started = time.perf_counter()
        await batcher.infer(clf.encode(["Warming up the model."]))  # the first batch pays for lazy init
        status["ready"] = True
        log.info(json.dumps({"event": "ready", "warm_up_ms": round((time.perf_counter() - started) * 1000, 1)}))
        try:
            yield
        finally:
            status["ready"] = False
            await anyio.to_thread.run_sync(batcher.stop)  # in-flight requests were answered before this
            log.info(json.dumps({"event": "stopped"}))

    app = FastAPI(
        title="textclass",
        version=__version__,
        lifespan=lifespan,
        description="Text classification with dynamic batching; TEI- and InferenceClient-compatible.",
    )
    add_error_handlers(app)

    async def classify(items: list[TextInput], truncate: bool, side: str) -> np.ndarray:
        """(inputs, labels) logits for one request, computed in batches shared with other requests."""
        if status["in_flight"] >= settings.max_concurrent_requests:
            raise ApiError(
                429,
                "overloaded",
                f"the server is handling its limit of {settings.max_concurrent_requests} concurrent requests; "
                "retry after the Retry-After seconds",
                {"Retry-After": "1"},
            )
        status["in_flight"] += 1
        metrics.in_flight.inc()
        try:
            encoded = await off_loop(sum(map(len_chars, items)), encode, items, truncate, side)
            return await batcher.infer(encoded)
        except BatchFailed as exc:
            raise ApiError(500, "backend", f"inference failed for this request's batch: {exc}") from exc
        except ShuttingDown as exc:
            raise ApiError(503, "unhealthy", "the server is shutting down; retry on another replica") from exc
        finally:
            status["in_flight"] -= 1
            metrics.in_flight.dec()

    def encode(items: list[TextInput], truncate: bool, side: str) -> list:
        try:
            return clf.encode(items, truncation=truncate, truncation_side=side)
        except InputError as exc:  # an input over the model's limit with truncation off
            raise ApiError(413, "validation", f'{exc} (or send "truncate": true)') from exc

    async def classify_answer(body: ClassifyRequest) -> tuple[Any, dict[str, str]]:
        started = time.perf_counter()
        items: list[TextInput] = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
        check_count(len(items), settings.max_client_batch_size)
        params = body.parameters
        if params.candidate_labels is not None:
            return await zero_shot(body.inputs, params), timing(started)
        try:
            function = postprocess.resolve_function(params.function_to_apply, clf.config.problem_type, len(labels))
        except InputError as exc:
            raise ApiError(422, "validation", f"parameters.function_to_apply: {exc}") from exc
        scores = postprocess.apply(await classify(items, True, "right"), function)
        ranked = [postprocess.rank(row, labels, params.top_k) for row in scores]
        return ranked, timing(started)

    async def predict_answer(body: PredictRequest) -> tuple[Any, dict[str, str]]:
        started = time.perf_counter()
        try:
            items, single = predict_inputs(body.inputs)
        except InputShapeError as exc:
            raise ApiError(422, "validation", str(exc)) from exc
        check_count(len(items), settings.max_client_batch_size)
        truncate = True if body.truncate is None else body.truncate
        logits = await classify(items, truncate, body.truncation_direction)
        function = "none" if body.raw_scores else postprocess.default_function(clf.config.problem_type, len(labels))
        ranked = [postprocess.rank(row, labels, None) for row in postprocess.apply(logits, function)]
        return (ranked[0] if single else ranked), timing(started)

    async def zero_shot(inputs: str | list[str], params: ClassifyParameters) -> list:
        """The Inference API's zero-shot answer: [{label, score}] best first; a list of those for a list."""
        entailment = task_step(424, tasks.entailment_id, clf.config)
        template = (
            tasks.DEFAULT_HYPOTHESIS_TEMPLATE if params.hypothesis_template is None else params.hypothesis_template
        )
        job = task_step(422, tasks.zero_shot_job, inputs, params.candidate_labels, template)
        logits = await classify(job.pairs, True, "right")  # (texts × labels, num_labels)
        scores = tasks.zero_shot_scores(logits, len(job.labels), entailment, bool(params.multi_label))
        results = tasks.zero_shot_results(job, scores)
        ranked = [[{"label": label, "score": score} for label, score in zip(r["labels"], r["scores"])]
                  for r in ([results] if job.single else results)]  # fmt: skip
        return ranked[0] if job.single else ranked

    async def rerank_answer(body: RerankRequest) -> tuple[Any, dict[str, str]]:
        started = time.perf_counter()
        check_count(len(body.texts), settings.max_client_batch_size, "texts")
        task_step(424, tasks.require_cross_encoder, clf.config)
        truncate = True if body.truncate is None else body.truncate
        logits = await classify(tasks.rerank_pairs(body.query, body.texts), truncate, body.truncation_direction)
        return tasks.rank_texts(logits, body.texts, None, body.return_text, body.raw_scores), timing(started)

    # FastAPI documents these routes; FastPath (fastpath.py) answers them with the same functions.
    @app.post("/", response_model=list[list[LabelScore]] | list[LabelScore], responses=TASK_ERRORS,
              summary="InferenceClient classify and zero-shot")  # fmt: skip
    async def classify_route(body: ClassifyRequest) -> Response:
        """What `huggingface_hub.InferenceClient(base_url).text_classification(...)` sends and parses: a list of
        ranked labels per text. With `parameters.candidate_labels`, zero-shot classification with an NLI model as
        `zero_shot_classification(text, candidate_labels)` expects it: [{label, score}] for one text."""
        return answer(*await classify_answer(body))

    @app.post("/predict", response_model=list[LabelScore] | list[list[LabelScore]], responses=ERRORS)
    async def predict(body: PredictRequest) -> Response:
        """TEI's /predict: every label, sorted by score; a flat list for one input, a list per input for a batch."""
        return answer(*await predict_answer(body))

    @app.post("/rerank", response_model=list[Rank], responses=TASK_ERRORS)
    async def rerank(body: RerankRequest) -> Response:
        """TEI's /rerank with a one-output cross-encoder: [{index, score[, text]}] sorted by score, best first."""
        return answer(*await rerank_answer(body))

    @app.post("/tokenize", response_model=list[list[SimpleToken]], responses=ERRORS)
    async def tokenize(body: TokenizeRequest) -> Response:
        """TEI's /tokenize: tokens with ids, text, special flag and character offsets (not truncated)."""
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        check_count(len(texts), settings.max_client_batch_size)
        encodings = await off_loop(sum(map(len, texts)), clf.tokenizer.encodings, texts, body.add_special_tokens)
        out = []
        for text, encoding in zip(texts, encodings):
            tokens = []
            for token_id, token, (start, stop), special in zip(
                encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask
            ):
                if special:
                    tokens.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
                else:
                    tokens.append({"id": token_id, "text": text[start:stop], "special": False, "start": start,
                                   "stop": stop})  # fmt: skip
            out.append(tokens)
        return JSONResponse(out)

    @app.post("/decode", response_model=list[str], responses=ERRORS)
    async def decode(body: DecodeRequest) -> Response:
        """TEI's /decode: ids (one list, or a list of lists) back to text."""
        batch = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
        check_count(len(batch), settings.max_client_batch_size)
        try:
            texts = [clf.tokenizer.decode(ids, skip_special_tokens=body.skip_special_tokens) for ids in batch]
        except (OverflowError, TypeError, ValueError) as exc:
            raise ApiError(422, "tokenizer", f"cannot decode these ids: {exc}; ids must be vocabulary ids") from exc
        return JSONResponse(texts)

    @app.get("/health", responses={503: {"model": ErrorResponse}})
    async def health() -> Response:
        """200 once the model is loaded and a warm-up batch ran; 503 before, while stopping, or if the worker died."""
        if status["ready"] and batcher.alive:
            return JSONResponse({"status": "ok"})
        return Response(error_body("the model is not ready", "unhealthy"), 503, media_type="application/json")

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """The served model and the server's limits."""
        return {
            "model_id": str(clf.folder),
            # TEI calls a one-output model a reranker.
            "model_type": {"reranker" if len(labels) == 1 else "classifier": {
                "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}},
            "family": clf.config.family,
            "labels": list(labels),
            "problem_type": clf.config.problem_type,
            "model_dtype": getattr(clf.engine, "dtype", None),
            "device": clf.device,
            "max_input_length": clf.tokenizer.model_max_length,
            "max_batch_tokens": settings.max_batch_tokens,
            "max_client_batch_size": settings.max_client_batch_size,
            "max_concurrent_requests": settings.max_concurrent_requests,
            "payload_limit": settings.payload_limit,
            "auto_truncate": True,
            "version": __version__,
        }  # fmt: skip

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus exposition: requests, durations, queue, batches, inference time."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/ui", response_class=HTMLResponse)
    async def ui() -> HTMLResponse:
        """A playground page: type text, see every label's score as a bar, and the latency."""
        return HTMLResponse(UI_PAGE.read_text(encoding="utf-8"))

    fast = {"/": (ClassifyRequest, classify_answer), "/predict": (PredictRequest, predict_answer),
            "/rerank": (RerankRequest, rerank_answer)}  # fmt: skip
    declared = {route.path: route for route in app.routes if "POST" in getattr(route, "methods", ())}
    # Added last-to-first: the Gatekeeper is outermost, so the fast path is behind the key and body checks.
    app.add_middleware(FastPath, routes={path: (*pair, declared[path]) for path, pair in fast.items()})
    app.add_middleware(Gatekeeper, metrics=metrics, payload_limit=settings.payload_limit, api_key=settings.api_key)
    return app


def check_count(count: int, limit: int, what: str = "inputs") -> None:
    if count == 0:
        raise ApiError(422, "validation", f"{what} must not be empty")
    if count > limit:
        raise ApiError(
            413, "validation", f"{count} {what} but at most {limit} per request (--max-client-batch-size); split them"
        )


def task_step(status: int, function: Any, *args: Any) -> Any:
    """A tasks.py check or preparation; its InputError becomes this status (422: the request, 424: the model)."""
    try:
        return function(*args)
    except InputError as exc:
        raise ApiError(status, "validation" if status == 422 else "backend", str(exc)) from exc


def len_chars(item: TextInput) -> int:
    return len(item) if isinstance(item, str) else len(item[0]) + len(item[1])


async def off_loop(chars: int, function: Any, *args: Any) -> Any:
    """Run tokenizer work inline when small, else in a thread so big requests don't stall the event loop."""
    if chars <= INLINE_TOKENIZE_CHARS:
        return function(*args)
    return await anyio.to_thread.run_sync(function, *args)


def timing(started: float) -> dict[str, str]:
    # TEI reports its timings as headers; the playground shows this one.
    return {"x-total-time": f"{(time.perf_counter() - started) * 1000:.2f}"}


def answer(content: Any, headers: dict[str, str]) -> Response:
    return Response(render(content), headers=headers, media_type="application/json")
