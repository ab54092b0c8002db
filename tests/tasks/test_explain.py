"""Explanations: the answer's shape, occlusion's numbers, captum parity of integrated gradients, faithfulness on the
bundled model, and the `textclass explain` command (terminal, JSON, HTML that runs nothing)."""

from __future__ import annotations

import csv
import html
import json
import re
import threading
import unicodedata

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from textclass.checkpoint.tokenizer import Encoded
from textclass.classifier import Classifier
from textclass.cli.app import app
from textclass.errors import InputError
from textclass.tasks import explain as explain_module
from textclass.tasks.faithfulness import aopc, delete_words

TEXTS = [CORPUS[0], CORPUS[3], CORPUS[5], CORPUS[9]]  # plain, accents, emoji, contractions and punctuation
HOSTILE = 'a <script>alert("x")</script> <img src=x onerror="alert(1)"> [bold]film[/bold] & more'


def plain(text: str) -> str:
    """BERT's normalisation: lower case, accents stripped."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c))


@pytest.fixture(scope="module")
def tiny(tiny_checkpoints) -> dict[str, Classifier]:
    """Tiny BERT (token types, [MASK]) and RoBERTa (positions from pad ids), 3 labels, on the default ONNX engine."""
    return {family: Classifier.from_pretrained(tiny_checkpoints[family][0]) for family in ("bert", "roberta")}


def test_answer_shape_and_offsets(tiny):
    clf = tiny["bert"]
    results = clf.explain(TEXTS)
    assert isinstance(results, list) and len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results):
        assert set(result) == {"label", "score", "tokens", "words"}
        scores = {r["label"]: r["score"] for r in clf(text, top_k=None)}
        assert result["label"] == max(scores, key=scores.get)  # default target: the predicted label
        assert result["score"] == pytest.approx(scores[result["label"]], abs=1e-6)
        encoding = clf.tokenizer.encoding(text)
        assert len(result["tokens"]) == len(encoding.ids) - 2  # [CLS] and [SEP] left out
        for token in result["tokens"]:
            assert set(token) == {"token", "start", "end", "attribution"}
            piece = token["token"].removeprefix("##")
            assert token["token"] == "[UNK]" or piece == plain(text[token["start"] : token["end"]]), token
        for word in result["words"]:
            assert set(word) == {"word", "start", "end", "attribution"}
            assert word["word"] == text[word["start"] : word["end"]]
            inside = [t for t in result["tokens"] if word["start"] <= t["start"] and t["end"] <= word["end"]]
            assert word["attribution"] == pytest.approx(sum(t["attribution"] for t in inside), abs=1e-6)
    single = clf.explain(TEXTS[2])
    assert isinstance(single, dict) and [w["word"] for w in single["words"]][:2] == ["😀", "emoji"]


def test_occlusion_is_the_score_drop_without_each_word(tiny, monkeypatch):
    clf = tiny["bert"]
    calls = []
    run = clf.run
    monkeypatch.setattr(clf, "run", lambda encoded, batch_size=None: calls.append(len(encoded)) or run(encoded))
    results = clf.explain(TEXTS, target="LABEL_2")
    words = sum(len(r["words"]) for r in results)
    assert calls == [len(TEXTS) + words]  # every variant of every text in one run call
    monkeypatch.undo()
    for text, result in zip(TEXTS, results):
        assert result["label"] == "LABEL_2"
        # Independently: the text with the word cut out, tokenized and classified from scratch.
        without = [delete_words(text, [word]) for word in result["words"]]
        scores = clf.scores(clf.logits([text, *without]))[:, 2]
        np.testing.assert_allclose([w["attribution"] for w in result["words"]], scores[0] - scores[1:], atol=1e-5)


def test_occlusion_per_token_with_the_pad_token(tiny):
    clf = tiny["bert"]
    text = CORPUS[8]  # long words split into many sub-word tokens
    result = clf.explain(text, baseline="pad", unit="token", target=1)
    assert result["label"] == "LABEL_1"
    ids = clf.tokenizer.encoding(text).ids
    variants = [Encoded(ids, [0] * len(ids))]
    for position in range(1, len(ids) - 1):
        variants.append(Encoded(ids[:position] + [clf.tokenizer.pad_token_id] + ids[position + 1 :], [0] * len(ids)))
    scores = clf.scores(clf.run(variants))[:, 1]
    np.testing.assert_allclose([t["attribution"] for t in result["tokens"]], scores[0] - scores[1:], atol=1e-5)
    assert len(result["words"]) < len(result["tokens"])


@pytest.mark.parametrize("family, baseline", [("bert", "pad"), ("roberta", "mask")])
def test_integrated_gradients_equal_captum(tiny, family, baseline):
    torch = pytest.importorskip("torch")
    captum = pytest.importorskip("captum.attr", reason="pip install captum")
    clf = tiny[family]
    results = clf.explain(TEXTS, method="integrated_gradients", baseline=baseline, target="LABEL_0", steps=24)
    model = clf.torch_model
    assert clf.torch_model is model and clf.engine.backend == "onnx"  # built once beside the ONNX engine
    replacement = explain_module.replacement_id(clf.tokenizer, baseline)

    def score(ids, types):
        return (model(ids, None, types) / clf.temperature).softmax(-1)

    layer = captum.LayerIntegratedGradients(score, model.encoder.embeddings.word)
    for text, result in zip(TEXTS, results):
        encoding = clf.tokenizer.encoding(text)
        ids = torch.tensor([encoding.ids])
        types = torch.tensor([encoding.type_ids]) if clf.engine.uses_token_types else None
        special = torch.tensor([encoding.special_tokens_mask]).bool()
        baselines = torch.where(special, ids, replacement)  # special tokens kept
        want = layer.attribute(ids, baselines=baselines, additional_forward_args=(types,), target=0, n_steps=24)
        want = want.sum(-1)[0].detach().numpy()
        np.testing.assert_allclose([t["attribution"] for t in result["tokens"]], want[1:-1], atol=1e-4)
        # Completeness: the tokens add up to score(text) - score(baseline), up to the quadrature error.
        base_score = clf.scores(clf.run([Encoded(baselines[0].tolist(), encoding.type_ids)]))
        total = sum(t["attribution"] for t in result["tokens"])
        assert total == pytest.approx(result["score"] - base_score[0, 0], abs=2e-3)


def test_gradients_leave_concurrent_classification_alone(tiny):
    """On the torch fp32 engine, integrated gradients use the engine's own model; a server classifies with it from
    another thread meanwhile, and must get its usual logits."""
    clf = Classifier.from_pretrained(tiny["bert"].folder, dtype="fp32")
    assert clf.torch_model is clf.engine.model
    want = clf.logits(CORPUS)
    seen, failed, stop = [], [], threading.Event()

    def classify() -> None:
        while not stop.is_set():
            try:
                seen.append(clf.logits(CORPUS))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                failed.append(exc)

    worker = threading.Thread(target=classify)
    worker.start()
    try:
        clf.explain(CORPUS, method="integrated_gradients", steps=64)
    finally:
        stop.set()
        worker.join()
    assert not failed and len(seen) > 1
    for logits in seen:
        np.testing.assert_allclose(logits, want, atol=1e-5)


def test_bad_requests(tiny, monkeypatch):
    clf = tiny["bert"]
    cases = [
        (dict(method="lime"), "method must be one of occlusion, integrated_gradients"),
        (dict(method="integrated_gradients", baseline="delete"), "baseline for integrated_gradients"),
        (dict(unit="sentence"), "unit must be one of word, token"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(target="LABEL_9"), "target must be one of the labels (LABEL_0, LABEL_1, LABEL_2)"),
        (dict(target=3), "an index below 3"),
    ]
    for options, message in cases:
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            clf.explain("fine", **options)
    with pytest.raises(InputError, match="the text has no tokens"):
        clf.explain("")
    with pytest.raises(InputError, match="text 1 has no tokens"):
        clf.explain(["fine", " \t"])
    without_mask = Classifier.from_pretrained(clf.folder)
    monkeypatch.setattr(without_mask.tokenizer, "convert_tokens_to_ids", lambda tokens: [None] * len(tokens))
    with pytest.raises(InputError, match="this tokenizer has no mask token"):
        without_mask.explain("fine", baseline="mask")


def test_integrated_gradients_without_torch_names_the_extra(tiny, monkeypatch):
    import textclass.extras

    clf = Classifier.from_pretrained(tiny["bert"].folder)
    monkeypatch.setattr(textclass.extras, "installed", lambda module: module != "torch")
    with pytest.raises(textclass.extras.MissingExtra, match=r"pip install 'textclass\[torch\]'"):
        clf.explain("fine", method="integrated_gradients")
    assert clf.explain("fine")["words"]  # occlusion needs no torch


@pytest.mark.slow
def test_faithfulness_on_the_bundled_model(sst2_dir):
    """Deleting the top-attributed words lowers the predicted label's probability far more than random words.
    bench/explain.py measures the same on longer sentences and more of them; here 50 sentences of 6-16 words keep
    occlusion's (words + 1) model rows per sentence few."""
    clf = Classifier.default()
    with open(sst2_dir / "dev.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    texts = [row[0] for row in rows if 6 <= len(row[0].split()) <= 16][:50]
    for method, sentences, options in [("occlusion", texts, {}), ("integrated_gradients", texts[:16], {"steps": 8})]:
        explanations = clf.explain(sentences, method=method, **options)
        score = aopc(clf, sentences, explanations, k_max=3, draws=3)
        assert score.top > 0.15 and score.top > 3 * score.random, (method, score)
        assert score.top_by_k[0] > max(score.random_by_k), (method, score)


# ---- the command line ------------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_json_terminal_and_html(tiny, tmp_path):
    folder = str(tiny["bert"].folder)
    as_json = runner.invoke(app, ["explain", CORPUS[0], "--model", folder, "--json", "--target", "LABEL_1"])
    assert as_json.exit_code == 0, as_json.output
    got, want = json.loads(as_json.stdout), tiny["bert"].explain(CORPUS[0], target="LABEL_1")
    assert [w["word"] for w in got["words"]] == [w["word"] for w in want["words"]] and got["label"] == "LABEL_1"
    np.testing.assert_allclose([w["attribution"] for w in got["words"]], [w["attribution"] for w in want["words"]])

    page = tmp_path / "why.html"
    shown = runner.invoke(app, ["explain", HOSTILE, "--model", folder, "--html", str(page)])
    assert shown.exit_code == 0, shown.output
    assert " ".join(HOSTILE.split()) in " ".join(shown.stdout.split())  # as written: "[bold]" is no rich markup
    assert "strongest:" in shown.stdout
    written = page.read_text(encoding="utf-8")
    assert "<script" not in written and "<img" not in written  # no tag of the text's survives
    assert "&lt;" in written and "&quot;" in written
    body = written.split('<p class="text">', 1)[1].split("</p>", 1)[0]
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == HOSTILE  # the page shows exactly the text
    assert body.count("<span") == len(tiny["bert"].explain(HOSTILE)["words"])


def test_cli_errors(tiny):
    folder = str(tiny["bert"].folder)
    for args, message in [(["fine", "--method", "lime"], "method must be one of"), ([""], "input 0 is empty"),
                          (["fine", "--target", "NOPE"], "target must be one of the labels")]:  # fmt: skip
        result = runner.invoke(app, ["explain", *args, "--model", folder])
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
