"""Zero-shot classification with an NLI model: Classifier.zero_shot against transformers' pipeline, POST / with
candidate_labels through the real InferenceClient, and `textclass zero-shot`."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from test_rerank import fast_and_declared
from typer.testing import CliRunner

from clikit import assert_clean_error
from conftest import CORPUS, build_checkpoint
from serverutil import LiveServer
from textclass.classifier import Classifier
from textclass.cli.app import app as cli_app
from textclass.errors import InputError
from textclass.tasks.zero_shot import DEFAULT_HYPOTHESIS_TEMPLATE

NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
LABELS = ("sports", "politics", "science", "cooking", "space travel")
TEXTS = (CORPUS[0], CORPUS[2], CORPUS[9], " ".join(CORPUS))  # the last is cut to the 64-token limit (the text only)
TEMPLATE = "The topic is {}."


def build_nli(folder, vocab_txt, id2label: dict[int, str]):
    """A tiny BERT with NLI labels; a wide init spreads the labels' scores so their order is not float noise."""
    label2id = {name: index for index, name in id2label.items()}
    return build_checkpoint(folder, "bert", vocab_txt, num_labels=3, id2label=id2label, label2id=label2id,
                            initializer_range=0.5)  # fmt: skip


@pytest.fixture(scope="module")
def nli(tmp_path_factory, vocab_txt):
    folder = tmp_path_factory.mktemp("nli")
    return folder, *build_nli(folder, vocab_txt, NLI_LABELS)


@pytest.fixture(scope="module")
def pipe(nli):
    """transformers' pipeline answer, each set of arguments run once (the pipeline scores pair by pair)."""
    from transformers import pipeline

    zero_shot = pipeline("zero-shot-classification", model=nli[1], tokenizer=nli[2])

    @cache
    def answer(texts: str | tuple[str, ...], labels: str | tuple[str, ...] = LABELS, multi_label: bool = False,
               template: str = DEFAULT_HYPOTHESIS_TEMPLATE) -> dict | list[dict]:  # fmt: skip
        labels = labels if isinstance(labels, str) else list(labels)
        inputs = texts if isinstance(texts, str) else list(texts)
        return zero_shot(inputs, candidate_labels=labels, multi_label=multi_label, hypothesis_template=template)

    return answer


@pytest.fixture(scope="module")
def clf(nli) -> Classifier:
    return Classifier.from_pretrained(nli[0], dtype="fp32")


def assert_same(got, want, atol: float = 1e-5) -> None:
    """The pipeline's answer: same shape, sequences, label order, and scores within atol."""
    if isinstance(want, dict):
        assert isinstance(got, dict)
        got, want = [got], [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == {"sequence", "labels", "scores"}
        assert (g["sequence"], g["labels"]) == (w["sequence"], w["labels"])
        np.testing.assert_allclose(g["scores"], w["scores"], atol=atol)


# ---- Python API -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("multi_label", [False, True])
def test_matches_pipeline(clf, pipe, multi_label):
    want = pipe(TEXTS, multi_label=multi_label)
    assert_same(clf.zero_shot(list(TEXTS), LABELS, multi_label=multi_label), want)
    for w in want:  # the labels' scores differ, so their order is the model's, not float noise
        assert np.diff(w["scores"]).max() < -1e-4
        assert (abs(sum(w["scores"]) - 1) < 1e-5) != multi_label  # single-label: a softmax across labels
    one = clf.zero_shot(TEXTS[1], list(LABELS), multi_label=multi_label)  # one text: one dict
    assert_same(one, pipe(TEXTS[1], multi_label=multi_label))
    assert_same(clf.zero_shot(TEXTS[1:2], LABELS, multi_label=multi_label), [one])  # a list of one: a list
    templated = clf.zero_shot(TEXTS, LABELS, hypothesis_template=TEMPLATE, multi_label=multi_label)
    assert_same(templated, pipe(TEXTS, multi_label=multi_label, template=TEMPLATE))


def test_label_string_and_one_label(clf, pipe):
    labels = " sports, politics ,, science "  # the pipeline's comma-separated form
    want = pipe(TEXTS[:2], labels)
    assert {w["labels"][0] for w in want} <= {"sports", "politics", "science"}
    assert_same(clf.zero_shot(TEXTS[:2], labels), want)
    # One label: entailment vs contradiction for it alone, even without multi_label (a softmax would give 1.0).
    one = clf.zero_shot(TEXTS[0], ["sports"])
    assert_same(one, pipe(TEXTS[0], ("sports",)))
    assert one["scores"][0] < 0.999


def test_entailment_first_uses_the_last_class_as_contradiction(tmp_path, vocab_txt):
    """With entailment at id 0 the pipeline takes the last class as contradiction; so must we."""
    from transformers import pipeline

    model, tokenizer = build_nli(tmp_path, vocab_txt, {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"})
    pipe = pipeline("zero-shot-classification", model=model, tokenizer=tokenizer)
    clf = Classifier.from_pretrained(tmp_path, dtype="fp32")
    for multi_label in (False, True):
        want = pipe(list(TEXTS[:3]), candidate_labels=list(LABELS), multi_label=multi_label)
        assert_same(clf.zero_shot(TEXTS[:3], LABELS, multi_label=multi_label), want)


def test_errors(clf, tiny_checkpoints):
    with pytest.raises(InputError, match="LABEL_0, LABEL_1, LABEL_2"):  # no entailment label: it names them
        Classifier.from_pretrained(tiny_checkpoints["bert"][0], dtype="fp32").zero_shot("x", LABELS)
    for labels in ([], " , ", ""):
        with pytest.raises(InputError, match="at least one label"):
            clf.zero_shot("x", labels)
    with pytest.raises(InputError, match="65 candidate labels but at most 64"):
        clf.zero_shot("x", [f"label {i}" for i in range(65)])
    for template in ("This example is about sports.", "This is {label}.", "{1}"):
        with pytest.raises(InputError, match="hypothesis_template"):
            clf.zero_shot("x", LABELS, hypothesis_template=template)
    with pytest.raises(InputError, match="texts must not be empty"):
        clf.zero_shot([], LABELS)
    with pytest.raises(InputError, match="candidate_labels\\[1\\]"):
        clf.zero_shot("x", ["a", 2])
    for texts, index in ((" ", 0), (["fine", ""], 1)):  # the one rule for empty text: refused, not scored
        with pytest.raises(InputError, match=rf"^input {index} is empty \(or only whitespace\)"):
            clf.zero_shot(texts, LABELS)


# ---- the server: POST / as the Inference API answers zero-shot ----------------------------------------------
@pytest.fixture(scope="module")
def server(nli, tmp_path_factory):
    live = LiveServer(nli[0], tmp_path_factory.mktemp("logs") / "nli.log")
    try:
        yield live.wait_healthy()
    finally:
        code = live.stop()
    assert code == 0, live.log()


def as_pipeline(text: str, elements: list) -> dict:
    return {"sequence": text, "labels": [e.label for e in elements], "scores": [e.score for e in elements]}


def test_inference_client_round_trip(server, clf, pipe):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=server.url)
    for multi_label in (False, True):
        got = client.zero_shot_classification(TEXTS[1], list(LABELS), multi_label=multi_label)
        assert_same(as_pipeline(TEXTS[1], got), pipe(TEXTS[1], multi_label=multi_label))
    got = client.zero_shot_classification(TEXTS[3], list(LABELS), hypothesis_template=TEMPLATE)
    assert_same(as_pipeline(TEXTS[3], got), pipe(TEXTS, template=TEMPLATE)[3])
    # Without candidate_labels POST / is still text classification with the model's own labels.
    classified = client.text_classification(TEXTS[0], top_k=3)
    want = clf(TEXTS[0], top_k=None)
    assert [c.label for c in classified] == [w["label"] for w in want]
    np.testing.assert_allclose([c.score for c in classified], [w["score"] for w in want], atol=1e-5)


def test_http_shapes(server, pipe):
    body = {"inputs": TEXTS, "parameters": {"candidate_labels": ",".join(LABELS), "multi_label": True}}
    answer = server.http.post("/", json=body).json()  # a list of texts: a list of [{label, score}] per text
    for text, got, want in zip(TEXTS, answer, pipe(TEXTS, multi_label=True), strict=True):
        assert all(set(e) == {"label", "score"} for e in got)
        assert_same({"sequence": text, "labels": [e["label"] for e in got], "scores": [e["score"] for e in got]}, want)
    params = server.http.get("/openapi.json").json()["components"]["schemas"]["ClassifyParameters"]["properties"]
    assert {"candidate_labels", "multi_label", "hypothesis_template"} <= set(params)


ERROR_CASES = [
    ("no labels", {"inputs": "x", "parameters": {"candidate_labels": []}}, 422, "at least one label"),
    ("blank label string", {"inputs": "x", "parameters": {"candidate_labels": " , "}}, 422, "at least one label"),
    ("too many labels", {"inputs": "x", "parameters": {"candidate_labels": [str(i) for i in range(65)]}}, 422,
     "at most 64"),
    ("bad template", {"inputs": "x", "parameters": {"candidate_labels": ["a"], "hypothesis_template": "no slot"}}, 422,
     "hypothesis_template"),
    ("too many texts", {"inputs": ["x"] * 33, "parameters": {"candidate_labels": ["a"]}}, 413, "at most 32"),
    ("labels not strings", {"inputs": "x", "parameters": {"candidate_labels": [1, 2]}}, 422, "candidate_labels"),
]  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_route_errors(server, case):
    _, body, status, message = case
    response = server.http.post("/", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"} and message in response.json()["error"]


def test_rerank_on_an_nli_model_is_refused(server):
    response = server.http.post("/rerank", json={"query": "q", "texts": ["t"]})
    assert response.status_code == 424 and "one output" in response.json()["error"]


def test_fast_path_answers_as_fastapi_does(nli, monkeypatch):
    """Zero-shot on POST / goes through the fast path; FastAPI's declared route must give the same answers."""
    bodies = [{"inputs": TEXTS[0], "parameters": {"candidate_labels": LABELS}},
              {"inputs": TEXTS[:2], "parameters": {"candidate_labels": "a, b", "multi_label": True}},
              {"inputs": "x", "parameters": {"candidate_labels": []}},
              {"inputs": "x", "parameters": {"candidate_labels": 5}}]  # fmt: skip
    answered = fast_and_declared(nli[0], "/", bodies, monkeypatch)
    assert answered == [(200, True), (200, True), (422, False), (422, False)]  # FastAPI words a body that won't parse


# ---- the command line -------------------------------------------------------------------------------------
def test_cli(nli, pipe):
    runner = CliRunner()
    args = ["zero-shot", *TEXTS, "--labels", ",".join(LABELS), "--model", str(nli[0]), "--dtype", "fp32"]
    as_json = runner.invoke(cli_app, [*args, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert_same(json.loads(as_json.stdout), pipe(TEXTS))
    multi = runner.invoke(cli_app, [*args, "--multi-label", "--template", TEMPLATE, "--format", "jsonl"])
    assert_same(
        [json.loads(line) for line in multi.stdout.splitlines()], pipe(TEXTS, multi_label=True, template=TEMPLATE)
    )
    piped = runner.invoke(cli_app, ["zero-shot", "--labels", "sports,politics", "--model", str(nli[0]), "-f", "jsonl"],
                          input="first\nsecond\n")  # fmt: skip
    assert [json.loads(line)["sequence"] for line in piped.stdout.splitlines()] == ["first", "second"]
    table = runner.invoke(cli_app, args)
    assert table.exit_code == 0 and "space travel" in table.stdout
    literal = runner.invoke(cli_app, ["zero-shot", "[b]x[/b]", "--labels", "a,b", "--model", str(nli[0])])
    assert "[b]x[/b]" in literal.stdout  # texts print as they are, not as rich markup


def test_cli_errors(nli, tiny_checkpoints):
    runner = CliRunner()
    model = ["--model", str(nli[0])]
    assert_clean_error(runner.invoke(cli_app, ["zero-shot", "x", *model]), "--labels")
    assert_clean_error(runner.invoke(cli_app, ["zero-shot", "x", "--labels", "a", "--template", "none", *model]),
                       "hypothesis_template")  # fmt: skip
    not_nli = ["zero-shot", "x", "--labels", "a,b", "--model", str(tiny_checkpoints["bert"][0]), "--dtype", "fp32"]
    assert_clean_error(runner.invoke(cli_app, not_nli), "entailment")
