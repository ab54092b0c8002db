"""The bundled English sentiment model: offline out of the box, a plain HF checkpoint, its SST-2 dev accuracy kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from textclass import Classifier
from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models
from textclass.cli.app import app

pytestmark = pytest.mark.skipif(
    DEFAULT_MODEL not in bundled_models(), reason="bundled model not installed in src/textclass/models"
)
SEED = "I've been waiting for a HuggingFace course my whole life."


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.from_pretrained()


def test_seed_sentences(clf):
    best = clf(SEED)[0]
    assert best["label"] == "POSITIVE" and best["score"] > 0.7  # 0.75: the distilled model stores no temperature
    worst = clf("I hate this so much!")[0]
    assert worst["label"] == "NEGATIVE" and worst["score"] > 0.9
    # An ambiguous sentence: its label and score are exactly the temperature-scaled softmax of its logits.
    other = clf("So have I!")[0]
    logits = clf.logits(["So have I!"])[0] / clf.temperature
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert other["label"] == clf.labels[int(probs.argmax())] and other["score"] == pytest.approx(probs.max(), abs=1e-6)
    assert Classifier.default().labels == ("NEGATIVE", "POSITIVE")


def test_cli_uses_bundled_model_without_model_option():
    result = CliRunner().invoke(app, ["classify", SEED, "I hate this so much!", "So have I!", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows[:2]] == ["POSITIVE", "NEGATIVE"] and len(rows) == 3
    listed = json.loads(CliRunner().invoke(app, ["models", "--json"]).stdout)
    assert any(m["name"] == DEFAULT_MODEL and m["default"] for m in listed)


def test_loads_in_transformers_with_matching_logits(clf):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = bundled_models()[DEFAULT_MODEL]
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [SEED, "So have I!", "I hate this so much!", "an utterly forgettable, joyless film"]
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    exact = Classifier.from_pretrained(folder, dtype="fp32")
    np.testing.assert_allclose(exact.logits(texts), expected, atol=1e-4)
    assert (clf.logits(texts).argmax(1) == expected.argmax(1)).all()  # the default fast path agrees


def test_sst2_dev_accuracy(sst2_dir):
    from textclass.train.evaluate import evaluate

    metrics = evaluate(str(bundled_models()[DEFAULT_MODEL]), str(sst2_dir / "dev.tsv"))
    # Guards the shipped model (0.8991 exact fp32, the distilled student of issue 27). The seed's model reads 0.913.
    assert metrics["accuracy"] >= 0.895, metrics["accuracy"]
