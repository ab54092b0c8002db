"""Per-label metrics from inside Ray Serve replicas: the same three series, through `ray.serve.metrics`.

Behind Serve's router each replica's own /metrics is one replica's share, so the counts also go to Ray's metrics
agent, which every node exports for Prometheus (with Ray's `ray_` prefix and Serve's deployment, replica and
application tags; sum over them: `sum by (model, label) (rate(ray_textclass_predictions_total[15m]))`). A replica
adds these per request: one counter increment per label that occurred, one histogram observation per text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cache

import numpy as np


class RayPredictionMetrics:
    """A label_metrics.Forward into ray.serve.metrics; one per replica process (it needs a Ray worker)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        from ray.serve import metrics

        self.predictions = metrics.Counter(
            "textclass_predictions", description="Classified texts by their top label", tag_keys=("model", "label")
        )
        self.score = metrics.Histogram(
            "textclass_prediction_score", description="Each classified text's top score",
            boundaries=list(buckets), tag_keys=("model",),
        )  # fmt: skip
        self.rescored = metrics.Counter(
            "textclass_rescored", description="Texts int8 left near a tie that fp32 scored again", tag_keys=("model",)
        )

    def __call__(
        self, model: str, labels: Sequence[str], per_label: np.ndarray, scores: np.ndarray, rescored: int
    ) -> None:
        for label, count in zip(labels, per_label.tolist()):
            if count:
                self.predictions.inc(count, tags={"model": model, "label": label})
        for score in scores.tolist():
            self.score.observe(score, tags={"model": model})
        if rescored:
            self.rescored.inc(rescored, tags={"model": model})


def replica_forward(buckets: tuple[float, ...]) -> RayPredictionMetrics | None:
    """The Ray metrics of this process when it is a Ray Serve replica (the histogram's upper bounds: `buckets`),
    else None. Ray is never imported for this: a replica has imported it already."""
    if "ray" not in sys.modules:
        return None
    try:
        from ray import serve

        serve.get_replica_context()  # raises outside a replica
    except Exception:  # noqa: BLE001 - no Serve, an old Ray, or not a replica: the process's own /metrics only
        return None
    return _process_metrics(buckets)


@cache
def _process_metrics(buckets: tuple[float, ...]) -> RayPredictionMetrics:
    return RayPredictionMetrics(buckets)  # one set per process: every served model tags its own series
