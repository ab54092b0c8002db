"""Cross-encoder reranking: Classifier.rerank against transformers' logits, TEI's POST /rerank, `textclass rerank`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from clikit import assert_clean_error
from conftest import CORPUS, build_checkpoint
from serverutil import LiveServer, without_fast_path
from textclass.classifier import Classifier
from textclass.cli.app import app as cli_app
from textclass.errors import InputError

QUERY = "What does the quick fox do?"
DOCS = [*CORPUS, " ".join(CORPUS)]  # the last is over the tiny model's 64-token limit: truncated by default


@pytest.fixture(scope="module")
def reranker(tmp_path_factory, vocab_txt):
    """A one-output BERT cross-encoder; a wide init spreads its scores so their order is not float noise."""
    folder = tmp_path_factory.mktemp("cross-encoder")
    model, tokenizer = build_checkpoint(folder, "bert", vocab_txt, num_labels=1, initializer_range=0.5)
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def reference(reranker) -> np.ndarray:
    """transformers' logits for every (QUERY, doc) pair, in DOCS order."""
    import torch

    _, model, tokenizer = reranker
    batch = tokenizer([QUERY] * len(DOCS), DOCS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].numpy()


@pytest.fixture(scope="module")
def clf(reranker) -> Classifier:
    return Classifier.from_pretrained(reranker[0], dtype="fp32")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def assert_ranking(ranked: list[dict], logits: np.ndarray, raw: bool, atol: float = 1e-5) -> None:
    """Best first, every index once, each score the (sigmoid of the) reference logit of its text."""
    order = list(np.argsort(-logits, kind="stable"))
    assert [r["index"] for r in ranked] == order[: len(ranked)]
    want = logits if raw else sigmoid(logits)
    np.testing.assert_allclose([r["score"] for r in ranked], want[[r["index"] for r in ranked]], atol=atol)


# ---- Python API -----------------------------------------------------------------------------------------
def test_scores_and_order_match_transformers(clf, reference):
    assert np.diff(np.sort(reference)).min() > 1e-3  # distinct scores: the order below is meaningful
    raw = clf.rerank(QUERY, DOCS, raw_scores=True)
    assert_ranking(raw, reference, raw=True, atol=1e-4)
    ranked = clf.rerank(QUERY, DOCS)
    assert_ranking(ranked, reference, raw=False)
    assert all(set(r) == {"index", "score"} and 0 < r["score"] < 1 for r in ranked)


def test_top_n_return_text_and_batches(clf, reranker, reference):
    top = clf.rerank(QUERY, DOCS, top_n=3, return_text=True)
    assert len(top) == 3
    assert_ranking(top, reference, raw=False)
    assert [r["text"] for r in top] == [DOCS[r["index"]] for r in top]
    assert len(clf.rerank(QUERY, DOCS, top_n=100)) == len(DOCS)
    # A small token budget splits the pairs over several length-sorted batches: same answer.
    small = Classifier.from_pretrained(reranker[0], dtype="fp32", max_batch_tokens=128)
    assert_ranking(small.rerank(QUERY, DOCS), reference, raw=False)
    # The default CPU engine (ONNX Runtime fp32) ranks the same.
    assert_ranking(Classifier.from_pretrained(reranker[0]).rerank(QUERY, DOCS), reference, raw=False, atol=1e-4)


def test_errors(clf, tiny_checkpoints):
    with pytest.raises(InputError, match="one output"):
        Classifier.from_pretrained(tiny_checkpoints["bert"][0], dtype="fp32").rerank(QUERY, ["a text"])  # 3 labels
    with pytest.raises(InputError, match="texts must not be empty"):
        clf.rerank(QUERY, [])
    with pytest.raises(InputError, match="top_n"):
        clf.rerank(QUERY, DOCS, top_n=0)
    with pytest.raises(InputError, match="texts\\[1\\]"):
        clf.rerank(QUERY, ["fine", 5])
    with pytest.raises(InputError, match="at most 64"):
        clf.rerank(QUERY, DOCS, truncate=False)
    # The one rule for empty text holds here too: a blank text or query is refused, not scored.
    with pytest.raises(InputError, match=r"^input 1 is empty \(or only whitespace\); give it text to rank$"):
        clf.rerank(QUERY, ["fine", " \n"])
    with pytest.raises(InputError, match=r"^query is empty \(or only whitespace\)"):
        clf.rerank("\t", ["fine"])


# ---- the server: TEI's /rerank ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(reranker, tmp_path_factory):
    live = LiveServer(reranker[0], tmp_path_factory.mktemp("logs") / "rerank.log")
    try:
        yield live.wait_healthy()
    finally:
        code = live.stop()
    assert code == 0, live.log()


def test_rerank_route(server, clf, reference):
    texts = DOCS[:10]
    response = server.http.post("/rerank", json={"query": QUERY, "texts": texts})
    assert response.status_code == 200, response.text
    ranked = response.json()
    assert all(set(r) == {"index", "score"} for r in ranked)
    assert_ranking(ranked, reference[:10], raw=False, atol=1e-4)
    body = {"query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True, "truncation_direction": "Left"}
    ranked = server.http.post("/rerank", json=body).json()
    assert [r["text"] for r in ranked] == [DOCS[r["index"]] for r in ranked]
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    # Left truncation keeps the long text's end: only its score moves.
    left = clf.run(clf.encode([(QUERY, DOCS[-1])], truncation_side="left"))[0, 0]
    assert abs(left - reference[-1]) > 1e-3
    by_index = {r["index"]: r["score"] for r in ranked}
    np.testing.assert_allclose([by_index[i] for i in range(len(DOCS))], [*reference[:-1], left], atol=1e-4)
    info = server.http.get("/info").json()
    assert "reranker" in info["model_type"]
    schema = server.http.get("/openapi.json").json()
    assert {"query", "texts", "return_text", "raw_scores"} <= set(schema["components"]["schemas"]["RerankRequest"]
                                                                  ["properties"])  # fmt: skip


ERROR_CASES = [
    ("empty texts", "/rerank", {"query": QUERY, "texts": []}, 422, "texts must not be empty"),
    ("too many texts", "/rerank", {"query": QUERY, "texts": ["t"] * 33}, 413, "33 texts but at most 32"),
    ("no query", "/rerank", {"texts": ["t"]}, 422, "query is required"),
    ("too long", "/rerank", {"query": QUERY, "texts": [DOCS[-1]], "truncate": False}, 413, "at most 64"),
    ("zero-shot on a reranker", "/", {"inputs": "x", "parameters": {"candidate_labels": ["a", "b"]}}, 424, "NLI"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_route_errors(server, case):
    _, route, body, status, message = case
    response = server.http.post(route, json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"} and message in response.json()["error"]


def test_fast_path_answers_as_fastapi_does(reranker, monkeypatch):
    """/rerank is answered by the fast path; FastAPI's declared route must give the same answers."""
    bodies = [{"query": QUERY, "texts": DOCS[:4], "return_text": True}, {"query": QUERY, "texts": []},
              {"query": QUERY, "texts": DOCS[:2], "raw_scores": True}, {"query": 5, "texts": ["t"]}]  # fmt: skip
    answered = fast_and_declared(reranker[0], "/rerank", bodies, monkeypatch)
    assert answered == [(200, True), (422, False), (200, True), (422, False)]  # FastAPI words a body that won't parse


def fast_and_declared(folder: Path, path: str, bodies: list[dict], monkeypatch) -> list[tuple[int, bool]]:
    """POST each body to the app and to its declared FastAPI route (the app without FastPath); both must answer
    the same status and bytes. Returns (status, whether the fast path answered it itself) per body."""
    from textclass.server import fastpath
    from textclass.server.app import create_app
    from textclass.server.settings import ServerSettings

    app = create_app(Classifier.from_pretrained(folder), ServerSettings())
    sent = []
    monkeypatch.setattr(fastpath, "send_json", lambda *args, send=fastpath.send_json: sent.append(1) or send(*args))

    async def both() -> list[tuple[httpx.Response, httpx.Response, bool]]:
        async with app.router.lifespan_context(app):
            full = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
            declared = httpx.AsyncClient(transport=httpx.ASGITransport(app=without_fast_path(app)),
                                         base_url="http://app")  # fmt: skip
            out = []
            async with full, declared:
                for body in bodies:
                    before = len(sent)
                    response = await full.post(path, json=body)
                    out.append((response, await declared.post(path, json=body), len(sent) > before))
            return out

    answered = []
    for fast, slow, by_fast_path in asyncio.run(both()):
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), fast.text
        answered.append((fast.status_code, by_fast_path))
    return answered


# ---- the command line -------------------------------------------------------------------------------------
def test_cli(reranker, reference, tmp_path):
    runner = CliRunner()
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS[:10]) + "\n", encoding="utf-8")
    folder = str(reranker[0])
    args = ["rerank", QUERY, "--model", folder, "--dtype", "fp32"]
    as_json = runner.invoke(cli_app, [*args, "--input", str(docs), "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    ranked = json.loads(as_json.stdout)
    assert_ranking(ranked, reference[:10], raw=False)
    assert [r["text"] for r in ranked] == [DOCS[r["index"]] for r in ranked]
    piped = runner.invoke(cli_app, [*args, "--format", "jsonl", "--top-n", "2", "--raw-scores"],
                          input="\n".join(DOCS[:10]))  # fmt: skip
    rows = [json.loads(line) for line in piped.stdout.splitlines()]
    assert len(rows) == 2
    assert_ranking(rows, reference[:10], raw=True, atol=1e-4)
    table = runner.invoke(cli_app, [*args, "--input", str(docs)])
    assert table.exit_code == 0 and DOCS[ranked[0]["index"]][:20] in table.stdout


def test_cli_errors(tiny_checkpoints, reranker, tmp_path):
    runner = CliRunner()
    docs = tmp_path / "docs.txt"
    docs.write_text("one\ntwo\n", encoding="utf-8")
    classifier = ["rerank", QUERY, "--model", str(tiny_checkpoints["bert"][0]), "--dtype", "fp32", "-i", str(docs)]
    assert_clean_error(runner.invoke(cli_app, classifier), "one output")
    missing = ["rerank", QUERY, "--model", str(reranker[0]), "--input", str(tmp_path / "none.txt")]
    assert_clean_error(runner.invoke(cli_app, missing), "does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert_clean_error(runner.invoke(cli_app, ["rerank", QUERY, "--model", str(reranker[0]), "-i", str(empty)]),
                       "is empty")  # fmt: skip
    assert_clean_error(runner.invoke(cli_app, ["rerank", " ", "--model", str(reranker[0]), "-i", str(docs)]),
                       "query is empty")  # fmt: skip
