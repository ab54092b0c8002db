"""textclass eval and the metrics: hand-computed small cases, temperature fitting, files, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textclass import Classifier
from textclass.train import metrics
from textclass.train.evaluate import evaluate
from textclass.train.run import train
from textclass.train.setup import TrainArgs
from trainkit import FAST, sentiment_rows, tiny_base, topic_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


# ---- metrics against hand computations ------------------------------------------------------------
def test_single_label_metrics_by_hand():
    probs = np.array([[0.76, 0.12, 0.12], [0.28, 0.62, 0.10], [0.2, 0.7, 0.1],
                      [0.12, 0.12, 0.76], [0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])  # fmt: skip
    targets = np.array([0, 0, 1, 2, 2, 2])
    result = metrics.single_label(np.log(probs), targets, ["a", "b", "c"])
    # predictions 0, 1, 1, 2, 0, 2
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    per_class = result["per_class"]
    assert [per_class[k]["precision"] for k in "abc"] == pytest.approx([1 / 2, 1 / 2, 1])
    assert [per_class[k]["recall"] for k in "abc"] == pytest.approx([1 / 2, 1, 2 / 3])
    f1 = [0.5, 2 * 0.5 / 1.5, 2 * (2 / 3) / (5 / 3)]
    assert [per_class[k]["f1"] for k in "abc"] == pytest.approx(f1)
    assert [per_class[k]["support"] for k in "abc"] == [2, 1, 3]
    assert result["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([0.76, 0.28, 0.7, 0.76, 0.25, 0.7])))
    # Bins: {0.76, 0.76} right, {0.62} wrong, {0.7, 0.7} right, {0.5} wrong.
    assert result["ece"] == pytest.approx((2 * 0.24 + 0.62 + 2 * 0.3 + 0.5) / 6)


def test_macro_f1_skips_classes_never_seen_or_predicted():
    logits = np.log(np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]]))
    result = metrics.single_label(logits, np.array([0, 1]), ["a", "b", "unused"])
    assert result["macro_f1"] == 1.0 and result["per_class"]["unused"]["support"] == 0


def test_multi_label_metrics_by_hand():
    probs = np.array([[0.9, 0.2], [0.6, 0.4], [0.3, 0.8]])
    targets = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    result = metrics.multi_label(np.log(probs / (1 - probs)), targets, ["x", "y"])
    # predicted [[1, 0], [1, 0], [0, 1]]: x perfect; y misses row 2.
    assert result["per_class"]["x"]["f1"] == pytest.approx(1.0)
    assert result["per_class"]["y"]["precision"] == pytest.approx(1.0)
    assert result["per_class"]["y"]["recall"] == pytest.approx(0.5)
    assert result["micro_f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["accuracy"] == pytest.approx(2 / 3) and result["label_accuracy"] == pytest.approx(5 / 6)
    bce = -np.mean(np.log([0.9, 0.8, 0.6, 0.4, 0.7, 0.8]))
    assert result["log_loss"] == pytest.approx(bce)


def test_regression_metrics_by_hand():
    result = metrics.regression(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]))
    assert result["mse"] == pytest.approx(2 / 3) and result["mae"] == pytest.approx(2 / 3)


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, size=(20000, 4))
    probs = np.exp(metrics.log_softmax(true_logits))
    targets = np.array([rng.choice(4, p=p) for p in probs])
    temperature = metrics.fit_temperature(3.0 * true_logits, targets)  # logits 3× too sharp
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert metrics.nll(3.0 * true_logits / temperature, targets, "single_label") < metrics.nll(
        3.0 * true_logits, targets, "single_label"
    )


# ---- evaluate() on trained tiny models -----------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, vocab_txt):
    folder = tmp_path_factory.mktemp("eval")
    base = tiny_base(folder / "base", vocab_txt)
    train_file = write_jsonl(folder / "train.jsonl", sentiment_rows(200, 1))
    dev_file = write_jsonl(folder / "dev.jsonl", sentiment_rows(60, 2))
    out = folder / "model"
    train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), max_steps=12,
                    temperature_calibrate=True, **FAST))  # fmt: skip
    return out, dev_file, base, folder


def test_evaluate_matches_direct_computation_and_writes_files(trained, tmp_path):
    model, dev_file, _, _ = trained
    report = evaluate(model, dev_file, out_dir=tmp_path / "report", errors=5)
    rows = [json.loads(line) for line in dev_file.read_text().splitlines()]
    clf = Classifier.from_pretrained(model)
    predicted = np.asarray(clf.labels)[clf.logits([r["text"] for r in rows]).argmax(axis=1)]
    truth = np.asarray([r["label"] for r in rows])
    assert report["accuracy"] == pytest.approx(float((predicted == truth).mean()))
    assert report["rows"] == 60 and np.sum(report["confusion_matrix"]) == 60
    assert report["temperature"] == pytest.approx(
        json.loads((model / "config.json").read_text())["textclass_temperature"]
    )
    wrong = int((predicted != truth).sum())
    assert len(report["errors"]) == min(5, wrong)
    assert all(e["label"] != e["predicted"] for e in report["errors"])
    scores = [e["score"] for e in report["errors"]]
    assert scores == sorted(scores, reverse=True)
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["accuracy"] == report["accuracy"] and saved["ece"] == report["ece"]
    for name in ("confusion_matrix.png", "reliability.png", "scores.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == PNG, name


def test_evaluate_multi_label_and_regression(trained, tmp_path):
    _, _, base, _ = trained
    data = write_jsonl(tmp_path / "topics.jsonl", topic_rows(80, 3))
    train(TrainArgs(model=str(base), train=str(data), out=str(tmp_path / "ml"), task="multi_label", max_steps=3,
                    **FAST))  # fmt: skip
    report = evaluate(tmp_path / "ml", data, out_dir=tmp_path / "ml-report", errors=2)
    assert report["task"] == "multi_label" and 0 <= report["micro_f1"] <= 1 and set(report["per_class"]) == {
        "food", "news", "sport"}  # fmt: skip
    assert (tmp_path / "ml-report" / "reliability.png").is_file()

    values = write_jsonl(tmp_path / "values.jsonl", [{"text": r["text"], "label": len(r["text"]) / 10}
                                                     for r in sentiment_rows(40, 4)])  # fmt: skip
    train(TrainArgs(model=str(base), train=str(values), out=str(tmp_path / "reg"), task="regression", max_steps=2,
                    **FAST))  # fmt: skip
    assert json.loads((tmp_path / "reg" / "config.json").read_text())["problem_type"] == "regression"
    report = evaluate(tmp_path / "reg", values)
    rows = [json.loads(line) for line in values.read_text().splitlines()]
    predictions = Classifier.from_pretrained(tmp_path / "reg").logits([r["text"] for r in rows])[:, 0]
    expected = float(np.mean((predictions - np.array([r["label"] for r in rows])) ** 2))
    assert math.isclose(report["mse"], expected, rel_tol=1e-5)


def test_eval_cli(trained, tmp_path):
    model, dev_file, _, folder = trained
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "textclass", "eval", "--model", str(model)]
    result = subprocess.run([*command, "--data", str(dev_file), "--json"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 60
    unseen = write_jsonl(tmp_path / "unseen.jsonl", [{"text": "so so", "label": "neutral"}])
    result = subprocess.run([*command, "--data", str(unseen)], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "'neutral'" in result.stderr
    assert "Traceback" not in result.stderr
