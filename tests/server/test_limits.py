"""Bounded work per request and clean answers at every edge, through the app (in process, as uvicorn runs it):
the token bound (413 before model work), the request timeout (503, work dropped), blank texts (422 naming the
index), /predict's shapes, torch-only methods without torch (424), JSON 500s, and /docs without a CDN."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from conftest import CORPUS
from textclass.classifier import Classifier
from textclass.server.app import create_app
from textclass.server.settings import ServerSettings

DOCUMENT = " ".join(CORPUS * 20)  # ~3,000 tokens: dozens of the tiny model's 64-token windows
LONG = " ".join(CORPUS)  # past the tiny model's 64 tokens


class CountingClassifier(Classifier):
    """The real classifier, counting the rows it runs; `hold` makes every batch wait until released."""

    rows = 0
    hold = threading.Event()
    release = threading.Event()

    def run(self, encoded, batch_size=None):
        type(self).rows += len(encoded)
        if self.hold.is_set():
            self.release.wait(30)
        return super().run(encoded, batch_size)


@pytest.fixture
def counting(tiny_checkpoints) -> CountingClassifier:
    real = Classifier.from_pretrained(tiny_checkpoints["bert"][0], dtype="fp32")
    CountingClassifier.rows = 0
    CountingClassifier.hold.clear()
    CountingClassifier.release.clear()
    return CountingClassifier(real.checkpoint, real.tokenizer, real.engine, True, real.device, real.max_batch_tokens)


def call(app, requests: list[tuple[str, str, Any]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app", timeout=60) as http:
                return [await http.request(method, path, json=body) for method, path, body in requests]

    return asyncio.run(run())


def test_request_token_bound_refuses_before_any_model_work(counting):
    app = create_app(counting, ServerSettings(max_request_tokens=500))
    chunked = {"inputs": DOCUMENT, "parameters": {"long_text": "chunk"}}
    info, small, big, pairs, batch = call(app, [
        ("GET", "/info", None),
        ("POST", "/", {"inputs": CORPUS[0]}),
        ("POST", "/", chunked),
        ("POST", "/predict", {"inputs": [[LONG, LONG]] * 9}),  # 9 pairs truncated to 64 tokens: 576
        ("POST", "/predict", {"inputs": [[t] for t in CORPUS[:8]]}),
    ])  # fmt: skip
    assert info.json()["max_request_tokens"] == 500 and info.json()["request_timeout"] == 60
    assert small.status_code == 200 and batch.status_code == 200
    rows_before = counting.rows
    for refused in (big, pairs):
        assert refused.status_code == 413, refused.text
        assert refused.json()["error_type"] == "Validation"
        assert "at most 500 are allowed per request (--max-request-tokens)" in refused.json()["error"]
    assert counting.rows == rows_before  # not one of their rows reached the model
    # Occlusion's variants count too: a long text has one per word.
    explained = call(create_app(counting, ServerSettings(max_request_tokens=500)),
                     [("POST", "/explain", {"inputs": " ".join(CORPUS[:6])})])[0]  # fmt: skip
    assert explained.status_code == 413 and "--max-request-tokens" in explained.json()["error"]


def test_integrated_gradients_weighs_a_forward_and_a_backward_pass_per_step(counting):
    """A token-step of integrated gradients costs IG_TOKEN_COST tokens of the bound: a request whose tokens × steps
    fit but whose real work does not is refused before any of it runs."""
    from textclass.tasks.explain import IG_TOKEN_COST, tokens_of

    length = len(tokens_of(counting.tokenizer, CORPUS[5])[0][0].ids)
    fits = 500 // (length * IG_TOKEN_COST)  # steps whose weighted work is within 500
    over = 500 // length  # tokens × steps within 500, the weighted work past it
    assert fits >= 1 and over * length * IG_TOKEN_COST > 500
    app = create_app(counting, ServerSettings(max_request_tokens=500))
    ok, refused = call(app, [
        ("POST", "/explain", {"inputs": CORPUS[5], "method": "integrated_gradients", "steps": steps})
        for steps in (fits, over)
    ])  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 413 and f"needs {over * length * IG_TOKEN_COST:,} tokens" in refused.json()["error"]


def test_a_request_past_the_timeout_gets_503_and_its_queued_work_is_dropped(counting):
    app = create_app(counting, ServerSettings(request_timeout=1.5, max_batch_tokens=64))

    async def run() -> tuple[httpx.Response, httpx.Response, float, int, int]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
                counting.hold.set()  # every batch now waits: the request cannot finish in time
                started = time.perf_counter()
                slow = await http.post("/predict", json={"inputs": [[t] for t in CORPUS[:16]]})
                waited = time.perf_counter() - started
                rows_at_timeout = counting.rows
                counting.hold.clear()
                counting.release.set()
                await asyncio.sleep(1.0)  # the batch that was running finishes; nothing else of it may run
                rows_later = counting.rows
                after = await http.post("/predict", json={"inputs": CORPUS[0]})
                return slow, after, waited, rows_at_timeout, rows_later

    slow, after, waited, rows_at_timeout, rows_later = asyncio.run(run())
    assert slow.status_code == 503, slow.text
    assert slow.json()["error_type"] == "Unhealthy" and "--request-timeout" in slow.json()["error"]
    assert 1.4 < waited < 10
    # 16 texts at 64 tokens a batch: several batches; one ran when the deadline passed, the rest were dropped.
    assert rows_later == rows_at_timeout < 16
    assert after.status_code == 200


def test_blank_texts_are_422_naming_the_index(counting):
    app = create_app(counting, ServerSettings())
    cases = [  # (path, body, where the blank text is)
        ("/", {"inputs": ""}, "inputs is"),
        ("/", {"inputs": ["fine", " \t\n"]}, "inputs[1] is"),
        ("/predict", {"inputs": "\u3000"}, "inputs is"),
        ("/predict", {"inputs": [["fine"], ["good", " "]]}, "inputs[1][1] is"),
        ("/predict", {"inputs": ["a premise", ""]}, "inputs[1] is"),
        ("/rerank", {"query": " ", "texts": ["a"]}, "query is"),
        ("/rerank", {"query": "q", "texts": ["a", "b", ""]}, "texts[2] is"),
        ("/tokenize", {"inputs": ["x", "\n"]}, "inputs[1] is"),
        ("/models/tiny-bert0/predict", {"inputs": ""}, "inputs is"),
    ]
    responses = call(app, [("POST", path, body) for path, body, _ in cases])
    for (path, body, where), response in zip(cases, responses, strict=True):
        assert response.status_code == 422, (path, body, response.text)
        assert response.json()["error"].startswith(f"{where} empty or only whitespace"), (path, response.text)
    assert counting.rows == 1  # the warm-up only


def test_predict_says_which_shape_it_expected(counting):
    app = create_app(counting, ServerSettings())
    cases = [
        ({"inputs": ["a", "b", "c"]}, 'a list of 3 strings, but a list of strings is one input'),
        ({"inputs": [["a"], "b"]}, "inputs[1] is a string, but inputs is a batch"),
        ({"inputs": [["a"], ["b", "c", "d"]]}, "inputs[1] has 3 strings; in a batch every item is [text]"),
        ({"inputs": [["a"], []]}, "inputs[1] has 0 strings"),
        ({"inputs": [["a", 3]]}, "inputs[0][1] must be a string; got a number"),
        ({"inputs": ["a", {"b": 1}]}, "inputs[1] is an object, but inputs[0] is a string"),
        ({"inputs": 5}, 'inputs must be a string, a pair ["text", "text_pair"], or a batch'),
    ]
    accepted = [{"inputs": "a"}, {"inputs": ["a"]}, {"inputs": ["a", "b"]}, {"inputs": [["a"], ["b", "c"], ["d"]]}]
    responses = call(app, [("POST", "/predict", body) for body, _ in cases] +
                     [("POST", "/predict", body) for body in accepted])  # fmt: skip
    for (body, message), response in zip(cases, responses, strict=False):
        assert response.status_code == 422 and message in response.json()["error"], (body, response.text)
    assert [r.status_code for r in responses[len(cases):]] == [200] * len(accepted)
    assert [len(r.json()) for r in responses[len(cases):]] == [3, 3, 3, 3]  # one input: labels; a batch: 3 inputs


def test_integrated_gradients_without_torch_is_424_naming_the_extra(counting, monkeypatch):
    from textclass import extras

    installed = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module != "torch" and installed(module))  # torch-free
    app = create_app(counting, ServerSettings())
    response = call(app, [("POST", "/explain", {"inputs": "a fine film", "method": "integrated_gradients"})])[0]
    assert response.status_code == 424, response.text
    assert response.json()["error_type"] == "Backend" and "textclass[torch]" in response.json()["error"]
    assert "\n" not in response.json()["error"]


def test_unexpected_errors_are_json_500_on_every_route(counting, monkeypatch):
    from textclass.server import answers, oip, routes

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    for module, name in [(answers, "tokenize_answer"), (answers, "decode_answer"), (routes, "explain_answer"),
                         (oip, "answer")]:  # fmt: skip
        monkeypatch.setattr(module, name, broken)
    monkeypatch.setattr(counting.tokenizer, "encodings", broken, raising=False)
    app = create_app(counting, ServerSettings())
    responses = call(app, [
        ("POST", "/tokenize", {"inputs": "x"}), ("POST", "/decode", {"ids": [1]}),
        ("POST", "/explain", {"inputs": "x"}),
        ("POST", "/", {"inputs": "x", "parameters": {"long_text": "chunk"}}),
        ("POST", "/v2/models/tiny-bert0/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                             "data": ["x"]}]}),  # OIP's route: JSON 500 too
    ])  # fmt: skip
    for response in responses:
        assert response.status_code == 500, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "unexpected server error (ZeroDivisionError); the server log has the "
                                            "details", "error_type": "Backend"}  # fmt: skip


def test_docs_are_served_from_the_package(counting):
    app = create_app(counting, ServerSettings(api_key="k"))
    docs, redoc, script, css, redoc_script = call(app, [
        ("GET", "/docs", None), ("GET", "/redoc", None), ("GET", "/docs/assets/swagger-ui-bundle.js", None),
        ("GET", "/docs/assets/swagger-ui.css", None), ("GET", "/docs/assets/redoc.standalone.js", None),
    ])  # fmt: skip
    for page in (docs, redoc):
        assert page.status_code == 200 and "http://" not in page.text and "https://" not in page.text, page.text
    assert '"/docs/assets/swagger-ui-bundle.js"' in docs.text and '"/docs/assets/redoc.standalone.js"' in redoc.text
    assert script.status_code == css.status_code == redoc_script.status_code == 200  # open without the API key
    assert len(script.content) > 500_000 and b"SwaggerUIBundle" in script.content


def test_the_schema_states_the_served_models_window_bounds(counting):
    """chunk_tokens at most the model's limit and stride below the longest window's text tokens, in /openapi.json,
    on both routes that take them; the server's refusals start exactly past those maxima."""
    app = create_app(counting, ServerSettings())
    limit = counting.tokenizer.model_max_length  # 64
    max_stride = limit - 2 - 1  # BERT's [CLS] and [SEP] around the text, and one less than the text tokens
    chunk = {"long_text": "chunk"}
    schema, *answers = call(app, [
        ("GET", "/openapi.json", None),
        ("POST", "/", {"inputs": LONG, "parameters": {**chunk, "chunk_tokens": limit, "stride": max_stride}}),
        ("POST", "/", {"inputs": LONG, "parameters": {**chunk, "chunk_tokens": limit + 1}}),
        ("POST", "/predict", {"inputs": LONG, **chunk, "stride": max_stride + 1}),
    ])  # fmt: skip
    components = schema.json()["components"]["schemas"]
    for name in ("ClassifyParameters", "PredictRequest"):
        properties = components[name]["properties"]
        bounds = {field: [o.get("maximum") for o in properties[field]["anyOf"] if o.get("type") == "integer"]
                  for field in ("chunk_tokens", "stride")}  # fmt: skip
        assert bounds == {"chunk_tokens": [limit], "stride": [max_stride]}, (name, bounds)
    assert [r.status_code for r in answers] == [200, 422, 422], [r.text for r in answers]
    assert "chunk_tokens must be at most the model's limit 64" in answers[1].json()["error"]
    assert "stride must be smaller than the longest window's 62 text tokens" in answers[2].json()["error"]
