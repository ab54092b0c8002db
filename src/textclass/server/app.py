"""The HTTP routes: parse, admit, tokenize, queue for the batcher, shape the answer. No model code here."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from textclass import __version__, postprocess
from textclass.checkpoint.tokenizer import Encoded, TextInput
from textclass.classifier import Classifier
from textclass.errors import InputError
from textclass.server import cohere, oip
from textclass.server.batcher import Batcher, BatchFailed, ShuttingDown
from textclass.server.errors import ApiError, add_error_handlers, documented, error_body
from textclass.server.explaining import MAX_EXPLAIN_INPUTS, explainer
from textclass.server.fastpath import FastPath, render
from textclass.server.label_metrics import LabelCounts, PredictionCollector
from textclass.server.lookup import Served, ServedModels
from textclass.server.metrics import ServerMetrics
from textclass.server.middleware import Gatekeeper
from textclass.server.schemas import (
    ClassifierModel,
    ClassifyParameters,
    ClassifyRequest,
    DecodeRequest,
    ExplainRequest,
    Explanation,
    Info,
    LabelScore,
    LongTextOptions,
    PredictRequest,
    Rank,
    RerankRequest,
    SimpleToken,
    TokenizeRequest,
    predict_inputs,
)
from textclass.server.settings import ServerSettings, model_name
from textclass.tasks import chunking
from textclass.tasks.rerank import rank_texts, require_cross_encoder, rerank_pairs
from textclass.tasks.zero_shot import (
    DEFAULT_HYPOTHESIS_TEMPLATE,
    entailment_id,
    zero_shot_job,
    zero_shot_results,
    zero_shot_scores,
)

log = logging.getLogger("textclass.server")
UI_PAGE = Path(__file__).with_name("ui.html")
INLINE_TOKENIZE_CHARS = 4096  # below this, tokenizing on the event loop is cheaper than a thread hop
# Above it, the Rust tokenizer encodes a request's texts in its thread pool: one thread per CPU we may use.
TOKENIZATION_WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# What each route can answer besides 200 (401 only when the server has an API key).
TOKENIZER_ERRORS = documented(400, 401, 413, 422)
ERRORS = documented(400, 401, 413, 422, 429, 500, 503)  # the routes that run the model
# A request the served model cannot do (TEI answers /rerank on a classifier so): rerank, zero-shot.
TASK_ERRORS = documented(400, 401, 413, 422, 424, 429, 500, 503)


def create_app(clf: Classifier, settings: ServerSettings) -> FastAPI:
    metrics = ServerMetrics()
    # One token budget, the classifier's (--max-batch-tokens): the batcher takes no more than one forward pass
    # holds, so the classifier never splits a batch for size (only, maybe, its rows that would be mostly padding).
    batcher = Batcher(clf.run, clf.max_batch_tokens, metrics)
    labels = clf.labels
    name = settings.model_id or model_name(clf.folder)  # never the server's path: clients see it
    counts = PredictionCollector(metrics.registry).add(LabelCounts(name, clf))  # what the model answers, per label
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

    async def classify(
        items: list[TextInput], truncate: bool, side: str, encoded: list[Encoded] | None = None
    ) -> np.ndarray:
        """(inputs, labels) logits for one request, computed in batches shared with other requests; with
        `encoded` (long-text windows, explain's variants), those rows are run instead, one logit row each."""
        if status["in_flight"] >= settings.max_concurrent_requests:
            raise ApiError(
                429,
                f"the server is handling its limit of {settings.max_concurrent_requests} concurrent requests; "
                "retry after the Retry-After seconds",
                headers={"Retry-After": "1"},
            )
        status["in_flight"] += 1
        metrics.in_flight.inc()
        try:
            if encoded is None:
                encoded = await encode_rows(items, truncate, side)
            return await batcher.infer(encoded)
        except BatchFailed as exc:
            raise ApiError(500, f"inference failed for this request's batch: {exc}") from exc
        except ShuttingDown as exc:
            raise ApiError(503, "the server is shutting down; retry on another replica") from exc
        finally:
            status["in_flight"] -= 1
            metrics.in_flight.dec()

    def encode(items: list[TextInput], truncate: bool, side: str) -> list:
        try:
            return clf.encode(items, truncation=truncate, truncation_side=side)
        except InputError as exc:  # an input over the model's limit with truncation off
            raise ApiError(413, f'{exc} (or send "truncate": true)') from exc

    async def encode_rows(items: list[TextInput], truncate: bool, side: str) -> list[Encoded]:
        return await off_loop(sum(map(len_chars, items)), encode, items, truncate, side)

    def check_window_limit(options: LongTextOptions) -> None:
        """The schema bounds chunk_tokens by the model's limit (model_bounds_in_schema), with or without "chunk"."""
        limit = clf.tokenizer.model_max_length
        if options.chunk_tokens is not None and options.chunk_tokens > limit:
            raise ApiError(422, f"chunk_tokens must be at most the model's limit {limit}; got {options.chunk_tokens}")

    async def scored(
        items: list[TextInput], truncate: bool, side: str, function: str, options: LongTextOptions
    ) -> tuple[np.ndarray, list[int] | None]:
        """(inputs, labels) scores as `clf(...)` gives them (calibration temperature included), and the windows
        per input with long_text "chunk" (their scores aggregated)."""
        # Window settings only mean something with long_text "chunk"; the schema says they are ignored otherwise.
        chunk = options.long_text == "chunk"
        windows = task_step(422, chunking.windows_for, clf.tokenizer, options.long_text,
                            options.chunk_tokens if chunk else None, options.stride if chunk else None,
                            options.aggregate)  # fmt: skip
        if windows is None:
            logits = await classify(items, truncate, side)
            scores = clf.scores(logits, function)
            default = scores if function == counts.function else clf.scores(logits, counts.function)
            counts.observe(default)
            return scores, None
        plan = await off_loop(sum(map(len_chars, items)), task_step, 422, windows.plan, items)
        logits = await classify(items, truncate, side, plan.encoded)
        scores = clf.scores(logits, function)
        counts.observe(plan.combine(clf.scores(logits, counts.function)))
        return plan.combine(scores), plan.counts

    async def classify_answer(body: ClassifyRequest) -> tuple[Any, dict[str, str]]:
        started = time.perf_counter()
        items: list[TextInput] = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
        check_count(len(items), settings.max_client_batch_size)
        params = body.parameters
        check_window_limit(params)
        if params.candidate_labels is not None:
            return await zero_shot(body.inputs, params), timing(started)
        function = postprocess.resolve_function(params.function_to_apply, clf.config.problem_type, len(labels))
        scores, windows = await scored(items, True, "right", function, params)
        ranked = [postprocess.rank(row, labels, params.top_k) for row in scores]
        if windows is not None:
            chunking.add_window_counts(ranked, windows)
        return ranked, timing(started)

    async def predict_answer(body: PredictRequest) -> tuple[Any, dict[str, str]]:
        started = time.perf_counter()
        items, single = predict_inputs(body.inputs)
        check_count(len(items), settings.max_client_batch_size)
        check_window_limit(body)
        truncate = True if body.truncate is None else body.truncate
        function = "none" if body.raw_scores else postprocess.default_function(clf.config.problem_type, len(labels))
        scores, windows = await scored(items, truncate, body.truncation_direction, function, body)
        ranked = [postprocess.rank(row, labels, None) for row in scores]
        if windows is not None:
            chunking.add_window_counts(ranked, windows)
        return (ranked[0] if single else ranked), timing(started)

    async def zero_shot(inputs: str | list[str], params: ClassifyParameters) -> list:
        """The Inference API's zero-shot answer: [{label, score}] best first; a list of those for a list."""
        entailment = task_step(424, entailment_id, clf.config)
        template = (
            DEFAULT_HYPOTHESIS_TEMPLATE if params.hypothesis_template is None else params.hypothesis_template
        )
        job = task_step(422, zero_shot_job, inputs, params.candidate_labels, template)
        logits = await classify(job.pairs, True, "right")  # (texts × labels, num_labels)
        scores = zero_shot_scores(logits, len(job.labels), entailment, bool(params.multi_label))
        results = zero_shot_results(job, scores)
        ranked = [[{"label": label, "score": score} for label, score in zip(r["labels"], r["scores"])]
                  for r in ([results] if job.single else results)]  # fmt: skip
        return ranked[0] if job.single else ranked

    async def rerank_answer(body: RerankRequest) -> tuple[Any, dict[str, str]]:
        started = time.perf_counter()
        check_count(len(body.texts), settings.max_client_batch_size, "texts")
        task_step(424, require_cross_encoder, clf.config)
        truncate = True if body.truncate is None else body.truncate
        logits = await classify(rerank_pairs(body.query, body.texts), truncate, body.truncation_direction)
        counts.observe_logits(logits)
        return rank_texts(logits, body.texts, None, body.return_text, body.raw_scores), timing(started)

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

    explain_answer = explainer(clf, classify, min(MAX_EXPLAIN_INPUTS, settings.max_client_batch_size))

    @app.post("/explain", response_model=Explanation | list[Explanation], responses=TASK_ERRORS)
    async def explain(body: ExplainRequest) -> Response:
        """How much each token and word pushes a label's score: {label, score, tokens, words} for one text, a list
        for a list (at most 8 texts, see /info). Occlusion runs in the shared batches; integrated gradients (torch)
        in a worker thread."""
        started = time.perf_counter()
        return answer(await explain_answer(body), timing(started))

    @app.post("/tokenize", response_model=list[list[SimpleToken]], responses=TOKENIZER_ERRORS)
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

    @app.post("/decode", response_model=list[str], responses=TOKENIZER_ERRORS)
    async def decode(body: DecodeRequest) -> Response:
        """TEI's /decode: ids (one list, or a list of lists) back to text."""
        batch = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
        check_count(len(batch), settings.max_client_batch_size)
        try:
            texts = [clf.tokenizer.decode(ids, skip_special_tokens=body.skip_special_tokens) for ids in batch]
        except (OverflowError, TypeError, ValueError) as exc:
            raise ApiError(422, f"cannot decode these ids: {exc}", kind="Tokenizer") from exc
        return JSONResponse(texts)

    @app.get("/health", responses=documented(503))
    async def health() -> Response:
        """200 once the model is loaded and a warm-up batch ran; 503 before, while stopping, or if the worker died."""
        if status["ready"] and batcher.alive:
            return JSONResponse({"status": "ok"})
        return Response(error_body("the model is not ready", 503), 503, media_type="application/json")

    @app.get("/info", response_model=Info, responses=documented(401))
    async def info() -> Info:
        """The served model and the server's limits (TEI's Info, then ours)."""
        return Info(
            model_id=name, served_model_name=name, model_dtype=clf.engine.dtype,
            # TEI calls a one-output model a reranker.
            model_type={"reranker" if len(labels) == 1 else "classifier": ClassifierModel(
                id2label={str(i): n for i, n in enumerate(labels)}, label2id={n: i for i, n in enumerate(labels)})},
            family=clf.config.family, labels=list(labels), problem_type=clf.config.problem_type, device=clf.device,
            max_input_length=clf.tokenizer.model_max_length, max_batch_tokens=clf.max_batch_tokens,
            max_client_batch_size=settings.max_client_batch_size,
            max_explain_batch_size=min(MAX_EXPLAIN_INPUTS, settings.max_client_batch_size),
            max_concurrent_requests=settings.max_concurrent_requests, payload_limit=settings.payload_limit,
            auto_truncate=True, tokenization_workers=TOKENIZATION_WORKERS, version=__version__,
            precision=clf.precision, precision_reason=clf.precision_reason,
        )  # fmt: skip

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus exposition: requests, durations, queue, batches, inference time."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/ui", response_class=HTMLResponse)
    async def ui() -> HTMLResponse:
        """A playground page: type text, see every label's score as a bar, and the latency."""
        return HTMLResponse(UI_PAGE.read_text(encoding="utf-8"))

    # The serving protocols (served.py): Cohere/Jina rerank and KServe's Open Inference Protocol.
    models = ServedModels([Served(name, name, clf, counts, classify, encode_rows, scored,
                                  lambda: status["ready"] and batcher.alive)])  # fmt: skip
    reranking = cohere.rerank_routes(models, settings.max_rerank_documents)
    cohere.declare(app, reranking, answer)
    oip.add_oip_routes(app, models, settings.max_client_batch_size)
    app.openapi = oip.openapi_with_oip(app, models, model_bounds_in_schema(app, clf))
    fast = {"/": (ClassifyRequest, classify_answer), "/predict": (PredictRequest, predict_answer),
            "/rerank": (RerankRequest, rerank_answer), **reranking}  # fmt: skip
    declared = {route.path: route for route in app.routes if "POST" in getattr(route, "methods", ())}
    # Added last-to-first: the Gatekeeper is outermost, so the fast path is behind the key and body checks.
    app.add_middleware(FastPath, routes={path: (*pair, declared[path]) for path, pair in fast.items()})
    app.add_middleware(Gatekeeper, metrics=metrics, payload_limit=settings.payload_limit, api_key=settings.api_key)
    return app


def check_count(count: int, limit: int, what: str = "inputs") -> None:
    """The request models refuse empty lists; this is the server's own limit."""
    if count > limit:
        raise ApiError(413, f"{count} {what} but at most {limit} per request (--max-client-batch-size); split them")


def task_step(status: int, function: Any, *args: Any) -> Any:
    """A tasks/ check or preparation; its InputError becomes this status (422: the request, 424: the model)."""
    try:
        return function(*args)
    except InputError as exc:
        raise ApiError(status, str(exc)) from exc


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


def model_bounds_in_schema(app: FastAPI, clf: Classifier) -> Any:
    """/openapi.json with the bounds that depend on the served model written in: the labels /explain may target
    and the longest window long_text "chunk" takes. The request models stay static; the server checks these."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            models = schema.get("components", {}).get("schemas", {})
            target = models.get("ExplainRequest", {}).get("properties", {}).get("target")
            if target is not None:
                target["anyOf"] = [{"type": "string", "enum": list(clf.labels)}, {"type": "null"}]
            for model in models.values():
                window = model.get("properties", {}).get("chunk_tokens")
                for option in (window or {}).get("anyOf", []):
                    if option.get("type") == "integer":
                        option["maximum"] = clf.tokenizer.model_max_length
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
