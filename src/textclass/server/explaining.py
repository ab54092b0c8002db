"""POST /explain: token and word attributions over HTTP, without blocking the event loop.

Occlusion's variants are tokenized rows like any others: they go through the shared batcher (admission, 429,
batches shared with other requests). Integrated gradients needs torch and gradients, so it runs in a worker
thread, one request at a time (two at once would only share the same cores).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import numpy as np

from textclass.classifier import Classifier
from textclass.errors import InputError
from textclass.extras import MissingExtra
from textclass.server.errors import ApiError
from textclass.server.schemas import ExplainRequest
from textclass.tasks import explain

# Texts per request: occlusion scores one variant per word, so one text can cost hundreds of model rows.
MAX_EXPLAIN_INPUTS = 8
Classify = Callable[..., Awaitable[np.ndarray]]  # app.py's classify(items, truncate, side, encoded)


def explainer(clf: Classifier, classify: Classify, max_inputs: int) -> Callable[[ExplainRequest], Awaitable[Any]]:
    """The route's work: the JSON answer for one request (a dict for one text, a list for a list)."""
    lane: list[anyio.CapacityLimiter] = []  # made on first use, inside the event loop

    async def answer(body: ExplainRequest) -> Any:
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        if not texts:
            raise ApiError(422, "inputs must not be empty")
        if len(texts) > max_inputs:
            raise ApiError(413, f"{len(texts)} texts to explain but at most {max_inputs} per request; split them")
        try:
            options = explain.check_options(body.method, body.baseline, body.unit, body.steps)
            items, single = await anyio.to_thread.run_sync(explain.tokens_of, clf.tokenizer, body.inputs)
            explain.target_index(clf.labels, body.target, 0)
            if options.method == "occlusion":
                rows, counts = explain.occlusion_inputs(
                    items, options.unit, explain.replacement_id(clf.tokenizer, options.baseline)
                )
                scores = clf.scores(await classify(texts, True, "right", rows))
                results = explain.occlusion_results(items, options.unit, scores, counts, clf.labels, body.target)
            else:
                if not lane:
                    lane.append(anyio.CapacityLimiter(1))
                results = await anyio.to_thread.run_sync(
                    explain.integrated_gradients, clf, items, body.target, options, limiter=lane[0]
                )
        except MissingExtra as exc:
            raise ApiError(424, str(exc)) from exc
        except InputError as exc:
            raise ApiError(422, str(exc)) from exc
        return results[0] if single else results

    return answer
