"""What each model route answers, for one served model: parse the request model's fields, call the model through
served.py, shape the JSON. No HTTP here: routes.py and the fast path (fastpath.py) call these with the model the
request names."""

from __future__ import annotations

import time
from typing import Any

from textclass import postprocess
from textclass.checkpoint.tokenizer import TextInput
from textclass.server.errors import ApiError
from textclass.server.schemas import (
    ClassifyParameters,
    ClassifyRequest,
    DecodeRequest,
    PredictRequest,
    RerankRequest,
    TokenizeRequest,
    predict_inputs,
)
from textclass.server.served import ServedModel, off_loop, task_step
from textclass.tasks import chunking
from textclass.tasks.rerank import rank_texts, require_cross_encoder, rerank_pairs
from textclass.tasks.zero_shot import (
    DEFAULT_HYPOTHESIS_TEMPLATE,
    entailment_id,
    zero_shot_job,
    zero_shot_results,
    zero_shot_scores,
)

Answer = tuple[Any, dict[str, str]]  # (JSON content, extra headers)


async def classify_answer(model: ServedModel, body: ClassifyRequest) -> Answer:
    """POST /: InferenceClient's text classification, or zero-shot with parameters.candidate_labels."""
    started = time.perf_counter()
    items: list[TextInput] = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
    model.check_count(len(items))
    params = body.parameters
    if params.candidate_labels is not None:
        return await zero_shot(model, body.inputs, params), timing(started)
    clf = model.clf
    function = postprocess.resolve_function(params.function_to_apply, clf.config.problem_type, len(clf.labels))
    scores, windows = await model.scored(items, True, "right", function, params)
    ranked = [postprocess.rank(row, clf.labels, params.top_k) for row in scores]
    if windows is not None:
        chunking.add_window_counts(ranked, windows)
    return ranked, timing(started)


async def predict_answer(model: ServedModel, body: PredictRequest) -> Answer:
    """TEI's /predict: every label, sorted by score; a flat list for one input, a list per input for a batch."""
    started = time.perf_counter()
    items, single = predict_inputs(body.inputs)
    model.check_count(len(items))
    clf = model.clf
    truncate = True if body.truncate is None else body.truncate
    function = "none" if body.raw_scores else postprocess.default_function(clf.config.problem_type, len(clf.labels))
    scores, windows = await model.scored(items, truncate, body.truncation_direction, function, body)
    ranked = [postprocess.rank(row, clf.labels, None) for row in scores]
    if windows is not None:
        chunking.add_window_counts(ranked, windows)
    return (ranked[0] if single else ranked), timing(started)


async def zero_shot(model: ServedModel, inputs: str | list[str], params: ClassifyParameters) -> list:
    """The Inference API's zero-shot answer: [{label, score}] best first; a list of those for a list."""
    entailment = task_step(424, entailment_id, model.clf.config)
    template = DEFAULT_HYPOTHESIS_TEMPLATE if params.hypothesis_template is None else params.hypothesis_template
    job = task_step(422, zero_shot_job, inputs, params.candidate_labels, template)
    logits = await model.infer(job.pairs, True, "right")  # (texts × labels, num_labels)
    scores = zero_shot_scores(logits, len(job.labels), entailment, bool(params.multi_label))
    results = zero_shot_results(job, scores)
    ranked = [[{"label": label, "score": score} for label, score in zip(r["labels"], r["scores"])]
              for r in ([results] if job.single else results)]  # fmt: skip
    return ranked[0] if job.single else ranked


async def rerank_answer(model: ServedModel, body: RerankRequest) -> Answer:
    """TEI's /rerank with a one-output cross-encoder: [{index, score[, text]}] sorted by score, best first."""
    started = time.perf_counter()
    model.check_count(len(body.texts), "texts")
    task_step(424, require_cross_encoder, model.clf.config)
    truncate = True if body.truncate is None else body.truncate
    logits = await model.infer(rerank_pairs(body.query, body.texts), truncate, body.truncation_direction)
    model.predictions.observe_logits(logits)
    return rank_texts(logits, body.texts, None, body.return_text, body.raw_scores), timing(started)


async def tokenize_answer(model: ServedModel, body: TokenizeRequest) -> list:
    """TEI's /tokenize: tokens with ids, text, special flag and character offsets (not truncated)."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    model.check_count(len(texts))
    tokenizer = model.clf.tokenizer
    encodings = await off_loop(sum(map(len, texts)), tokenizer.encodings, texts, body.add_special_tokens)
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
    return out


def decode_answer(model: ServedModel, body: DecodeRequest) -> list[str]:
    """TEI's /decode: ids (one list, or a list of lists) back to text."""
    batch = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
    model.check_count(len(batch))
    try:
        return [model.clf.tokenizer.decode(ids, skip_special_tokens=body.skip_special_tokens) for ids in batch]
    except (OverflowError, TypeError, ValueError) as exc:
        raise ApiError(422, f"cannot decode these ids: {exc}", kind="Tokenizer") from exc


def timing(started: float) -> dict[str, str]:
    # TEI reports its timings as headers; the playground shows this one.
    return {"x-total-time": f"{(time.perf_counter() - started) * 1000:.2f}"}
