"""POST /explain and long documents over HTTP, and the /ui colouring in a real headless browser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS
from serverutil import LiveServer
from textclass.classifier import Classifier

DOCUMENT = " ".join(CORPUS * 3)  # far past the tiny model's 64 tokens
# Text that would run if it were ever treated as HTML; the emoji checks offsets counted in code points.
HOSTILE = 'so 😀 good <script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> [bold]film[/bold] & co'


@pytest.fixture(scope="module")
def folder(tiny_checkpoints) -> Path:
    return tiny_checkpoints["bert"][0]  # 3 labels, a 64-token limit


@pytest.fixture(scope="module")
def offline(folder) -> Classifier:
    return Classifier.from_pretrained(folder)


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    live = LiveServer(folder, tmp_path_factory.mktemp("logs") / "server.log")
    try:
        yield live.wait_healthy()
    finally:
        code = live.stop()
    assert code == 0, live.log()


def assert_same_explanation(got: dict, want: dict) -> None:
    assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-5)
    for part in ("tokens", "words"):
        strip = [{k: v for k, v in item.items() if k != "attribution"} for item in got[part]]
        assert strip == [{k: v for k, v in item.items() if k != "attribution"} for item in want[part]]
        np.testing.assert_allclose([i["attribution"] for i in got[part]], [i["attribution"] for i in want[part]],
                                   atol=1e-5)  # fmt: skip


def test_explain_route_answers_as_the_python_api(server, offline):
    one = server.http.post("/explain", json={"inputs": CORPUS[0]})
    assert one.status_code == 200, one.text
    assert_same_explanation(one.json(), offline.explain(CORPUS[0]))
    texts = [CORPUS[3], CORPUS[9]]
    many = server.http.post("/explain", json={"inputs": texts, "target": "LABEL_1", "unit": "token"}).json()
    for got, want in zip(many, offline.explain(texts, target="LABEL_1", unit="token"), strict=True):
        assert_same_explanation(got, want)
    body = {"inputs": [CORPUS[5]], "method": "integrated_gradients", "steps": 8, "baseline": "mask"}
    gradients = server.http.post("/explain", json=body).json()
    want = offline.explain([CORPUS[5]], method="integrated_gradients", steps=8, baseline="mask")
    assert_same_explanation(gradients[0], want[0])
    assert server.http.get("/info").json()["max_explain_batch_size"] == 8
    # Words without an ASCII letter are words (the schema's pattern once read them as JSON Schema's ASCII \w does).
    accented = server.http.post("/explain", json={"inputs": "éé & çà"})
    assert accented.status_code == 200, accented.text
    assert_same_explanation(accented.json(), offline.explain("éé & çà"))


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"inputs": ["t"] * 9}, 413, "at most 8"),
        ({"inputs": "t", "method": "lime"}, 422, "method"),
        ({"inputs": "t", "baseline": "delete", "method": "integrated_gradients"}, 422, "baseline for integrated"),
        ({"inputs": "t", "target": "LABEL_7"}, 422, "target must be one of the labels"),
        ({"inputs": "t", "steps": 0}, 422, "steps"),
        ({"inputs": ""}, 422, "inputs is empty or only whitespace"),  # the one rule for empty text
        ({"inputs": ["fine", " "]}, 422, "inputs[1] is empty or only whitespace"),
        ({"inputs": "\x00\x01"}, 422, "has no tokens to attribute"),  # not blank, but BERT's tokenizer drops it
        ({"inputs": []}, 422, "must not be empty"),
    ],
)
def test_explain_errors(server, body, status, message):
    response = server.http.post("/explain", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"} and message in response.json()["error"]


def test_long_text_on_classify_and_predict(server, offline):
    texts = [DOCUMENT, CORPUS[1]]
    want = offline(texts, long_text="chunk", chunk_tokens=40, stride=5, aggregate="max", top_k=None)
    params = {"long_text": "chunk", "chunk_tokens": 40, "stride": 5, "aggregate": "max"}
    got = server.http.post("/", json={"inputs": texts, "parameters": params}).json()
    predicted = server.http.post("/predict", json={"inputs": [[t] for t in texts], **params}).json()
    for answer in (got, predicted):
        for ranked, expected in zip(answer, want, strict=True):
            assert [r["label"] for r in ranked] == [e["label"] for e in expected]
            assert {r["windows"] for r in ranked} == {expected[0]["windows"]}
            np.testing.assert_allclose([r["score"] for r in ranked], [e["score"] for e in expected], atol=1e-5)
    assert want[0][0]["windows"] > 1 and want[1][0]["windows"] == 1
    plain = server.http.post("/predict", json={"inputs": DOCUMENT}).json()
    assert all("windows" not in r for r in plain)  # truncation stays the default, in the pipeline's shape
    for body, message in [
        ({"inputs": "t", "parameters": {"long_text": "chunk", "stride": 62}}, "stride"),
        ({"inputs": "t", "parameters": {"long_text": "chunk", "aggregate": "median"}}, "aggregate"),
        ({"inputs": "t", "parameters": {"long_text": "sliding"}}, "long_text"),
        ({"inputs": " ", "parameters": {"long_text": "chunk"}}, "inputs is empty or only whitespace"),
    ]:
        response = server.http.post("/", json=body)
        assert response.status_code == 422 and message in response.json()["error"], response.text
    pair = server.http.post("/predict", json={"inputs": ["a", "b"], "long_text": "chunk"})
    assert pair.status_code == 422 and "text pair" in pair.json()["error"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium: apt-get install chromium")
def test_ui_colours_the_text_and_runs_none_of_it(server, offline):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright")
    want = offline.explain(HOSTILE)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page()
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(f"{server.url}/ui")
            page.fill("#text", HOSTILE)
            page.click("#classify")
            words = page.locator("#explanation .word")
            sync_api.expect(words).to_have_count(len(want["words"]))
            assert page.locator("#explanation .text").text_content() == HOSTILE  # shown exactly as written
            sync_api.expect(page.locator("#explanation .caption")).to_contain_text(f"Why {want['label']}")
            shown = words.evaluate_all("spans => spans.map(s => [s.textContent, Number(s.dataset.attribution), "
                                       "getComputedStyle(s).backgroundColor])")  # fmt: skip
            assert [s[0] for s in shown] == [w["word"] for w in want["words"]]
            np.testing.assert_allclose([s[1] for s in shown], [w["attribution"] for w in want["words"]], atol=1e-5)
            strongest = max(range(len(shown)), key=lambda i: abs(shown[i][1]))
            assert shown[strongest][2] not in ("rgba(0, 0, 0, 0)", "transparent")  # coloured
            green = shown[strongest][1] > 0
            assert (", 160, 67" in shown[strongest][2]) == green and (", 54, 51" in shown[strongest][2]) != green
            assert page.locator("img").count() == 0 and page.locator("#explanation script").count() == 0
            assert page.evaluate("window.pwned") is None and dialogs == []
        finally:
            browser.close()
