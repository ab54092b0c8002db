"""Inference against stored reference outputs, TEI style: no torch, no transformers needed.

tests/snapshots/*.json hold what transformers gave (token ids, fp32 logits, the text-classification pipeline's
output with top_k=None) for the bundled model and for a tiny checkpoint of each BERT-lineage model_type stored in
tests/fixtures/tiny/ (tools/make_snapshots.py writes both). CI also runs this file in a venv that has only the
core install and pytest: the default path there builds each ONNX graph without torch (onnx_graph.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from textclass import Classifier
from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models

HERE = Path(__file__).parent
SNAPSHOTS = sorted((HERE / "snapshots").glob("*.json"))
TINY = HERE / "fixtures" / "tiny"


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTCLASS_CACHE", str(tmp_path / "user-cache"))


def load(snapshot: Path, tmp_path: Path) -> Classifier:
    name = snapshot.stem
    if name == DEFAULT_MODEL:
        if DEFAULT_MODEL not in bundled_models():
            pytest.skip("bundled model not installed")
        return Classifier.from_pretrained(backend="onnx", dtype="fp32")  # its shipped graph, maybe read-only
    # A copy: loading exports the ONNX graph beside the checkpoint.
    folder = shutil.copytree(TINY / name.removeprefix("tiny-"), tmp_path / name)
    return Classifier.from_pretrained(folder, backend="onnx", dtype="fp32")


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.stem for p in SNAPSHOTS])
def test_matches_snapshot(snapshot, tmp_path):
    record = json.loads(snapshot.read_text(encoding="utf-8"))
    clf = load(snapshot, tmp_path)
    assert clf.precision == "onnx-float32"
    for kind in ("texts", "pairs"):
        if kind not in record:
            continue
        expected = record[kind]
        inputs = [tuple(pair) for pair in expected["inputs"]] if kind == "pairs" else expected["inputs"]
        assert [e.ids for e in clf.encode(inputs)] == expected["input_ids"]
        logits = clf.logits(inputs)  # one padded batch per length bucket
        np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)
        alone = np.concatenate([clf.logits([item]) for item in inputs])  # unpadded, one at a time
        np.testing.assert_allclose(alone, expected["logits"], atol=1e-4, rtol=0)
        # An empty text is an error for clf() (one rule everywhere); logits() above still score it as the pipeline.
        kept = [i for i, item in enumerate(inputs) if all(p.strip() for p in ([item] if kind == "texts" else item))]
        inputs = [inputs[i] for i in kept]
        expected = {key: [expected[key][i] for i in kept] for key in ("pipeline", "logits")}
        if clf.temperature == 1.0:  # the pipeline knows no calibration temperature
            got = clf(inputs, top_k=None)
            for rows, want in zip(got, expected["pipeline"]):
                assert [r["label"] for r in rows] == [w["label"] for w in want]
                np.testing.assert_allclose([r["score"] for r in rows], [w["score"] for w in want], atol=1e-5)
        else:  # same labels; scores are the reference logits through the temperature
            scaled = np.asarray(expected["logits"]) / clf.temperature
            probs = np.exp(scaled - scaled.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            best = clf(inputs)
            assert [b["label"] for b in best] == [w[0]["label"] for w in expected["pipeline"]]
            np.testing.assert_allclose([b["score"] for b in best], probs.max(1), atol=1e-5)


def test_every_tiny_fixture_has_a_snapshot():
    assert {f"tiny-{folder.name}" for folder in TINY.iterdir()} <= {p.stem for p in SNAPSHOTS}
    assert {"tiny-bert", "tiny-distilbert", "tiny-roberta", "tiny-xlm-roberta", "tiny-camembert"} <= {
        p.stem for p in SNAPSHOTS
    }
