"""Reranking with a cross-encoder: (query, text) pairs scored by one logit, texts sorted best first.

Pure functions of inputs, config and logits (the model runs in `Classifier.run`), so the Python API and the
server share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textclass import postprocess
from textclass.errors import InputError
from textclass.models.config import EncoderConfig
from textclass.tasks.inputs import require_text, strings


def require_cross_encoder(config: EncoderConfig) -> None:
    """A reranker scores a (query, text) pair with one logit; anything else is a classifier."""
    if config.num_labels != 1:
        raise InputError(
            f"reranking needs a cross-encoder with one output (num_labels=1), but this checkpoint has "
            f"{config.num_labels} labels ({', '.join(config.id2label)}); load a reranker such as a "
            "cross-encoder/ms-marco-* checkpoint"
        )


def rerank_pairs(query: str, texts: Sequence[str]) -> list[tuple[str, str]]:
    """(query, text) pairs: the query goes first, as cross-encoders are trained."""
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():  # the empty-text rule (inputs.require_text) holds for the query as for the texts
        raise InputError("query is empty (or only whitespace); give it text to rank against")
    texts = strings(texts, "texts", "text to rank")
    require_text(texts, "rank")
    return [(query, text) for text in texts]


def check_top_n(top_n: int | None) -> None:
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise InputError(f"top_n must be a positive integer or None (all texts); got {top_n!r}")


def rank_texts(
    logits: np.ndarray, texts: Sequence[str], top_n: int | None, return_text: bool, raw_scores: bool
) -> list[dict[str, Any]]:
    """(texts, 1) logits -> [{"index", "score"[, "text"]}], best first (TEI's /rerank answer)."""
    scores = postprocess.apply(logits[:, 0], "none" if raw_scores else "sigmoid")
    order = np.argsort(-scores, kind="stable")[:top_n]  # ties keep input order
    ranked = []
    for index in order:
        row: dict[str, Any] = {"index": int(index), "score": float(scores[index])}
        if return_text:
            row["text"] = texts[index]
        ranked.append(row)
    return ranked


