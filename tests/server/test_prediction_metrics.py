"""Per-label metrics: textclass_predictions_total{model,label}, the textclass_prediction_score histogram and
textclass_rescored_total{model} add up to the texts every classifying route served, as the model answers them."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_contract import exchange

from conftest import CORPUS, build_checkpoint
from textclass.classifier import Classifier
from textclass.server.app import create_app
from textclass.server.label_metrics import SCORE_BUCKETS
from textclass.server.settings import ServerSettings

LONG_TEXT = " ".join(CORPUS)  # over the tiny models' 64-token limit


def samples(metrics_text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], parsed as Prometheus would."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def oip(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def test_counts_add_up_to_the_texts_served(tmp_path, vocab_txt):
    """Every route that classifies counts each text once, by the label and score the model gives by default
    (whatever the request asked: raw logits, sigmoid, top_k, windows); refused requests count nothing."""
    build_checkpoint(tmp_path / "wide", "bert", vocab_txt, num_labels=3, initializer_range=0.5)  # labels vary
    clf = Classifier.from_pretrained(tmp_path / "wide", dtype="fp32")
    served = {"predict": CORPUS[:5], "raw": CORPUS[5:6], "inference-api": CORPUS[6:9], "oip": CORPUS[9:13]}
    responses = exchange(create_app(clf, ServerSettings(model_id="acme/tiny")), [  # served as "tiny" too
        ("POST", "/predict", {"inputs": [[t] for t in served["predict"]]}),
        ("POST", "/predict", {"inputs": served["raw"][0], "raw_scores": True}),
        ("POST", "/", {"inputs": served["inference-api"], "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}}),
        ("POST", "/v2/models/acme/tiny/infer", oip(served["oip"])),  # OIP's name: the model_id
        ("POST", "/predict", {"inputs": [[LONG_TEXT], [CORPUS[13]]], "long_text": "chunk", "chunk_tokens": 16}),
        ("POST", "/predict", {"inputs": []}),  # 422
        ("POST", "/v2/models/tiny/infer", {"inputs": [{**oip(["x"])["inputs"][0], "datatype": "FP32"}]}),  # 400
        ("POST", "/v2/models/other/infer", oip(["x"])),  # 404
        ("GET", "/metrics", None),
    ])  # fmt: skip
    assert [r.status_code for r in responses] == [200] * 5 + [422, 400, 404, 200]

    texts = [t for group in served.values() for t in group]
    answers = [*clf(texts, top_k=None), *clf([LONG_TEXT, CORPUS[13]], top_k=None, long_text="chunk", chunk_tokens=16)]
    labels, tops = [a[0]["label"] for a in answers], np.array([a[0]["score"] for a in answers])
    assert len(set(labels)) > 1  # more than one label predicted: the per-label split is checked
    found = samples(responses[-1].text)
    counted = {s["label"]: value for s, value in found["textclass_predictions_total"] if s["model"] == "tiny"}
    assert counted == {label: float(labels.count(label)) for label in clf.labels}
    assert sum(counted.values()) == len(texts) + 2 == 15

    histogram = {s["le"]: value for s, value in found["textclass_prediction_score_bucket"]}
    assert list(histogram) == [*(repr(b) for b in SCORE_BUCKETS), "+Inf"]
    assert [histogram[repr(b)] for b in SCORE_BUCKETS] == [float((tops <= b).sum()) for b in SCORE_BUCKETS]
    assert histogram["+Inf"] == found["textclass_prediction_score_count"][0][1] == 15
    assert found["textclass_prediction_score_sum"][0][1] == pytest.approx(tops.sum(), abs=1e-5)
    assert found["textclass_rescored_total"] == [({"model": "tiny"}, 0.0)]  # exact fp32 rescores nothing
    # The request series say which model each request was for, OIP's too (its path names the model).
    infer = {(s["model"], s["status"]) for s, _ in found["textclass_requests_total"] if s["route"].endswith("/infer")}
    assert infer == {("tiny", "200"), ("tiny", "400"), ("", "404")}, infer


def test_rerank_routes_count_each_pair(tmp_path, vocab_txt):
    """A cross-encoder's one label, once per (query, document) pair, with the relevance score the route answered."""
    folder = tmp_path / "cross-encoder"
    build_checkpoint(folder, "bert", vocab_txt, num_labels=1, initializer_range=0.5)
    clf = Classifier.from_pretrained(folder, dtype="fp32")
    query = "What does the quick fox do?"
    responses = exchange(create_app(clf, ServerSettings(model_id="ranker")), [
        ("POST", "/rerank", {"query": query, "texts": CORPUS[:3]}),
        ("POST", "/v2/rerank", {"model": "m", "query": query, "documents": CORPUS[3:7]}),
        ("POST", "/v1/rerank", {"query": query, "documents": [{"text": t} for t in CORPUS[7:9]], "top_n": 1}),
        ("GET", "/metrics", None),
    ])  # fmt: skip
    assert [r.status_code for r in responses] == [200] * 4
    scores = [r["score"] for r in responses[0].json()] + [r["relevance_score"] for r in responses[1].json()["results"]]
    scores += list(1 / (1 + np.exp(-clf.logits([(query, t) for t in CORPUS[7:9]])[:, 0])))  # top_n=1: both scored
    found = samples(responses[-1].text)
    assert found["textclass_predictions_total"] == [({"model": "ranker", "label": clf.labels[0]}, 9.0)]
    # One model served: the Cohere/Jina routes' requests are its own, as its scores are.
    routes = {s["route"]: s["model"] for s, _ in found["textclass_requests_total"]}
    assert routes["/rerank"] == routes["/v2/rerank"] == routes["/v1/rerank"] == "ranker", routes
    assert found["textclass_prediction_score_count"][0][1] == 9
    assert found["textclass_prediction_score_sum"][0][1] == pytest.approx(sum(scores), abs=1e-5)


def test_rescored_texts_are_the_engines_count(tiny_checkpoints, monkeypatch):
    """The CPU default's int8 with near ties scored again in fp32: a random head leaves every text near a tie, so
    every row the model ran (the warm-up's too) was rescored, and /metrics says how many."""
    from textclass.runtime.precision import PRECISION_ENV
    from textclass.runtime.rescore import RescoringEngine

    monkeypatch.setenv(PRECISION_ENV, "onnx-int8")
    clf = Classifier.from_pretrained(tiny_checkpoints["bert"][0])
    assert isinstance(clf.engine, RescoringEngine)
    responses = exchange(create_app(clf, ServerSettings(model_id="int8")), [
        ("POST", "/predict", {"inputs": [[t] for t in CORPUS[:6]]}), ("GET", "/metrics", None),
    ])  # fmt: skip
    found = samples(responses[-1].text)
    assert found["textclass_rescored_total"] == [({"model": "int8"}, float(clf.engine.rescored.again))]
    assert clf.engine.rescored.again == clf.engine.rescored.texts == 6 + 1  # the warm-up text too
    batched = found["textclass_batch_size_sum"][0][1]
    assert batched == clf.engine.rescored.texts  # the share's denominator in docs/server.md counts the same rows
