"""What the served models predict, for monitoring drift: each text's top label and how sure the model was.

Three series per served model, beside the request and batch metrics of metrics.py:
- `textclass_predictions_total{model, label}`: each classified text's top label, counted once per text;
- `textclass_prediction_score{model}`: a histogram of that label's score, with buckets fine between 0.5 and 1.0,
  where the top score of a confident classifier lives (its mean over time: _sum / _count);
- `textclass_rescored_total{model}`: texts the CPU default's int8 left near a tie and fp32 scored again
  (runtime/rescore.py); 0 for every other mode.

The scores counted are the model's own answer (its default function with its calibration temperature, as
`Classifier.__call__` gives it), whatever a request asked for (raw logits, another function, top_k), so one
model's series mean one thing. Counting a request is a few numpy calls on its (texts, labels) array, under a lock
(requests finish on the event loop, the Ray Serve replicas in threads): the tallies are numpy arrays, turned into
Prometheus samples only when /metrics is scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from textclass import postprocess
from textclass.classifier import Classifier

# Upper bounds (Prometheus `le`); +Inf is added. Below 0.5 coarse, above it every 0.05, and the last percent split.
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99,
                 0.995, 0.999, 1.0)  # fmt: skip
_BOUNDS = np.array(SCORE_BUCKETS, dtype=np.float64)
FOLD_ROWS = 1024  # texts' scores kept before they are tallied (/metrics tallies what is kept first)

# Where else the counts go as they are taken (in a Ray Serve replica, ray_metrics.py): the model's name, its labels,
# (labels,) texts per label and (texts,) top scores of this request, and the texts rescored since the last call.
Forward = Callable[[str, Sequence[str], np.ndarray, np.ndarray, int], None]


class LabelCounts:
    """One served model's tallies since the server started."""

    def __init__(self, model: str, clf: Classifier, forward: Forward | None = None):
        """forward: where else the counts go; by default Ray Serve's metrics when this process is a replica."""
        from textclass.server.ray_metrics import replica_forward

        self.model = model
        self.labels = tuple(clf.labels)
        self.function = postprocess.default_function(clf.config.problem_type, len(self.labels))
        self._scores = clf.scores  # logits -> the model's default answer (Classifier.scores)
        self._engine = clf.engine
        self._forward = forward or replica_forward(SCORE_BUCKETS)
        self._forwarded_rescored = 0
        self._lock = threading.Lock()
        self.predictions = np.zeros(len(self.labels), dtype=np.int64)  # (labels,) texts whose top label it was
        self.buckets = np.zeros(len(SCORE_BUCKETS) + 1, dtype=np.int64)  # (buckets + 1,) not cumulative; +Inf last
        self.score_sum = 0.0
        self._pending: list[np.ndarray] = []  # (texts, labels) score arrays not yet tallied
        self._pending_rows = 0

    def observe_logits(self, logits: np.ndarray) -> None:
        """(texts, labels) logits: count each text's answer as the model gives it by default."""
        self.observe(self._scores(logits))

    def observe(self, scores: np.ndarray) -> None:
        """(texts, labels) scores already in the model's default function (long texts: their windows combined).
        Kept as they are and tallied FOLD_ROWS rows at a time (or when /metrics reads them): one numpy pass for
        many requests, not a handful of numpy calls on every request's (1, labels) array on the event loop."""
        if len(scores) == 0:
            return
        with self._lock:
            self._pending.append(scores)
            self._pending_rows += len(scores)
            if self._forward is None and self._pending_rows < FOLD_ROWS:
                return  # a Ray replica forwards every request's counts as they come
            pending = self._take_pending()
        self._tally(pending)

    def _take_pending(self) -> list[np.ndarray]:
        """Under the lock."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        return pending

    def _tally(self, pending: list[np.ndarray]) -> None:
        if not pending:
            return
        scores = np.concatenate(pending)  # (texts, labels)
        top = scores.argmax(axis=1)  # (texts,)
        best = scores[np.arange(len(scores)), top].astype(np.float64)  # (texts,)
        # searchsorted "left": the first bound >= the score, as `le` means; a score above 1 (regression) goes to +Inf.
        where = np.searchsorted(_BOUNDS, best, side="left")
        per_label = np.bincount(top, minlength=len(self.labels))  # (labels,)
        with self._lock:
            self.predictions += per_label
            self.buckets += np.bincount(where, minlength=len(self.buckets))
            self.score_sum += float(best.sum())
            rescored = self.rescored - self._forwarded_rescored
            self._forwarded_rescored += rescored
        if self._forward is not None:
            self._forward(self.model, self.labels, per_label, best, rescored)

    def snapshot(self) -> tuple[list[int], list[int], float]:
        """(texts per label, cumulative texts per score bucket with +Inf last, sum of the top scores)."""
        with self._lock:
            pending = self._take_pending()
        self._tally(pending)
        with self._lock:
            return self.predictions.tolist(), self.buckets.cumsum().tolist(), self.score_sum

    @property
    def rescored(self) -> int:
        """Texts fp32 scored again so far (the engine keeps the count); 0 when the mode never rescores."""
        counts = self._engine.rescored  # None when the mode never rescores
        return counts.again if counts is not None else 0


class PredictionCollector(Collector):
    """Renders every served model's LabelCounts when the registry is scraped."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.models: dict[str, LabelCounts] = {}
        if registry is not None:
            registry.register(self)

    def add(self, counts: LabelCounts) -> LabelCounts:
        self.models[counts.model] = counts
        return counts

    def collect(self) -> Iterator[Metric]:
        predictions = CounterMetricFamily(
            "textclass_predictions", "Classified texts by their top label", labels=("model", "label")
        )
        scores = HistogramMetricFamily(
            "textclass_prediction_score", "Each classified text's top score", labels=("model",)
        )
        rescored = CounterMetricFamily(
            "textclass_rescored", "Texts int8 left near a tie that fp32 scored again", labels=("model",)
        )
        for counts in list(self.models.values()):
            per_label, buckets, total = counts.snapshot()
            for label, count in zip(counts.labels, per_label):
                predictions.add_metric((counts.model, label), count)
            bounds = [*(_bound(b) for b in SCORE_BUCKETS), "+Inf"]
            scores.add_metric((counts.model,), list(zip(bounds, buckets)), total)
            rescored.add_metric((counts.model,), counts.rescored)
        yield from (predictions, scores, rescored)

    def describe(self) -> Sequence[Metric]:
        return []  # the series depend on the models added; nothing to check at registration


def _bound(value: float) -> str:
    return repr(float(value))  # "0.5", "1.0": the spelling prometheus_client's own histograms use
