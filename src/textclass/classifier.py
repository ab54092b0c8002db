"""`Classifier`: the Python API that ties tokenize → batch → model → postprocess together."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass import postprocess
from textclass.checkpoint import Checkpoint, open_checkpoint
from textclass.checkpoint.tokenizer import Encoded, TextInput, Tokenizer
from textclass.errors import InputError
from textclass.models.config import EncoderConfig
from textclass.runtime.batching import make_batches
from textclass.runtime.cpu import cpu_batch_tokens
from textclass.runtime.engine import Engine
from textclass.tasks import chunking, explain, rerank, zero_shot
from textclass.tasks.inputs import normalise_inputs, require_text

if TYPE_CHECKING:
    from torch import nn

_NOT_GIVEN: Any = object()  # top_k left out: the pipeline's legacy output shape
# CPU: a batch's activations stay in cache; by the CPU's kind (runtime/cpu.py CPU_BATCH_TOKENS: 256 with AMX,
# else 1024; docs/performance.md).
DEFAULT_MAX_BATCH_TOKENS = {"cpu": cpu_batch_tokens(), "cuda": 16384}


class Classifier:
    """A sequence-classification checkpoint ready to classify texts.

    >>> clf = Classifier.from_pretrained("path/to/checkpoint")   # doctest: +SKIP
    >>> clf("I've been waiting for a HuggingFace course my whole life.")   # doctest: +SKIP
    [{'label': 'POSITIVE', 'score': 0.9598}]
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        tokenizer: Tokenizer,
        engine: Engine,
        has_head: bool,
        device: str,
        max_batch_tokens: int,
    ):
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self.engine = engine
        self.has_head = has_head
        self.device = device
        self.max_batch_tokens = max_batch_tokens

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_batch_tokens: int | None = None,
        backend: str | None = None,
    ) -> Classifier:
        """Load a checkpoint, choosing device, backend and precision once.

        dtype: fp32 (exact), bf16, fp16 or int8; backend: torch or onnx (ONNX Runtime, CPU). Left out: the
        checkpoint's own choice (config.json `textclass_precision`, e.g. "onnx-fp32"), else this CPU's fast mode
        within the accuracy contract (per-row int8 on x86 with AVX2/VNNI, else ONNX Runtime fp32; exported and
        cached on first use; no torch afterwards) and torch bf16 on a GPU. `precision_reason` says which and
        why. int8 alone means ONNX Runtime int8; fp32 alone means torch fp32, the reference.
        """
        from textclass.checkpoint.locate import resolve_model
        from textclass.runtime.load import load_engine
        from textclass.runtime.precision import pick_device, pick_precision

        checkpoint = open_checkpoint(resolve_model(None if path_or_id is None else str(path_or_id)))
        tokenizer = checkpoint.load_tokenizer()
        device = pick_device(device)
        preferred = checkpoint.config.raw.get("textclass_precision")
        engine, has_head = load_engine(checkpoint, device, pick_precision(device, dtype, backend, preferred))
        logging.getLogger("textclass").info("textclass: %s runs %s-%s: %s", checkpoint.folder.name, engine.backend,
                                            engine.dtype, engine.reason)  # fmt: skip
        budget = max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS["cuda" if device.startswith("cuda") else "cpu"]
        return cls(checkpoint, tokenizer, engine, has_head, device, budget)

    @classmethod
    def default(cls, **kwargs: Any) -> Classifier:
        """The bundled English sentiment model (works offline)."""
        return cls.from_pretrained(None, **kwargs)

    # ---- what the model is ---------------------------------------------------------------------
    @property
    def config(self) -> EncoderConfig:
        return self.checkpoint.config

    @property
    def temperature(self) -> float:
        """Calibration temperature stored by `textclass train --temperature-calibrate` (1.0: none).

        Scores divide logits by it before softmax/sigmoid; `logits()` stays raw.
        """
        return self.config.temperature

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.id2label

    @property
    def folder(self) -> Path:
        return self.checkpoint.folder

    # ---- classifying ---------------------------------------------------------------------------
    def encode(
        self,
        inputs: TextInput | dict | Sequence[TextInput | dict],
        truncation: bool = True,
        max_length: int | None = None,
        truncation_side: str = "right",
    ) -> list[Encoded]:
        """Tokenize inputs for `run`; without truncation, an input over the model's limit is an error."""
        items, _ = normalise_inputs(inputs)
        if truncation and truncation_side == "right":  # what truncation cuts off is never tokenized
            limit = self.tokenizer.model_max_length if max_length is None else max_length
            items = [chunking.truncation_prefix(self.tokenizer, i, limit) if isinstance(i, str) else i for i in items]
        encoded = self.tokenizer.encode_batch(
            items, truncation=truncation, max_length=max_length, truncation_side=truncation_side
        )
        if not truncation:
            limit = self.tokenizer.model_max_length
            for index, item in enumerate(encoded):
                if len(item) > limit:
                    raise InputError(
                        f"input {index} has {len(item)} tokens but the model takes at most {limit}; "
                        "enable truncation or shorten the text"
                    )
        return encoded

    def run(self, encoded: Sequence[Encoded], batch_size: int | None = None, one_thread: bool = False) -> np.ndarray:
        """(n, num_labels) float32 logits for tokenized inputs, in their order (length-sorted batches inside).
        `one_thread`: on the calling thread alone, so that up to `engine.lanes` calls can run at once (the server
        does under load); the logits are the same either way."""
        self._require_head()
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        out = np.empty((len(encoded), self.config.num_labels), dtype=np.float32)
        batches = list(make_batches(encoded, self.max_batch_tokens, self.tokenizer.pad_token_id,
                                    self.engine.uses_token_types, max_batch_size=batch_size))  # fmt: skip
        for batch, logits in zip(batches, self.engine.map(batches, one_thread)):
            out[batch.indices] = logits
        return out

    def logits(
        self,
        inputs: TextInput | dict | Sequence[TextInput | dict],
        truncation: bool = True,
        max_length: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """(n, num_labels) float32 logits, in input order."""
        self._require_head()  # before any tokenizing work
        return self.run(self.encode(inputs, truncation=truncation, max_length=max_length), batch_size=batch_size)

    def scores(self, logits: Any, function_to_apply: str | None = None) -> Any:
        """(n, labels) logits -> the scores `clf(...)` reports for them: divided by the calibration temperature,
        then softmax, sigmoid or none (`function_to_apply`, else the config's default). The one place that turns
        logits into reported scores: the server, batch scoring, explain, `textclass check` and the benches use it.
        A torch tensor stays one (differentiable: explain's integrated gradients)."""
        function = postprocess.resolve_function(function_to_apply, self.config.problem_type, self.config.num_labels)
        return postprocess.apply(logits, function, self.temperature)

    def __call__(
        self,
        inputs: TextInput | dict | Sequence[TextInput | dict],
        top_k: int | None = _NOT_GIVEN,
        function_to_apply: str | None = None,
        truncation: bool = True,
        max_length: int | None = None,
        batch_size: int | None = None,
        long_text: str = "truncate",
        chunk_tokens: int | None = None,
        stride: int | None = None,
        aggregate: str = "mean",
        max_windows: int | None = None,
    ) -> list[Any] | dict[str, Any]:
        """Labels and scores shaped exactly like `transformers.pipeline("text-classification")`.

        long_text="chunk" scores a text past the model's limit as windows of chunk_tokens tokens (default: the
        limit) sharing up to `stride` tokens, aggregated by "mean", "max" or "first"; each result then says how
        many windows it used ("windows"). See chunking.py. "truncate" (the default) answers as the pipeline.
        max_windows bounds the work of one call: the most windows (model inputs; a truncated text is one) all
        inputs together may take, else a LimitError before any model work (default None: no bound).
        An empty or whitespace-only text is an InputError naming its index.
        """
        items, single = normalise_inputs(inputs)
        require_text(items)
        windows = chunking.windows_for(self.tokenizer, long_text, chunk_tokens, stride, aggregate)
        function = postprocess.resolve_function(function_to_apply, self.config.problem_type, self.config.num_labels)
        legacy = top_k is _NOT_GIVEN
        if legacy:
            top_k = 1
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise InputError(f"top_k must be a positive integer or None (all labels); got {top_k!r}")
        self._require_head()
        if windows is None:
            chunking.check_max_windows(max_windows, len(items))
        plan = None if windows is None else windows.plan(items, max_windows=max_windows)
        if plan is None:
            logits = self.logits(inputs, truncation=truncation, max_length=max_length, batch_size=batch_size)
        else:
            logits = self.run(plan.encoded, batch_size=batch_size)  # every window of every text, batched together
        scores = self.scores(logits, function)
        if plan is not None:
            scores = plan.combine(scores)
        result = postprocess.format_output(scores, self.labels, top_k, legacy, single)
        if plan is not None:
            chunking.add_window_counts(result if legacy or not single else [result], plan.counts)
        if legacy and single and not isinstance(inputs, str):
            return result[0]  # the pipeline wraps a lone dict in a list only for a str input
        return result

    # ---- jobs built on classification (logic in rerank.py) ----------------------------------------
    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        top_n: int | None = None,
        return_text: bool = False,
        raw_scores: bool = False,
        truncate: bool = True,
    ) -> list[dict[str, Any]]:
        """Rank texts by relevance to the query with a one-output cross-encoder: [{"index", "score"[, "text"]}].

        Scores are sigmoid(logit), or the logit itself with raw_scores, best first; top_n keeps the best n.
        """
        rerank.require_cross_encoder(self.config)
        rerank.check_top_n(top_n)
        pairs = rerank.rerank_pairs(query, texts)
        logits = self.run(self.encode(pairs, truncation=truncate))
        return rerank.rank_texts(logits, texts, top_n, return_text, raw_scores)

    def zero_shot(
        self,
        texts: str | Sequence[str],
        candidate_labels: str | Sequence[str],
        hypothesis_template: str = zero_shot.DEFAULT_HYPOTHESIS_TEMPLATE,
        multi_label: bool = False,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Zero-shot classification with an NLI model, shaped exactly like transformers' pipeline:
        {"sequence", "labels", "scores"} for one text (labels best first), a list of those for a list."""
        entailment = zero_shot.entailment_id(self.config)
        job = zero_shot.zero_shot_job(texts, candidate_labels, hypothesis_template)
        logits = self.run(self.encode(job.pairs))  # (texts × labels, num_labels)
        scores = zero_shot.zero_shot_scores(logits, len(job.labels), entailment, multi_label)
        return zero_shot.zero_shot_results(job, scores)

    def explain(
        self,
        texts: str | Sequence[str],
        target: str | int | None = None,
        method: str = "occlusion",
        baseline: str | None = None,
        unit: str = "word",
        steps: int = 50,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """How much each token and word pushes the target label's score (default: the predicted label):
        {"label", "score", "tokens": [{"token", "start", "end", "attribution"}], "words": [{"word", ...}]} for one
        text, a list for a list; start/end are character offsets. method "occlusion" (any engine; baseline
        "delete", "pad" or "mask"; unit "word" or "token") or "integrated_gradients" (torch; baseline "pad" or
        "mask", `steps` quadrature points). See explain.py."""
        self._require_head()
        return explain.explain(self, texts, target, method, baseline, unit, steps)

    @cached_property
    def torch_model(self) -> nn.Module:
        """The model in torch fp32, for gradients: the engine's own if it runs torch fp32, else built once."""
        return explain.fp32_torch_model(self)

    @property
    def precision(self) -> str:
        """What runs the model, e.g. "onnx-int8" or "torch-float32"."""
        return f"{self.engine.backend}-{self.engine.dtype}"

    @property
    def precision_reason(self) -> str:
        """Why that mode runs, decided at load: e.g. "CPU default (avx2, fma; no VNNI, ...): per-row int8 ..."."""
        return self.engine.reason

    def _require_head(self) -> None:
        if not self.has_head:
            raise InputError(
                f"{self.folder} is a bare encoder without a classification head; "
                "fine-tune it first (textclass train) or load a *ForSequenceClassification checkpoint"
            )

    def __repr__(self) -> str:
        return (
            f"Classifier({str(self.folder)!r}, family={self.config.family}, labels={list(self.labels)}, "
            f"precision={self.precision})"
        )


