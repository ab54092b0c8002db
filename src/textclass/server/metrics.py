"""Prometheus metrics for one server: its own registry (several apps can live in one process: tests), every series
labelled by the model it is about (`model=""` for the routes that serve no model: /health, /metrics, /docs)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series double the output and nothing here reads them

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_POWERS_OF_TWO = tuple(float(2**i) for i in range(0, 11))  # 1 … 1024 texts
_TOKENS = tuple(float(2**i) for i in range(4, 18))  # 16 … 131072 padded tokens


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "route", "method", "status")
        self.requests = Counter(
            "textclass_requests", "HTTP requests by model, route and status", labels, registry=self.registry
        )
        self.request_duration = Histogram(
            "textclass_request_duration_seconds",
            "HTTP request duration by model, route and status",
            labels,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "textclass_requests_in_flight",
            "Classification requests admitted and not yet answered",
            ("model",),
            registry=self.registry,
        )
        self.queue_size = Gauge(
            "textclass_queue_size", "Texts waiting for the model", ("model",), registry=self.registry
        )
        self.batch_size = Histogram(
            "textclass_batch_size", "Texts per model call (one round of the batcher)", ("model",),
            buckets=_POWERS_OF_TWO, registry=self.registry,
        )  # fmt: skip
        self.batch_tokens = Histogram(
            "textclass_batch_tokens",
            "Padded tokens per model call (rows × longest, summed over its forward passes)",
            ("model",),
            buckets=_TOKENS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "textclass_inference_duration_seconds",
            "Model time per call",
            ("model",),
            buckets=_SECONDS,
            registry=self.registry,
        )

    def for_model(self, name: str) -> ModelMetrics:
        return ModelMetrics(self, name)

    def observe_request(self, model: str, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(model, route, method, str(status)).inc()
        self.request_duration.labels(model, route, method, str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ModelMetrics:
    """One model's series: what its batcher and admission update."""

    def __init__(self, metrics: ServerMetrics, name: str):
        self.in_flight = metrics.in_flight.labels(name)
        self.queue_size = metrics.queue_size.labels(name)
        self._batch_size = metrics.batch_size.labels(name)
        self._batch_tokens = metrics.batch_tokens.labels(name)
        self._inference_duration = metrics.inference_duration.labels(name)
        self.queue_size.set(0)
        self.in_flight.set(0)

    def observe_batch(self, texts: int, padded_tokens: int, seconds: float) -> None:
        self._batch_size.observe(texts)
        self._batch_tokens.observe(padded_tokens)
        self._inference_duration.observe(seconds)
