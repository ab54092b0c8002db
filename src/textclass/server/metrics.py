"""Prometheus metrics for one server: its own registry, so several apps can live in one process (tests)."""

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
        labels = ("route", "method", "status")
        self.requests = Counter(
            "textclass_requests", "HTTP requests by route and status", labels, registry=self.registry
        )
        self.request_duration = Histogram(
            "textclass_request_duration_seconds",
            "HTTP request duration by route and status",
            labels,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "textclass_requests_in_flight",
            "Classification requests admitted and not yet answered",
            registry=self.registry,
        )
        self.queue_size = Gauge("textclass_queue_size", "Texts waiting for the model", registry=self.registry)
        self.batch_size = Histogram(
            "textclass_batch_size", "Texts per model batch", buckets=_POWERS_OF_TWO, registry=self.registry
        )
        self.batch_tokens = Histogram(
            "textclass_batch_tokens",
            "Padded tokens (rows × longest) per model batch",
            buckets=_TOKENS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "textclass_inference_duration_seconds",
            "Model time per batch",
            buckets=_SECONDS,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_duration.labels(route, method, str(status)).observe(seconds)

    def observe_batch(self, texts: int, padded_tokens: int, seconds: float) -> None:
        self.batch_size.observe(texts)
        self.batch_tokens.observe(padded_tokens)
        self.inference_duration.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
