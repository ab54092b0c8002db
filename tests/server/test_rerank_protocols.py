"""Cohere's and Jina's rerank shapes (/v2/rerank, /v1/rerank) against a live server, with the real `cohere` SDK and
plain HTTP: scores equal transformers' on a tiny random cross-encoder, sorted best first, top_n, their own limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import CORPUS, build_checkpoint
from serverutil import LiveServer, without_fast_path
from textclass.classifier import Classifier
from textclass.server.app import create_app
from textclass.server.settings import ServerSettings

QUERY = "What does the quick fox do?"
DOCS = [*CORPUS, " ".join(CORPUS)]  # the last is over the tiny model's 64-token limit: truncated, as on /rerank
LIMIT = 40  # --max-rerank-documents in these tests: above the client batch size (32), below the default


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory, vocab_txt):
    """A one-output BERT cross-encoder; a wide init spreads its scores so their order is not float noise."""
    folder = tmp_path_factory.mktemp("cross-encoder")
    model, tokenizer = build_checkpoint(folder, "bert", vocab_txt, num_labels=1, initializer_range=0.5)
    return folder, model, tokenizer


def reference_logits(cross_encoder, docs: list[str], max_doc_tokens: int | None = None) -> np.ndarray:
    """transformers' logit for each (QUERY, doc) pair; max_doc_tokens: each document cut to that many tokens."""
    import torch

    _, model, tokenizer = cross_encoder
    if max_doc_tokens is not None:
        docs = [tokenizer.convert_tokens_to_string(tokenizer.tokenize(doc)[:max_doc_tokens]) for doc in docs]
    batch = tokenizer([QUERY] * len(docs), docs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].numpy()


def expected_ranking(logits: np.ndarray, top_n: int | None = None) -> tuple[list[int], np.ndarray]:
    order = list(np.argsort(-logits, kind="stable"))[:top_n]
    return order, 1 / (1 + np.exp(-logits[order]))


@pytest.fixture(scope="module")
def server(cross_encoder, tmp_path_factory):
    live = LiveServer(cross_encoder[0], tmp_path_factory.mktemp("logs") / "rerank.log", "--model-id", "acme/ranker",
                      "--max-rerank-documents", str(LIMIT))  # fmt: skip
    try:
        yield live.wait_healthy()
    finally:
        code = live.stop()
    assert code == 0, live.log()


def test_cohere_v2_sdk(server, cross_encoder):
    import cohere

    logits = reference_logits(cross_encoder, DOCS)
    assert np.diff(np.sort(logits)).min() > 1e-3  # distinct scores: the order checked is meaningful
    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    top = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)  # any name: one model served
    order, scores = expected_ranking(logits, 3)
    assert [r.index for r in top.results] == order
    np.testing.assert_allclose([r.relevance_score for r in top.results], scores, atol=1e-5)
    assert top.id and top.meta.api_version.version == "2"
    _, _, tokenizer = cross_encoder
    pairs = tokenizer([QUERY] * len(DOCS), DOCS, truncation=True)["input_ids"]
    assert top.meta.tokens.input_tokens == sum(map(len, pairs))

    every = client.rerank(model="acme/ranker", query=QUERY, documents=DOCS, top_n=100)
    order, scores = expected_ranking(logits)
    assert [r.index for r in every.results] == order
    np.testing.assert_allclose([r.relevance_score for r in every.results], scores, atol=1e-5)
    tei = server.http.post("/rerank", json={"query": QUERY, "texts": DOCS}).json()  # the same scores as TEI's route
    assert [(r["index"], r["score"]) for r in tei] == [(r.index, r.relevance_score) for r in every.results]

    # max_tokens_per_doc: each document cut to its first 5 tokens before it meets the query (not the last document:
    # it starts as the first does, and two equal pairs would tie).
    cut = client.rerank(model="m", query=QUERY, documents=DOCS[:-1], max_tokens_per_doc=5)
    order, scores = expected_ranking(reference_logits(cross_encoder, DOCS[:-1], max_doc_tokens=5))
    assert [r.index for r in cut.results] == order
    np.testing.assert_allclose([r.relevance_score for r in cut.results], scores, atol=1e-5)
    uncut = {r.index: r.relevance_score for r in every.results}
    assert max(abs(r.relevance_score - uncut[r.index]) for r in cut.results) > 1e-3  # the cut changed the pairs


def test_cohere_v1_sdk_and_jina_over_http(server, cross_encoder):
    import cohere

    docs = ["A fox jumps.", {"text": DOCS[2], "id": "doc-7", "meta": {"page": 3}}, {"text": DOCS[9]}, DOCS[5]]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    order, scores = expected_ranking(reference_logits(cross_encoder, texts), 2)

    v1 = cohere.Client(api_key="unused", base_url=server.url).rerank(
        model="rerank-english-v3.0", query=QUERY, documents=docs, top_n=2, return_documents=True
    )
    assert [r.index for r in v1.results] == order
    np.testing.assert_allclose([r.relevance_score for r in v1.results], scores, atol=1e-5)
    assert [r.document.text for r in v1.results] == [texts[i] for i in order]

    # Jina: what its API and LangChain's JinaRerank send; documents come back by default, objects as they were sent.
    jina = server.http.post("/v1/rerank", json={"model": "jina-reranker-v2-base-multilingual", "query": QUERY,
                                                "documents": docs, "top_n": 2})  # fmt: skip
    assert jina.status_code == 200, jina.text
    body = jina.json()
    assert [r["index"] for r in body["results"]] == order and body["model"] == "acme/ranker"
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], scores, atol=1e-5)
    sent = [{"text": d} if isinstance(d, str) else d for d in docs]
    assert [r["document"] for r in body["results"]] == [sent[i] for i in order]
    _, _, tokenizer = cross_encoder
    assert body["usage"]["total_tokens"] == sum(map(len, tokenizer([QUERY] * 4, texts, truncation=True)["input_ids"]))
    bare = server.http.post("/v1/rerank", json={"query": QUERY, "documents": docs, "return_documents": False}).json()
    assert all(set(r) == {"index", "relevance_score"} for r in bare["results"]) and len(bare["results"]) == 4


def test_their_own_document_limit(server):
    """Past TEI's client batch size (32), up to --max-rerank-documents; one more is 413."""
    many = [f"{CORPUS[i % len(CORPUS)]} ({i})" for i in range(LIMIT)]
    for path in ("/v2/rerank", "/v1/rerank"):
        answered = server.http.post(path, json={"model": "m", "query": QUERY, "documents": many})
        assert answered.status_code == 200 and len(answered.json()["results"]) == LIMIT, answered.text
        over = server.http.post(path, json={"model": "m", "query": QUERY, "documents": [*many, "one more"]})
        assert over.status_code == 413 and f"at most {LIMIT}" in over.json()["error"], over.text
    assert server.http.post("/rerank", json={"query": QUERY, "texts": many}).status_code == 413  # TEI's route: 32


BAD = [
    ("no query", "/v2/rerank", {"model": "m", "documents": ["a"]}, "query is required"),
    ("no documents", "/v2/rerank", {"model": "m", "query": QUERY}, "documents is required"),
    ("empty documents", "/v2/rerank", {"model": "m", "query": QUERY, "documents": []}, "documents must not be empty"),
    ("a number for a document", "/v2/rerank", {"query": QUERY, "documents": ["a", 3]}, "documents"),
    ("objects on v2", "/v2/rerank", {"query": QUERY, "documents": [{"text": "a"}]}, "documents"),
    ("top_n 0", "/v2/rerank", {"query": QUERY, "documents": ["a"], "top_n": 0}, "top_n"),
    ("top_n a string", "/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": "2"}, "top_n"),
    ("max_tokens_per_doc 0", "/v2/rerank", {"query": QUERY, "documents": ["a"], "max_tokens_per_doc": 0},
     "max_tokens_per_doc"),
    ("an object without text", "/v1/rerank", {"query": QUERY, "documents": [{"title": "a"}]}, "documents"),
    ("empty documents on v1", "/v1/rerank", {"query": QUERY, "documents": []}, "documents must not be empty"),
    ("rank_fields past text", "/v1/rerank", {"query": QUERY, "documents": ["a"], "rank_fields": ["title"]},
     "rank_fields"),
    ("a list for the query", "/v1/rerank", {"query": [QUERY], "documents": ["a"]}, "query"),
    # The empty-text rule of every other route: a blank text is refused, naming where it is.
    ("a blank document", "/v2/rerank", {"query": QUERY, "documents": ["a", " \t"]},
     "documents[1] is empty or only whitespace"),
    ("a blank query", "/v2/rerank", {"query": "", "documents": ["a"]}, "query is empty or only whitespace"),
    ("a blank string on v1", "/v1/rerank", {"query": QUERY, "documents": ["a", "b", "\n"]},
     "documents[2] is empty or only whitespace"),
    ("a blank object on v1", "/v1/rerank", {"query": QUERY, "documents": [{"text": " "}]},
     "documents[0] is empty or only whitespace"),
    ("a blank query on v1", "/v1/rerank", {"query": "\u3000", "documents": ["a"]}, "query is empty or only whitespace"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_requests_get_422(server, case):
    _, path, body, message = case
    response = server.http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "error_type"} and message in response.json()["error"], response.text


def test_a_classifier_cannot_rerank(tmp_path, tiny_checkpoints):
    import cohere

    live = LiveServer(tiny_checkpoints["bert"][0], Path(tmp_path) / "server.log").wait_healthy()
    try:
        with pytest.raises(cohere.core.ApiError) as refused:
            cohere.ClientV2(api_key="unused", base_url=live.url).rerank(model="m", query=QUERY, documents=["a"])
        assert refused.value.status_code == 424 and "one output" in refused.value.body["error"]
    finally:
        assert live.stop() == 0, live.log()


def test_fast_path_answers_as_the_declared_routes(cross_encoder):
    """FastPath answers both routes; FastAPI's declared routes (which document them) give the same answers."""
    app = create_app(Classifier.from_pretrained(cross_encoder[0], dtype="fp32"), ServerSettings(model_id="r"))
    bodies = [("/v2/rerank", {"model": "m", "query": QUERY, "documents": DOCS[:4], "top_n": 2}),
              ("/v1/rerank", {"query": QUERY, "documents": ["a", {"text": "b", "x": 1}]}),
              ("/v2/rerank", {"query": QUERY, "documents": []}), ("/v1/rerank", {"query": 1, "documents": ["a"]})]

    async def both() -> list[tuple[httpx.Response, httpx.Response]]:
        async with app.router.lifespan_context(app):
            full = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
            declared = httpx.AsyncClient(transport=httpx.ASGITransport(app=without_fast_path(app)),
                                         base_url="http://app")  # fmt: skip
            async with full, declared:
                return [(await full.post(p, json=b), await declared.post(p, json=b)) for p, b in bodies]

    answers = asyncio.run(both())
    assert [(fast.status_code, slow.status_code) for fast, slow in answers] == [(200, 200)] * 2 + [(422, 422)] * 2
    for fast, slow in answers:
        fast_body, slow_body = fast.json(), slow.json()
        assert fast_body.pop("id", None) != slow_body.pop("id", 0)  # a fresh id per answer (errors have none)
        assert fast_body == slow_body
