"""POST /explain: token and word attributions over HTTP, without blocking the event loop.

Occlusion's variants are tokenized rows like any others: they go through the model's shared batcher (admission,
429, the token bound, batches shared with other requests). Integrated gradients needs torch and gradients, so it
runs in a worker thread, one text at a time and one request at a time per model (two at once would only share the
same cores); its work (tokens × steps × 4: a forward and a backward pass in fp32) counts against the same
per-request token bound, checked first, and a cancelled request (timeout, shutdown) stops before its next text.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textclass.errors import InputError
from textclass.extras import MissingExtra, require_torch
from textclass.server.errors import ApiError
from textclass.server.schemas import ExplainRequest
from textclass.server.served import ServedModel
from textclass.server.threads import in_thread
from textclass.tasks import explain


async def explain_answer(model: ServedModel, body: ExplainRequest) -> Any:
    """The route's work: the JSON answer for one request (a dict for one text, a list for a list)."""
    clf = model.clf
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise ApiError(422, "inputs must not be empty")
    model.check_count(len(texts), "texts to explain", model.limits.max_explain_inputs)
    try:
        options = explain.check_options(body.method, body.baseline, body.unit, body.steps)
        items, single = await in_thread(explain.tokens_of, clf.tokenizer, body.inputs)
        explain.target_index(clf.labels, body.target, 0)
        if options.method == "occlusion":
            rows, counts = explain.occlusion_inputs(
                items, options.unit, explain.replacement_id(clf.tokenizer, options.baseline)
            )
            scores = clf.scores(await model.infer(texts, True, "right", rows))
            results = explain.occlusion_results(items, options.unit, scores, counts, clf.labels, body.target)
        else:
            require_torch("explaining with integrated gradients")  # 424 naming textclass[torch], before any work
            model.check_tokens(explain.integrated_gradients_work(items, options.steps))
            if model.explain_lane is None:  # made on first use, inside the event loop
                model.explain_lane = asyncio.Lock()
            results = []
            async with model.explain_lane:
                for item in items:  # one text per thread call: a cancelled request stops between texts
                    results += await in_thread(explain.integrated_gradients, clf, [item], body.target, options)
    except MissingExtra as exc:
        raise ApiError(424, str(exc)) from exc
    except InputError as exc:
        raise ApiError(422, str(exc)) from exc
    return results[0] if single else results
