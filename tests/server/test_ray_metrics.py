"""Per-label metrics from a Ray Serve replica: counted there, they reach Ray's metrics export (what Prometheus scrapes
from a Ray cluster), summed over the replica's requests; outside a replica nothing is sent to Ray."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from serverutil import free_port

pytestmark = pytest.mark.slow  # a Ray cluster and a Serve application: the quick tier leaves it out
ray = pytest.importorskip("ray", reason="needs Ray Serve: pip install 'ray[serve]'")
serve = pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'ray[serve]'")


def test_a_replicas_counts_reach_rays_metrics(tiny_checkpoints):
    from textclass.classifier import Classifier
    from textclass.server.label_metrics import LabelCounts

    folder = str(tiny_checkpoints["bert"][0])
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    assert LabelCounts("here", clf)._forward is None  # this process is no replica: its /metrics only

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             _metrics_export_port=port)  # fmt: skip
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})

        @serve.deployment
        class Counting:
            def __init__(self, folder: str):
                self.clf = Classifier.from_pretrained(folder, dtype="fp32")
                self.counts = LabelCounts("tiny", self.clf)

            def __call__(self, texts: list[str]) -> list[int]:
                logits = self.clf.logits(texts)
                self.counts.observe_logits(logits)
                return logits.argmax(axis=1).tolist()

        handle = serve.run(Counting.bind(folder), name="counting", route_prefix=None)
        top = [*handle.remote(CORPUS[:6]).result(), *handle.remote(CORPUS[6:9]).result()]
        want = {label: float(top.count(i)) for i, label in enumerate(clf.labels) if top.count(i)}

        found: dict[str, float] = {}
        scored = 0.0
        deadline = time.monotonic() + 90  # Ray's agent exports on its own period
        while time.monotonic() < deadline and (found != want or scored != len(top)):
            time.sleep(2)
            families = text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
            samples = [s for family in families for s in family.samples if s.labels.get("model") == "tiny"]
            found = {s.labels["label"]: s.value for s in samples if s.name == "ray_textclass_predictions_total"}
            scored = sum(s.value for s in samples if s.name == "ray_textclass_prediction_score_count")
        assert found == want and scored == len(top) == 9, (found, scored)
    finally:
        serve.shutdown()
        ray.shutdown()
