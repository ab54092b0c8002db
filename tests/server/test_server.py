"""`textclass serve` as clients see it: a live server in a subprocess, real HTTP, real InferenceClient and browser."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import CORPUS
from serverutil import LiveServer
from textclass import postprocess
from textclass.classifier import Classifier

KEY = "test-secret-key"
LONG_TEXT = " ".join(CORPUS)  # well over the tiny models' 64-token limit


@pytest.fixture(scope="module")
def tiny_bert(tiny_checkpoints) -> Path:
    return tiny_checkpoints["bert"][0]  # 3 labels, 64-token limit


@pytest.fixture(scope="module")
def offline(tiny_bert) -> Classifier:
    return Classifier.from_pretrained(tiny_bert)


@pytest.fixture(scope="module")
def servers(tiny_bert, tmp_path_factory):
    """Two servers started together: defaults, and a guarded one with an API key, 2 concurrent requests and
    a 256-token budget (so a 32-text request spans several batches)."""
    logs = tmp_path_factory.mktemp("logs")
    plain = LiveServer(tiny_bert, logs / "server.log")
    args = ("--api-key", KEY, "--max-concurrent-requests", "2", "--max-batch-tokens", "256")
    guarded = LiveServer(tiny_bert, logs / "guarded.log", *args)
    try:
        yield plain.wait_healthy(), guarded.wait_healthy()
    finally:
        codes = plain.stop(), guarded.stop()
    assert codes == (0, 0), plain.log() + guarded.log()


@pytest.fixture(scope="module")
def server(servers) -> LiveServer:
    return servers[0]


@pytest.fixture(scope="module")
def guarded(servers) -> LiveServer:
    return servers[1]


def expected(clf: Classifier, items: list, function: str | None = None, top_k: int | None = None) -> list:
    """What the server should answer for these inputs: ranked labels per input, computed offline."""
    logits = clf.logits(items)
    name = function or postprocess.default_function(clf.config.problem_type, clf.config.num_labels)
    return [postprocess.rank(row, clf.labels, top_k) for row in postprocess.apply(logits, name)]


def assert_ranked(got: list, want: list, atol: float = 1e-5) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=atol)
    scores = [g["score"] for g in got]
    assert scores == sorted(scores, reverse=True)


# ---- clients that must work unchanged ---------------------------------------------------------------
def test_inference_client_round_trip(server, offline):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=server.url)
    text = CORPUS[0]
    got = client.text_classification(text)
    assert_ranked([{"label": e.label, "score": e.score} for e in got], expected(offline, [text])[0])
    got = client.text_classification(text, top_k=2, function_to_apply="sigmoid")
    assert len(got) == 2
    assert_ranked([{"label": e.label, "score": e.score} for e in got], expected(offline, [text], "sigmoid", 2)[0])


def test_predict_shapes(server, offline):
    def predict(body: dict) -> list:
        response = server.http.post("/predict", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    single = predict({"inputs": CORPUS[1]})  # a flat list: every label, sorted
    assert len(single) == 3
    assert_ranked(single, expected(offline, [CORPUS[1]])[0])
    batch = predict({"inputs": [[CORPUS[1]], [CORPUS[2]], [CORPUS[3], CORPUS[4]]]})  # TEI batch: list of lists
    for got, want in zip(batch, expected(offline, [CORPUS[1], CORPUS[2], (CORPUS[3], CORPUS[4])]), strict=True):
        assert_ranked(got, want)
    pair = predict({"inputs": [CORPUS[3], CORPUS[4]]})  # a list of two strings is ONE pair, as in TEI
    assert_ranked(pair, expected(offline, [(CORPUS[3], CORPUS[4])])[0])
    raw = predict({"inputs": CORPUS[5], "raw_scores": True})
    assert_ranked(raw, expected(offline, [CORPUS[5]], "none")[0])
    assert abs(sum(s["score"] for s in raw) - 1) > 1e-3  # logits, not probabilities


def test_truncation(server, offline):
    default = server.http.post("/predict", json={"inputs": LONG_TEXT}).json()
    assert_ranked(default, expected(offline, [LONG_TEXT])[0])
    left = server.http.post("/predict", json={"inputs": LONG_TEXT, "truncation_direction": "Left"}).json()
    logits = offline.run(offline.encode([LONG_TEXT], truncation_side="left"))
    want = postprocess.rank(postprocess.apply(logits, "softmax")[0], offline.labels, None)
    assert_ranked(left, want)
    refused = server.http.post("/predict", json={"inputs": LONG_TEXT, "truncate": False})
    assert refused.status_code == 413
    assert "64" in refused.json()["error"] and refused.json()["error_type"] == "Validation"


def test_tokenize_and_decode(server, offline):
    tokens = server.http.post("/tokenize", json={"inputs": [CORPUS[0], CORPUS[3]]}).json()
    for text, got in zip([CORPUS[0], CORPUS[3]], tokens, strict=True):
        want = offline.tokenizer.encodings([text])[0]
        assert [t["id"] for t in got] == want.ids
        assert got[0]["special"] and got[0]["start"] is None
        for token in got[1:-1]:
            assert token["text"] == text[token["start"] : token["stop"]]
    ids = [t["id"] for t in tokens[0]]
    decoded = server.http.post("/decode", json={"ids": ids}).json()
    assert decoded == [offline.tokenizer.decode(ids, skip_special_tokens=True)]
    both = server.http.post("/decode", json={"ids": [ids, ids], "skip_special_tokens": False}).json()
    assert both == [offline.tokenizer.decode(ids)] * 2


def test_health_info_metrics_docs(server, offline):
    assert server.http.get("/health").status_code == 200
    info = server.http.get("/info").json()
    assert info["labels"] == list(offline.labels)
    assert info["max_input_length"] == 64 and info["max_client_batch_size"] == 32
    server.http.post("/predict", json={"inputs": "counted"})
    metrics = server.http.get("/metrics").text
    counted = r'textclass_requests_total\{method="POST",model="[^"]+",route="/predict",status="200"\} [1-9]'
    assert re.search(counted, metrics)
    for name in ("textclass_request_duration_seconds_bucket", "textclass_queue_size", "textclass_batch_size_bucket",
                 "textclass_batch_tokens_bucket", "textclass_inference_duration_seconds_bucket"):  # fmt: skip
        assert name in metrics
    assert server.http.get("/docs").status_code == 200
    assert "/predict" in server.http.get("/openapi.json").json()["paths"]
    assert '"event": "access"' in server.log()  # structured access log lines


def test_concurrent_clients_match_offline(server, offline):
    """32 clients at once, each with its own texts: every answer is its own, in its own order."""
    requests = [
        [f"{CORPUS[(client + k) % len(CORPUS)]} (client {client}, text {k})" for k in range(1 + client % 5)]
        for client in range(32)
    ]
    answers: dict[int, list] = {}

    def client(index: int) -> None:
        texts = requests[index]
        if index % 2:
            answers[index] = server.http.post("/", json={"inputs": texts}).json()
        else:
            answers[index] = server.http.post("/predict", json={"inputs": [[t] for t in texts]}).json()

    before = batches_run(server)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, texts in enumerate(requests):
        for got, want in zip(answers[index], expected(offline, texts), strict=True):
            assert_ranked(got, want)
    # Requests shared model batches: fewer batches ran than requests were made.
    assert batches_run(server) - before < len(requests)


def batches_run(server: LiveServer) -> float:
    metrics = server.http.get("/metrics").text
    return float(re.search(r"^textclass_batch_size_count\{[^}]*\} (\S+)$", metrics, re.M).group(1))


# ---- limits and errors ------------------------------------------------------------------------------
ERROR_CASES = [
    ("malformed JSON", "/predict", b'{"inputs": "x', 422, "not valid JSON"),
    ("wrong type", "/predict", {"inputs": 5}, 422, "inputs must be"),
    ("missing inputs", "/", {"parameters": {}}, 422, "inputs is required"),
    ("empty list", "/predict", {"inputs": []}, 422, "must not be empty"),
    ("empty list on /", "/", {"inputs": []}, 422, "must not be empty"),
    ("three strings", "/predict", {"inputs": ["a", "b", "c"]}, 422, "a list of strings is one input"),
    ("too many texts", "/predict", {"inputs": [["t"]] * 33}, 413, "at most 32"),
    ("too many texts on /", "/", {"inputs": ["t"] * 33}, 413, "at most 32"),
    ("payload too large", "/predict", {"inputs": "x" * 2_100_000}, 413, "limit is 2,000,000 bytes"),
    ("too long, truncate=false", "/predict", {"inputs": LONG_TEXT, "truncate": False}, 413, "at most 64"),
    ("bad function", "/", {"inputs": "x", "parameters": {"function_to_apply": "tanh"}}, 422, "function_to_apply"),
    ("top_k zero", "/", {"inputs": "x", "parameters": {"top_k": 0}}, 422, "top_k"),
    ("bad direction", "/predict", {"inputs": "x", "truncation_direction": "up"}, 422, "truncation_direction"),
    ("bad ids", "/decode", {"ids": [-1]}, 422, "ids must be a list of token ids (0 to 4294967295)"),
    ("string for a boolean", "/predict", {"inputs": "x", "raw_scores": "true"}, 422, "raw_scores"),
    ("not UTF-8", "/predict", b'{"inputs": "\xff"}', 400, "error parsing the body"),
    ("unknown route", "/nope", {}, 404, "Not Found"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_matrix(server, case):
    _, route, body, status, message = case
    if isinstance(body, bytes):
        response = server.http.post(f"{route}", content=body, headers={"content-type": "application/json"})
    else:
        response = server.http.post(f"{route}", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"}
    assert message in response.json()["error"]


def test_chunked_payload_over_limit(server):
    def chunks():
        for _ in range(25):
            yield b"x" * 100_000

    response = server.http.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error_type"] == "Validation"
    assert server.http.post("/predict", json={"inputs": "still serving"}).status_code == 200


def test_api_key(guarded):
    from huggingface_hub import InferenceClient

    assert guarded.http.post("/predict", json={"inputs": "x"}).status_code == 401
    wrong = guarded.http.post("/predict", json={"inputs": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error_type"] == "Validation"
    assert guarded.http.get("/info").status_code == 401
    info = guarded.http.get("/info", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["max_batch_tokens"] == 256  # --max-batch-tokens: the one budget, also the forward passes'
    assert guarded.http.get("/health").status_code == 200  # probes need no key
    right = guarded.http.post("/predict", json={"inputs": "x"}, headers={"Authorization": f"Bearer {KEY}"})
    assert right.status_code == 200
    assert len(InferenceClient(base_url=guarded.url, api_key=KEY).text_classification("x")) == 3


def test_overload_answers_each_request_once_or_429(guarded, offline):
    """80 requests of 32 texts against a limit of 2: each admitted one gets exactly its own answer, the rest 429."""
    requests = [[f"{CORPUS[(r + k) % len(CORPUS)]} #{r}.{k}" for k in range(32)] for r in range(80)]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=guarded.url, limits=limits, timeout=120, headers=headers) as http:
            return await asyncio.gather(*(http.post("/predict", json={"inputs": [[t] for t in texts]})
                                          for texts in requests))  # fmt: skip

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1
    for texts, response in zip(requests, responses):
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            assert response.json()["error_type"] == "Overloaded"
            continue
        for got, want in zip(response.json(), expected(offline, texts), strict=True):
            assert_ranked(got, want)


# ---- the playground page in a real browser ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium: apt-get install chromium")
def test_ui_in_headless_chromium(server, offline):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright")
    text = CORPUS[9]
    want = expected(offline, [text])[0]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/ui")
            sync_api.expect(page.locator("#model")).to_contain_text("LABEL_0")
            page.fill("#text", text)
            page.click("#classify")
            rows = page.locator("#results .row")
            sync_api.expect(rows).to_have_count(3)
            sync_api.expect(page.locator("#status")).to_contain_text("Latency:")
            for index, label in enumerate(want):
                row = rows.nth(index)
                assert row.get_attribute("data-label") == label["label"]
                assert float(row.locator(".score").inner_text()) == pytest.approx(label["score"], abs=1e-4)
                width = row.locator(".bar").evaluate("bar => parseFloat(bar.style.width)")
                assert width == pytest.approx(label["score"] * 100, abs=0.1)
        finally:
            browser.close()
