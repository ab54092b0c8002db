"""One served model: its classifier, batcher, metrics labels and limits in one object, which every route looks up by
name (fleet.py). Here: admission (429), the per-request token bound (413), tokenizing off the event loop, and the
shared batches. The routes' own logic (answers.py) only calls `infer`/`scored`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from textclass.checkpoint.tokenizer import Encoded, TextInput
from textclass.classifier import Classifier
from textclass.errors import InputError, LimitError
from textclass.server.batcher import Batcher, BatchFailed, ShuttingDown
from textclass.server.errors import ApiError
from textclass.server.label_metrics import LabelCounts
from textclass.server.metrics import ModelMetrics
from textclass.server.schemas import LongTextOptions
from textclass.server.settings import DEFAULT_MAX_REQUEST_TOKENS
from textclass.server.threads import in_thread
from textclass.tasks import chunking
from textclass.tasks.rerank import require_cross_encoder
from textclass.tasks.zero_shot import entailment_id

log = logging.getLogger("textclass.server")
INLINE_TOKENIZE_CHARS = 4096  # below this, tokenizing on the event loop is cheaper than a thread hop
MAX_EXPLAIN_INPUTS = 8  # /explain: occlusion scores one variant per word, so one text can cost hundreds of rows


@dataclass(frozen=True)
class Limits:
    """What one request to this model may ask for (the CLI's options; /info shows them)."""

    max_client_batch_size: int = 32
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS
    max_concurrent_requests: int = 512

    @property
    def max_explain_inputs(self) -> int:
        return min(MAX_EXPLAIN_INPUTS, self.max_client_batch_size)


@dataclass(eq=False)
class ServedModel:
    name: str  # its /models/{name}/ segment and its metrics label
    model_id: str  # what /info calls it (a hub id, the folder's name, --model-id)
    clf: Classifier
    limits: Limits
    metrics: ModelMetrics
    predictions: LabelCounts  # what the model answers, per label (/metrics: textclass_predictions)
    batcher: Batcher = field(init=False)
    ready: bool = False
    in_flight: int = 0
    explain_lane: asyncio.Lock | None = None  # integrated gradients: one request at a time (explaining.py)

    def __post_init__(self) -> None:
        # One token budget, the classifier's (--max-batch-tokens): the classifier cuts each round into forward
        # passes of at most that many padded tokens. One lane per CPU where the engine can run calls side by side.
        self.batcher = Batcher(self.clf.run, self.clf.max_batch_tokens, self.metrics, lanes=self.clf.engine.lanes)

    # ---- what the model can do (the routes answer 424 otherwise, and the schema says so) ------------------------
    @property
    def can_rerank(self) -> bool:
        return _accepts(require_cross_encoder, self.clf.config)

    @property
    def can_zero_shot(self) -> bool:
        return _accepts(entailment_id, self.clf.config)

    @property
    def window_limit(self) -> int:
        return self.clf.tokenizer.model_max_length

    @property
    def max_stride(self) -> int:
        """The largest stride any window admits: one less than the text tokens of the longest window."""
        prefix, suffix = chunking.special_tokens(self.clf.tokenizer)
        return max(0, self.window_limit - len(prefix[0]) - len(suffix[0]) - 1)

    # ---- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.batcher.start()
        started = time.perf_counter()
        await self.batcher.infer(self.clf.encode(["Warming up the model."]))  # the first batch pays for lazy init
        self.ready = True
        log.info(json.dumps({"event": "ready", "model": self.name, "batch_lanes": self.batcher.lanes,
                             "warm_up_ms": round((time.perf_counter() - started) * 1000, 1)}))  # fmt: skip

    def stop(self, timeout: float | None = None) -> None:
        self.ready = False
        self.batcher.stop(timeout)

    @property
    def healthy(self) -> bool:
        return self.ready and self.batcher.alive

    # ---- one request's model work -----------------------------------------------------------------------------
    def check_count(self, count: int, what: str = "inputs", limit: int | None = None) -> None:
        """The request models refuse empty lists; this is the server's own limit."""
        limit = self.limits.max_client_batch_size if limit is None else limit
        if count > limit:
            raise ApiError(413, f"{count} {what} but at most {limit} per request (--max-client-batch-size); split them")

    def check_tokens(self, tokens: int) -> None:
        """The per-request bound on model work, before any of it runs."""
        limit = self.limits.max_request_tokens
        if tokens > limit:
            raise ApiError(413, f"this request needs {tokens:,} tokens of model work (its texts, windows, pairs or "
                                f"variants) but at most {limit:,} are allowed per request (--max-request-tokens); "
                                "send fewer or shorter texts")  # fmt: skip

    async def infer(
        self, items: Sequence[TextInput], truncate: bool, side: str, encoded: Sequence[Encoded] | None = None
    ) -> np.ndarray:
        """(inputs, labels) logits for one request, computed in batches shared with other requests; with
        `encoded` (long-text windows, explain's variants), those rows are run instead, one logit row each."""
        limit = self.limits.max_concurrent_requests
        if self.in_flight >= limit:
            message = (f"the server is handling its limit of {limit} concurrent requests for model {self.name!r}; "
                       "retry after the Retry-After seconds")  # fmt: skip
            raise ApiError(429, message, headers={"Retry-After": "1"})
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            if encoded is None:
                encoded = await self.encode(items, truncate, side)
            self.check_tokens(sum(map(len, encoded)))
            return await self.batcher.infer(encoded)
        except BatchFailed as exc:
            raise ApiError(500, f"inference failed for this request's batch: {exc}") from exc
        except ShuttingDown as exc:
            raise ApiError(503, "the server is shutting down; retry on another replica") from exc
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    async def encode(self, items: Sequence[TextInput], truncate: bool, side: str) -> list[Encoded]:
        """The model's rows for these inputs, tokenized off the event loop when they are long."""
        return await off_loop(sum(map(len_chars, items)), self._encode, items, truncate, side)

    def _encode(self, items: Sequence[TextInput], truncate: bool, side: str) -> list[Encoded]:
        try:
            return self.clf.encode(list(items), truncation=truncate, truncation_side=side)
        except InputError as exc:  # an input over the model's limit with truncation off
            raise ApiError(413, f'{exc} (or send "truncate": true)') from exc

    async def scored(
        self, items: list[TextInput], truncate: bool, side: str, function: str, options: LongTextOptions
    ) -> tuple[np.ndarray, list[int] | None]:
        """(inputs, labels) scores as `clf(...)` gives them (calibration temperature included), and the windows
        per input with long_text "chunk" (their scores aggregated)."""
        clf = self.clf
        limit = self.window_limit
        # The bounds the schema states, checked with long_text "truncate" too (where the values are then ignored).
        if options.chunk_tokens is not None and options.chunk_tokens > limit:
            raise ApiError(422, f"chunk_tokens must be at most the model's limit {limit}; got {options.chunk_tokens}")
        if options.stride is not None and options.stride > self.max_stride:
            message = (f"stride must be smaller than the longest window's {self.max_stride + 1} text tokens (the "
                       f"model's limit {limit} less its special tokens); got {options.stride}")  # fmt: skip
            raise ApiError(422, message)
        # Window settings only mean something with long_text "chunk"; the schema says they are ignored otherwise.
        chunk = options.long_text == "chunk"
        windows = task_step(422, chunking.windows_for, clf.tokenizer, options.long_text,
                            options.chunk_tokens if chunk else None, options.stride if chunk else None,
                            options.aggregate)  # fmt: skip
        counted = self.predictions.function  # the model's default scores are what the prediction counts tally
        if windows is None:
            logits = await self.infer(items, truncate, side)
            scores = clf.scores(logits, function)
            default = scores if function == counted else clf.scores(logits, counted)
            self.predictions.observe(default)
            return scores, None
        # strict=False: a text the tokenizer gives no tokens is scored as truncation scores it (special tokens only);
        # which characters have no token is the tokenizer's business, and no schema can say it.
        plan = await off_loop(sum(map(len_chars, items)), self._plan, windows, items)
        logits = await self.infer(items, truncate, side, plan.encoded)
        self.predictions.observe(plan.combine(clf.scores(logits, counted)))
        return plan.combine(clf.scores(logits, function)), plan.counts

    def _plan(self, windows: chunking.Windows, items: list[TextInput]) -> chunking.Plan:
        """The windows of these texts, cut (in linear time) no further than the token bound could admit: a window
        holds at least one text token besides its special tokens. `infer` then checks their exact token count."""
        most = self.limits.max_request_tokens // (windows.chunk_tokens - windows.content + 1)
        try:
            return windows.plan(items, strict=False, max_windows=max(most, len(items)))
        except LimitError as exc:
            limit = self.limits.max_request_tokens
            raise ApiError(413, f"this request's windows need more than {limit:,} tokens of model work, the most "
                                "allowed per request (--max-request-tokens); send fewer or shorter texts") from exc
        except InputError as exc:
            raise ApiError(422, str(exc)) from exc


def _accepts(check: object, config: object) -> bool:
    try:
        check(config)  # type: ignore[operator]
    except InputError:
        return False
    return True


def task_step(status: int, function: object, *args: object) -> object:
    """A tasks/ check or preparation; its InputError becomes this status (422: the request, 424: the model)."""
    try:
        return function(*args)  # type: ignore[operator]
    except InputError as exc:
        raise ApiError(status, str(exc)) from exc


def len_chars(item: TextInput) -> int:
    return len(item) if isinstance(item, str) else len(item[0]) + len(item[1])


async def off_loop(chars: int, function: object, *args: object) -> object:
    """Run tokenizer work inline when small, else in a daemon thread so big requests don't stall the event loop."""
    if chars <= INLINE_TOKENIZE_CHARS:
        return function(*args)  # type: ignore[operator]
    return await in_thread(function, *args)  # type: ignore[arg-type]
